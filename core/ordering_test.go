package core

import (
	"math/rand/v2"
	"testing"
)

// TestOrderingStale: the Order rule of PROTOCOL.md §6, once something was
// read: stale if of an older set, or outside a set and not newer than the
// newest read.
func TestOrderingStale(t *testing.T) {
	o := ordering{groupHi: 10, seqHi: 12}
	for _, tc := range []struct {
		group, seq uint64
		inSet      bool
		anyRead    bool
		want       bool
	}{
		{9, 13, false, true, true},  // an older group
		{9, 13, true, true, true},   // an older set
		{12, 12, false, true, true}, // the newest read itself
		{11, 11, false, true, true}, // older, outside a set
		{10, 11, true, true, false}, // a member of the set being read
		{13, 13, false, true, false},
		{9, 9, false, false, false}, // nothing read yet
	} {
		o.anyRead = tc.anyRead
		if got := o.stale(tc.group, tc.seq, tc.inSet); got != tc.want {
			t.Errorf("stale(group %d, seq %d, inSet %v) after reading group %d seq %d: %v, want %v",
				tc.group, tc.seq, tc.inSet, o.groupHi, o.seqHi, got, tc.want)
		}
	}
}

// TestOrderingDomain: one domain's send side numbers a random mix of
// messages (sets included, counters about to wrap); its peer's receive
// side gets them in a random order, some lost, and reads what next allows
// after each arrival. The guarantees hold: every Delivery message is read
// exactly once, outside a set in order; nothing is read after a newer
// Order/Delivery message of a later set (or outside its set); None
// messages are read once.
func TestOrderingDomain(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		r := rand.New(rand.NewPCG(seed, 0x0d))
		initial := uint64(r.Uint32())
		if seed%2 == 0 {
			initial = 0xFFFFFFF0
		}
		var send, recv ordering
		send.startSend(initial)
		recv.startReceive(initial)

		type sent struct {
			f        msgFrame
			idx      int // sending order
			set      int // 0: none
			lost     bool
			received bool
		}
		var msgs []sent
		set := 0
		for i := range 60 {
			if set == 0 && r.IntN(8) == 0 {
				if err := send.beginSet(); err != nil {
					t.Fatal(err)
				}
				set = i + 1
			} else if set != 0 && r.IntN(4) == 0 {
				send.endSet()
				set = 0
			}
			g := Guarantee(1 + r.IntN(3))
			var f msgFrame
			send.number(g, &f)
			s := set
			if g == None {
				s = 0
			}
			msgs = append(msgs, sent{f: f, idx: i, set: s, lost: g != Delivery && r.IntN(5) == 0})
		}
		send.endSet()
		if err := send.beginSet(); err != nil {
			t.Fatal(err)
		}
		if err := send.beginSet(); err != ErrNestedSet {
			t.Fatalf("beginSet in a set: %v, want ErrNestedSet", err)
		}
		send.endSet()

		read := make([]bool, len(msgs))
		lastRead := -1 // sending index of the newest Order/Delivery message read
		lastSet := 0
		readNext := func() {
			for {
				m := recv.next(func(*recvMsg) {})
				if m == nil {
					recv.prune(nil, func(*recvMsg) {})
					return
				}
				i := int(m.held) // the test's index, kept in held
				if read[i] {
					t.Fatalf("seed %d: message %d read twice", seed, i)
				}
				read[i] = true
				s := msgs[i]
				if m.guarantee == None {
					continue
				}
				if i < lastRead && (s.set == 0 || s.set != lastSet) {
					t.Fatalf("seed %d: message %d (%v, set %d) read after %d (set %d)", seed, i, m.guarantee, s.set, lastRead, lastSet)
				}
				if m.guarantee == Delivery && s.set == 0 {
					for j := range i {
						if msgs[j].f.guarantee == Delivery && !read[j] {
							t.Fatalf("seed %d: Delivery message %d read before %d", seed, i, j)
						}
					}
				}
				if i > lastRead {
					lastRead, lastSet = i, s.set
				}
				recv.prune(nil, func(*recvMsg) {})
			}
		}
		order := r.Perm(len(msgs))
		for _, i := range order {
			s := &msgs[i]
			if s.lost {
				continue
			}
			f := &s.f
			m := &recvMsg{guarantee: f.guarantee, held: int32(i)}
			m.total, m.filled = 1, 1 // complete
			if f.guarantee == None {
				m.seq = recv.noneID(f.seq)
				recv.addNone(m)
			} else {
				at := recv.place(f)
				if f.guarantee == Delivery && recv.deliveryRead(at.d) {
					t.Fatalf("seed %d: Delivery message %d taken for a duplicate", seed, i)
				}
				if f.guarantee == Order && recv.stale(at.group, at.seq, f.inSet) {
					continue // dropped on arrival
				}
				m.seq, m.group, m.inSet, m.d, m.base = at.seq, at.group, f.inSet, at.d, at.base
				if f.guarantee == Order {
					m.base = at.d
				}
				j, found := recv.find(at.seq)
				if found {
					t.Fatalf("seed %d: message %d found held before it arrived", seed, i)
				}
				recv.insert(j, m)
			}
			readNext()
		}
		for i, s := range msgs {
			if s.f.guarantee == Delivery && !read[i] {
				t.Fatalf("seed %d: Delivery message %d never read", seed, i)
			}
		}
		if !recv.allRead(send.finalPosition()) || !recv.deliveredBelow(recv.deliveryIndex(send.finalPosition())) {
			t.Fatalf("seed %d: the final position %#x is not reached (first unread %#x)", seed, send.finalPosition(), recv.dContig)
		}
	}
}
