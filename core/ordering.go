package core

import "sort"

// ordering is one ordering domain (PROTOCOL.md §6): the numbering of the
// messages we send in it and the rules by which the messages we receive in
// it may be read. Its job, and nothing more:
//
//   - send side: the next sequence, delivery index and None id, and the set
//     being sent (number, beginSet, endSet, finalPosition);
//   - receive side: the messages held, Order/Delivery by sequence and None
//     in arrival order, the unwrapping references, the first delivery index
//     not read and the newest group and sequence read; and the guarantees'
//     rules, each written once: which arriving message is a duplicate or
//     stale (place, stale, deliveryRead), which held message may be read next
//     (next), which may be forgotten (prune), and when a final position the
//     peer announces takes effect (checkFinal).
//
// It owns the lists, not the messages' memory: a message it removes is
// handed back (remove, removeNone, and the drop and free callbacks) for the
// connection to free. Stream 0 is the Conn's domain (Conn.ord); every other
// stream has its own (stream.go).
type ordering struct {
	// send side: unwrapped counters, and the set being sent
	nextSeq, nextDelivery, nextNoneID uint64
	setSeq, setBase                   uint64

	// receive side
	pending  []*recvMsg // Order/Delivery messages, sorted by seq
	noneMsgs []*recvMsg // None messages: complete ones are ready, in arrival order
	seqRef   uint64     // highest sequence seen + 1, for unwrapping
	noneRef  uint64     // highest None id seen + 1, for unwrapping
	dContig  uint64     // every delivery index below it was read
	groupHi  uint64     // highest group read (valid when anyRead)
	seqHi    uint64     // highest sequence read

	inSet   bool // send side: between beginSet and endSet
	anyRead bool // receive side: an Order/Delivery message was read
}

// startSend starts the send side's counters at initial, our
// InitialSequence.
func (o *ordering) startSend(initial uint64) {
	o.nextSeq, o.nextDelivery, o.nextNoneID = initial, initial, initial
}

// number fills in m the header of the next message sent with guarantee g:
// its sequence (None: its id), delivery index and set offsets.
func (o *ordering) number(g Guarantee, m *msgFrame) {
	m.guarantee, m.inSet = g, o.inSet
	switch g {
	case None:
		m.seq = uint32(o.nextNoneID)
		o.nextNoneID++
		m.inSet = false
	case Order:
		m.seq = uint32(o.nextSeq)
		o.nextSeq++
		m.d = uint32(o.nextDelivery)
		if o.inSet {
			m.d = uint32(o.setBase)
			m.groupOff = uint64(uint32(m.seq) - uint32(o.setSeq))
		}
	case Delivery:
		m.seq = uint32(o.nextSeq)
		o.nextSeq++
		m.d = uint32(o.nextDelivery)
		o.nextDelivery++
		if o.inSet {
			m.groupOff = uint64(uint32(m.seq) - uint32(o.setSeq))
			m.baseOff = uint64(m.d - uint32(o.setBase))
		}
	}
}

// beginSet starts a set at the next message (ErrNestedSet inside one).
func (o *ordering) beginSet() error {
	if o.inSet {
		return ErrNestedSet
	}
	o.inSet = true
	o.setSeq = o.nextSeq
	o.setBase = o.nextDelivery
	return nil
}

// endSet ends the set beginSet started.
func (o *ordering) endSet() { o.inSet = false }

// finalPosition is the delivery index after our last Delivery message: the
// final position a graceful CLOSE carries.
func (o *ordering) finalPosition() uint32 { return uint32(o.nextDelivery) }

// startReceive starts the receive side at initial, the peer's
// InitialSequence (from its HELLO).
func (o *ordering) startReceive(initial uint64) {
	o.seqRef, o.noneRef, o.dContig = initial, initial, initial
}

// msgPlace is where an arriving Order/Delivery message stands, unwrapped.
type msgPlace struct {
	seq   uint64 // its sequence
	group uint64 // the first sequence of its set (seq when not in a set)
	d     uint64 // its delivery index
	base  uint64 // Delivery: the delivery messages that must be read before it
}

// place unwraps an arriving Order/Delivery message's numbers.
func (o *ordering) place(f *msgFrame) msgPlace {
	seq := unwrap32(o.seqRef, f.seq)
	if seq+1 > o.seqRef {
		o.seqRef = seq + 1
	}
	d := unwrap32(o.dContig, f.d)
	return msgPlace{seq: seq, group: seq - f.groupOff, d: d, base: d - f.baseOff}
}

// noneID unwraps an arriving None message's id.
func (o *ordering) noneID(id32 uint32) uint64 {
	id := unwrap32(o.noneRef, id32)
	if id+1 > o.noneRef {
		o.noneRef = id + 1
	}
	return id
}

// deliveryIndex unwraps a delivery index near the first one not read.
func (o *ordering) deliveryIndex(d uint32) uint64 { return unwrap32(o.dContig, d) }

// deliveryRead reports whether the Delivery message with index d was read.
func (o *ordering) deliveryRead(d uint64) bool { return d < o.dContig }

// allRead reports whether every Delivery message below the final position
// final (a graceful CLOSE's) was read.
func (o *ordering) allRead(final uint32) bool { return o.dContig == o.deliveryIndex(final) }

// stale is the Order guarantee's rule: an Order message (of set group,
// sequence seq) may no longer be read once a message of a later set, or a
// later message outside its set, was read.
func (o *ordering) stale(group, seq uint64, inSet bool) bool {
	return o.anyRead && (group < o.groupHi || (!inSet && seq <= o.seqHi))
}

// find returns the index of seq in pending, or where it would go.
func (o *ordering) find(seq uint64) (int, bool) {
	p := o.pending
	if n := len(p); n == 0 || p[n-1].seq < seq {
		return n, false
	}
	i := sort.Search(len(p), func(k int) bool { return p[k].seq >= seq })
	return i, i < len(p) && p[i].seq == seq
}

// insert puts m at index i of pending (where find said it goes).
func (o *ordering) insert(i int, m *recvMsg) {
	o.pending = append(o.pending, nil)
	copy(o.pending[i+1:], o.pending[i:])
	o.pending[i] = m
}

// remove takes the message at index i out of pending and returns it.
func (o *ordering) remove(i int) *recvMsg {
	m := o.pending[i]
	o.pending = append(o.pending[:i], o.pending[i+1:]...)
	return m
}

// holds reports whether m is in pending (kept for duplicate detection).
func (o *ordering) holds(m *recvMsg) bool {
	i, found := o.find(m.seq)
	return found && o.pending[i] == m
}

// findNone returns the held None message with id, or nil.
func (o *ordering) findNone(id uint64) *recvMsg {
	for _, x := range o.noneMsgs {
		if x.seq == id {
			return x
		}
	}
	return nil
}

// addNone holds a None message, after those that arrived before it.
func (o *ordering) addNone(m *recvMsg) { o.noneMsgs = append(o.noneMsgs, m) }

// removeNone takes m out of the None messages held.
func (o *ordering) removeNone(m *recvMsg) {
	for i, x := range o.noneMsgs {
		if x == m {
			o.noneMsgs = append(o.noneMsgs[:i], o.noneMsgs[i+1:]...)
			return
		}
	}
}

// next returns the next message the guarantees let the application read,
// marked read, or nil: a complete None message first, else the first
// Order/Delivery message in sequence that is complete and waits for no
// earlier Delivery message. The stale Order messages it passes are removed
// and handed to dropStale.
func (o *ordering) next(dropStale func(*recvMsg)) *recvMsg {
	for i, m := range o.noneMsgs {
		if m.complete() {
			o.noneMsgs = append(o.noneMsgs[:i], o.noneMsgs[i+1:]...)
			return m
		}
	}
	for i := 0; i < len(o.pending); i++ {
		m := o.pending[i]
		if m.yielded {
			continue
		}
		if m.guarantee == Order && o.stale(m.group, m.seq, m.inSet) {
			dropStale(o.remove(i))
			i--
			continue
		}
		if m.base > o.dContig {
			break // waits for an earlier Delivery message, as does all after it
		}
		if !m.complete() {
			if m.guarantee == Delivery && !m.inSet {
				break
			}
			continue
		}
		o.markRead(i)
		return m
	}
	return nil
}

// markRead records that the message at index i of pending was read.
func (o *ordering) markRead(i int) {
	m := o.pending[i]
	m.yielded = true
	if !o.anyRead || m.group > o.groupHi {
		o.groupHi = m.group
	}
	if !o.anyRead || m.seq > o.seqHi {
		o.seqHi = m.seq
	}
	o.anyRead = true
	if m.guarantee == Delivery && m.d == o.dContig {
		o.dContig++
		// Set members read ahead of it may follow; delivery indexes
		// grow with seq, so the first Delivery message not read ends
		// the run (stopping there keeps this O(1) for a stream).
		for j := i + 1; j < len(o.pending); j++ {
			x := o.pending[j]
			if x.guarantee != Delivery {
				continue
			}
			if !x.yielded || x.d != o.dContig {
				break
			}
			o.dContig++
		}
	}
}

// prune removes read messages from the front of pending once nothing needs
// them for duplicate detection, handing each but keep (the message the
// application holds) to free.
func (o *ordering) prune(keep *recvMsg, free func(*recvMsg)) {
	k := 0
	for k < len(o.pending) {
		m := o.pending[k]
		if !m.yielded || (m.guarantee == Delivery && m.d >= o.dContig) || (m.inSet && m.group >= o.groupHi) {
			break
		}
		if m != keep {
			free(m)
		}
		k++
	}
	if k > 0 {
		n := copy(o.pending, o.pending[k:])
		clear(o.pending[n:])
		o.pending = o.pending[:n]
	}
}

// deliveredBelow reports whether every Delivery message with an index
// below final has arrived whole: read, or held complete.
func (o *ordering) deliveredBelow(final uint64) bool {
	next := o.dContig
	for _, m := range o.pending {
		if next >= final {
			break
		}
		if m.guarantee != Delivery || m.d < next {
			continue
		}
		if m.d != next || !(m.yielded || m.complete()) {
			return false
		}
		next++
	}
	return next >= final
}

// heldDeliveryFrom reports whether a Delivery message with an index at or
// above final is held (read or not): one sent after a final position the
// peer announces now.
func (o *ordering) heldDeliveryFrom(final uint64) bool {
	for _, m := range o.pending {
		if m.guarantee == Delivery && m.d >= final {
			return true
		}
	}
	return false
}

// checkFinal is the rule for a final position the peer announces for this
// domain, final (a STREAM_FIN's; a graceful CLOSE's, which frame names, is
// not strict): it may not lie before a Delivery message already read, nor,
// if strict, before one held (why says which, for a violation); and it
// takes effect only once every Delivery message below it arrived (ok false
// until then: the packet is refused, and the peer sends it again).
func (o *ordering) checkFinal(final uint32, strict bool, frame string) (ok bool, why string) {
	d := o.deliveryIndex(final)
	if o.deliveryRead(d) {
		return false, frame + " before Delivery messages already read"
	}
	if strict && o.heldDeliveryFrom(d) {
		return false, "Delivery message after the " + frame + "'s final position"
	}
	return o.deliveredBelow(d), ""
}

// forEach calls fn for every message held, Order/Delivery then None.
func (o *ordering) forEach(fn func(*recvMsg)) {
	for _, m := range o.pending {
		fn(m)
	}
	for _, m := range o.noneMsgs {
		fn(m)
	}
}

// removeIf removes every message held for which cond holds,
// Order/Delivery then None, handing each to free.
func (o *ordering) removeIf(cond func(*recvMsg) bool, free func(*recvMsg)) {
	for i := 0; i < len(o.pending); i++ {
		if cond(o.pending[i]) {
			free(o.remove(i))
			i--
		}
	}
	for i := 0; i < len(o.noneMsgs); i++ {
		if m := o.noneMsgs[i]; cond(m) {
			o.noneMsgs = append(o.noneMsgs[:i], o.noneMsgs[i+1:]...)
			free(m)
			i--
		}
	}
}

// clear removes every message held, handing each but keep to free.
func (o *ordering) clear(keep *recvMsg, free func(*recvMsg)) {
	for _, m := range o.pending {
		if m != keep {
			free(m)
		}
	}
	for _, m := range o.noneMsgs {
		free(m)
	}
	o.pending, o.noneMsgs = o.pending[:0], o.noneMsgs[:0]
}

// trim gives back the lists' storage when nothing is held (an idle
// connection's trimIdle).
func (o *ordering) trim() {
	if len(o.pending) == 0 {
		o.pending = nil
	}
	if len(o.noneMsgs) == 0 {
		o.noneMsgs = nil
	}
}
