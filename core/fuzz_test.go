package core

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// wirePair is two Conns joined by an instant, lossless link under a virtual
// clock, already past their handshake.
type wirePair struct {
	now  time.Time
	a, b *Conn
	buf  []byte
}

func newWirePair(t testing.TB, cfg *Config) *wirePair { return newWirePairWith(t, cfg, nil) }

// newWirePairWith is newWirePair with setup called on the two Conns before
// their handshake (nil: none).
func newWirePairWith(t testing.TB, cfg *Config, setup func(a, b *Conn)) *wirePair {
	t.Helper()
	if cfg == nil {
		cfg = &Config{}
	}
	cfg.Rand = rand.NewPCG(1, 2)
	a, b, now := newConnPair(t, cfg, cfg)
	if setup != nil {
		setup(a, b)
	}
	p := &wirePair{now: now, a: a, b: b, buf: make([]byte, 2048)}
	p.establish(t)
	return p
}

// establish steps p until both Conns are established, then ten steps more,
// for the acknowledgements of the HELLOs to settle.
func (p *wirePair) establish(t testing.TB) {
	t.Helper()
	for i := 0; i < 100 && !(p.a.Established() && p.b.Established()); i++ {
		p.step()
	}
	if !p.a.Established() || !p.b.Established() {
		t.Fatalf("handshake did not complete: a=%+v b=%+v", p.a.Stats(), p.b.Stats())
	}
	for i := 0; i < 10; i++ {
		p.step()
	}
}

// newConnPair makes the two connections of a wirePair (a 0x1111, b 0x2222)
// at a fixed date, returned as now; they have not exchanged anything.
func newConnPair(t testing.TB, cfgA, cfgB *Config) (a, b *Conn, now time.Time) {
	t.Helper()
	now = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := NewConn(cfgA, 0x1111, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err = NewConn(cfgB, 0x2222, now)
	if err != nil {
		t.Fatal(err)
	}
	return a, b, now
}

// recvEach hands fn every message c has ready to read.
func recvEach(t testing.TB, c *Conn, fn func(Message)) {
	t.Helper()
	for {
		m, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.Data == nil {
			return
		}
		fn(m)
	}
}

// sendStep sends msg from a as a Delivery message, steps the pair ten
// times, and checks that b read it next.
func (p *wirePair) sendStep(t testing.TB, msg string) {
	t.Helper()
	if err := p.a.Send(Delivery, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		p.step()
	}
	if m, _ := p.b.Recv(); string(m.Data) != msg {
		t.Fatalf("sent %q, read %q", msg, m.Data)
	}
}

// exchange moves every datagram either side has ready; tap sees each one.
func (p *wirePair) exchange(tap func(from *Conn, d []byte)) bool {
	moved := false
	for _, d := range [][2]*Conn{{p.a, p.b}, {p.b, p.a}} {
		for range 1000 {
			n := d[0].PollTransmit(p.now, p.buf)
			if n == 0 {
				break
			}
			moved = true
			if tap != nil {
				tap(d[0], p.buf[:n])
			}
			d[1].HandleDatagram(p.now, p.buf[:n])
		}
	}
	return moved
}

// step exchanges datagrams, or advances the clock to the next timer.
func (p *wirePair) step() { p.stepTap(nil) }

func (p *wirePair) stepTap(tap func(from *Conn, d []byte)) {
	if p.exchange(tap) {
		p.now = p.now.Add(100 * time.Microsecond)
		return
	}
	next := p.a.NextTimeout()
	if t := p.b.NextTimeout(); !t.IsZero() && (next.IsZero() || t.Before(next)) {
		next = t
	}
	if next.After(p.now) {
		p.now = next
	}
	p.a.HandleTimeout(p.now)
	p.b.HandleTimeout(p.now)
}

// FuzzParseHeader: any bytes either parse into a header whose re-encoding
// is the datagram, or fail; never a panic.
func FuzzParseHeader(f *testing.F) {
	f.Add(sealed(Header{Type: PacketData, DstCID: 1, PacketNumber: 2}, []byte{framePing}))
	f.Add(AppendRetry(nil, 5, []byte("cookie")))
	f.Add(AppendRefuse(nil, 6))
	f.Add(AppendReset(nil, Header{Type: PacketData, DstCID: 7, PacketNumber: 8}))
	f.Add([]byte{Version, byte(PacketData)})
	protected := make([]byte, minProtectedLen)
	putHeader(protected, Header{Type: PacketApp | packetKeyPhase, DstCID: 9, PacketNumber: 10})
	f.Add(protected)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := ParseHeader(b)
		if err != nil {
			return
		}
		if h.Type == PacketHandshake || h.Type == PacketApp {
			// (No checksum: the connection's AEAD checks the rest.)
			if len(b) < minProtectedLen || len(body) != len(b)-headerLen || b[1]&^packetKeyPhase != byte(h.Type) {
				t.Fatalf("protected packet of %d bytes parsed as %+v, body %d bytes", len(b), h, len(body))
			}
			return
		}
		if len(body) != len(b)-PacketOverhead {
			t.Fatalf("body %d bytes of a %d-byte datagram", len(body), len(b))
		}
		if again := sealed(h, body); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
		}
		switch h.Type {
		case PacketRetry:
			if cookie, err := parseRetry(body); err == nil {
				if len(cookie) == 0 || len(cookie) > MaxCookieLen {
					t.Fatalf("cookie of %d bytes accepted", len(cookie))
				}
				if h.PacketNumber == 0 && !bytes.Equal(AppendRetry(nil, h.DstCID, cookie), b) {
					t.Fatal("AppendRetry does not reproduce the Retry")
				}
			}
		case PacketData:
			if hello, ok := PeekHello(body); ok && (hello.SrcCID == 0 || len(hello.Cookie) > MaxCookieLen) {
				t.Fatalf("bad HELLO accepted: %+v", hello)
			}
		case PacketReset:
			if len(body) == 0 && !bytes.Equal(AppendReset(nil, Header{Type: PacketData, DstCID: h.DstCID, PacketNumber: h.PacketNumber}), b) {
				t.Fatal("AppendReset does not reproduce the reset")
			}
		}
	})
}

// FuzzParseQuoted: any bytes (an ICMP error's quote of a datagram, cut
// anywhere) either name a connection by the IDs at their fixed places, or
// fail; never a panic.
func FuzzParseQuoted(f *testing.F) {
	f.Add(sealed(Header{Type: PacketData, DstCID: 1, PacketNumber: 2}, []byte{framePing}))
	f.Add(sealed(Header{Type: PacketData}, appendHello(nil, &HelloFrame{SrcCID: 9, Cookie: []byte("c")})))
	f.Add(AppendReset(nil, Header{DstCID: 3}))
	f.Add([]byte{Version, byte(PacketData), 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		q, ok := ParseQuoted(b)
		if !ok {
			if q != (Quoted{}) {
				t.Fatalf("failed parse returned %+v", q)
			}
			return
		}
		if len(b) < headerLen || b[0] != Version {
			t.Fatalf("accepted %x", b)
		}
		switch pt := PacketType(b[1]); {
		case pt == PacketData:
		case pt&^packetKeyPhase == PacketHandshake || pt&^packetKeyPhase == PacketApp:
			// A protected packet's body is ciphertext: only its DstCID,
			// in the clear, names the connection.
			if q.SrcCID != 0 || q.DstCID != binary.BigEndian.Uint64(b[2:10]) {
				t.Fatalf("protected quote %x read as %+v", b, q)
			}
		default:
			t.Fatalf("accepted %x, of type %#x", b, b[1])
		}
		if q.DstCID == 0 && q.SrcCID == 0 {
			t.Fatal("a quote naming no connection accepted")
		}
		if q.DstCID != binary.BigEndian.Uint64(b[2:10]) {
			t.Fatalf("DstCID %x from %x", q.DstCID, b)
		}
		if q.SrcCID != 0 && (len(b) < headerLen+9 || b[headerLen] != frameHello) {
			t.Fatalf("SrcCID %x from %x", q.SrcCID, b)
		}
	})
}

// FuzzDecodeFrame: decodeFrame never panics, consumes 1..len(b) bytes, and a
// decoded frame re-encodes to exactly the bytes it came from (one encoding
// per value: minimal varints, fixed-width fields).
func FuzzDecodeFrame(f *testing.F) {
	for _, b := range seedFrames() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr frame
		n, err := decodeFrame(b, &fr)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with n %d", err, n)
			}
			return
		}
		if n < 1 || n > len(b) {
			t.Fatalf("n %d out of 1..%d", n, len(b))
		}
		if fr.typ == framePadding {
			if bytes.IndexFunc(b[:n], func(r rune) bool { return r != 0 }) >= 0 || (n < len(b) && b[n] == 0) {
				t.Fatalf("padding run of %d in %x", n, b)
			}
			return
		}
		again := encodeFrame(&fr)
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
		var fr2 frame
		n2, err := decodeFrame(again, &fr2)
		if err != nil || n2 != len(again) {
			t.Fatalf("re-encoded frame does not decode: %v %d", err, n2)
		}
		requireSameFrame(t, &fr, &fr2)
		if fr.typ == frameAck {
			checkAckFrame(t, &fr.ack)
		}
	})
}

// checkAckFrame checks what decodeAck promises: 1..maxAckRanges ranges, the
// first starting at 0, each below the previous with a gap, within 2^32.
func checkAckFrame(t *testing.T, a *ackFrame) {
	t.Helper()
	if len(a.ranges) == 0 || len(a.ranges) > maxAckRanges || a.ranges[0].lo != 0 {
		t.Fatalf("bad ranges %v", a.ranges)
	}
	for i, r := range a.ranges {
		if r.lo > r.hi || r.hi > 1<<32 {
			t.Fatalf("bad range %d: %v", i, a.ranges)
		}
		if i > 0 && r.lo < a.ranges[i-1].hi+2 {
			t.Fatalf("ranges %d, %d overlap or touch: %v", i-1, i, a.ranges)
		}
	}
}

// FuzzAckRanges: the packet numbers named by the data are received in the
// data's order; pnRanges must agree with a set (contains never false for a
// number received; never true above the floor for one not received), keep
// at most maxAckRanges sorted, disjoint runs, and the ACK frame built from
// it must decode to the same numbers. The bytes are also decoded as an ACK
// frame body.
func FuzzAckRanges(f *testing.F) {
	f.Add(uint32(0), []byte{0, 1, 2, 3, 5, 4})
	f.Add(uint32(0xfffffff0), []byte{1, 20, 3, 40, 5, 6, 7, 0, 200, 100})
	f.Add(uint32(1<<31), bytes.Repeat([]byte{3, 1, 255}, 80))
	f.Add(uint32(7), []byte{0, 0, 1, 0, 0, 1, 0x80, 0x01, 0, 5, 0})
	f.Fuzz(func(t *testing.T, base uint32, data []byte) {
		var r pnRanges
		seen := map[uint64]bool{}
		start := uint64(base) + 1<<32 // room below for stray numbers
		for i, x := range data {
			var pn uint64
			if i%3 == 2 {
				pn = start + uint64(x)*uint64(1+i/3) // spread far apart
			} else {
				pn = start + uint64(x)
			}
			if r.contains(pn) {
				if !seen[pn] && pn >= r.floor {
					t.Fatalf("contains(%d) true, never added (floor %d, runs %v)", pn, r.floor, r.runs)
				}
				continue
			}
			if seen[pn] {
				t.Fatalf("contains(%d) false after add (floor %d, runs %v)", pn, r.floor, r.runs)
			}
			largest, had := r.largest()
			inOrder := r.add(pn)
			if want := !had || pn == largest+1; inOrder != want {
				t.Fatalf("add(%d) inOrder %v, want %v (largest %d)", pn, inOrder, want, largest)
			}
			seen[pn] = true
			checkRuns(t, &r, seen)
		}
		if len(r.runs) > 0 {
			a := ackOf(r.runs)
			a.delay, a.maxData = uint64(base), uint64(len(data))
			var fr frame
			n, err := decodeFrame(appendAck(nil, &a), &fr)
			if err != nil {
				if r.runs[0].hi-r.runs[len(r.runs)-1].lo > 1<<32 {
					return // spans more than 32 bits can name
				}
				t.Fatalf("own ACK rejected: %v (runs %v)", err, r.runs)
			}
			full := unwrap32(r.runs[0].hi+1, fr.ack.largest)
			if full != r.runs[0].hi || n == 0 {
				t.Fatalf("largest %d unwraps to %d", r.runs[0].hi, full)
			}
			for i, rg := range fr.ack.ranges {
				if want := r.runs[i]; full-rg.hi != want.lo || full-rg.lo != want.hi {
					t.Fatalf("range %d decodes to %d..%d, want %v", i, full-rg.hi, full-rg.lo, want)
				}
			}
		}

		var fr frame
		body := append([]byte{frameAck}, data...)
		if n, err := decodeFrame(body, &fr); err == nil {
			if n > len(body) {
				t.Fatalf("n %d > %d", n, len(body))
			}
			checkAckFrame(t, &fr.ack)
			if again := appendAck(nil, &fr.ack); !bytes.Equal(again, body[:n]) {
				t.Fatalf("re-encoding differs:\n%x\n%x", again, body[:n])
			}
		}
	})
}

// checkRuns checks pnRanges' invariants against the set of added numbers.
func checkRuns(t testing.TB, r *pnRanges, seen map[uint64]bool) {
	t.Helper()
	if len(r.runs) > maxAckRanges {
		t.Fatalf("%d runs", len(r.runs))
	}
	for i, run := range r.runs {
		if run.lo > run.hi || run.lo < r.floor {
			t.Fatalf("run %d %v bad (floor %d)", i, run, r.floor)
		}
		if i > 0 && run.hi+1 >= r.runs[i-1].lo {
			t.Fatalf("runs %d, %d not sorted, disjoint and apart: %v", i-1, i, r.runs)
		}
	}
	for pn := range seen {
		if !r.contains(pn) {
			t.Fatalf("contains(%d) false after add (floor %d, runs %v)", pn, r.floor, r.runs)
		}
	}
	for _, run := range r.runs {
		for _, pn := range []uint64{run.lo, run.hi} {
			if !seen[pn] {
				t.Fatalf("run %v covers %d, never added", run, pn)
			}
		}
	}
}

// seedFrames are valid frames of every type, for the fuzz corpora.
func seedFrames() [][]byte {
	out := [][]byte{
		{framePadding, framePadding},
		{framePing},
		appendClose(nil, CloseGraceful, 0xfffffffe, ""),
		appendClose(nil, CloseError, 0, "aborted"),
		appendClose(nil, CloseProtocolViolation, 0, "a reason"),
		appendHello(nil, &HelloFrame{SrcCID: 0x1111, InitialSeq: 1, MaxData: 1 << 22, MaxAckDelay: 1000, MaxMessageSize: 1 << 20, MaxDatagramSize: 1400, Cookie: []byte("cookie")}),
		appendPathData(nil, framePathChallenge, &[pathDataLen]byte{1, 2, 3, 4, 5, 6, 7, 8}),
		appendPathData(nil, framePathResponse, &[pathDataLen]byte{8, 7, 6, 5, 4, 3, 2, 1}),
	}
	a := ackOf([]pnRange{{100, 120}, {90, 95}, {2, 80}})
	a.delay, a.maxData = 300, 1<<22
	out = append(out, appendAck(nil, &a))
	for _, m := range msgFrames() {
		out = append(out, appendMsg(nil, &m))
	}
	for _, f := range streamCtlFrames() {
		out = append(out, appendStreamCtl(nil, f.typ, &f.stream))
	}
	return append(out,
		appendStreamFin(nil, &streamFinFrame{stream: 0, final: 3}),
		appendStreamFin(nil, &streamFinFrame{stream: 0, final: 0x1111}),
		appendStreamFin(nil, &streamFinFrame{stream: 300, final: 0xfffffffe}))
}

// honestMessages is what the honest peer sends in FuzzHandleDatagram:
// distinct lengths, so a received message names the one it should equal.
func honestMessages() []Message {
	var out []Message
	for i := 0; i < 12; i++ {
		g := []Guarantee{Delivery, Delivery, Order, None}[i%4]
		n := 1 + i*97
		if i == 5 {
			n = 3000 // fragmented
		}
		b := make([]byte, n)
		for k := range b {
			b[k] = byte(i*31 + k)
		}
		out = append(out, Message{Data: b, Guarantee: g})
	}
	return out
}

// FuzzHandleDatagram feeds one established connection (b) the fuzz bytes
// as a datagram, and again wrapped in a valid header and checksum for its
// connection ID so the frame decoders run, between two batches of honest
// traffic from its peer (a). Afterwards b must still work, hold bounded
// memory, and only ever yield honest messages, or bytes the fuzz frames
// themselves carried.
func FuzzHandleDatagram(f *testing.F) {
	for _, b := range seedFrames() {
		f.Add(b)
	}
	// Whole datagrams as a real peer sends them, captured from a pair.
	p := newWirePair(f, nil)
	_ = p.a.Send(Delivery, []byte("hello"))
	_ = p.a.Send(None, bytes.Repeat([]byte("n"), 2000))
	var captured [][]byte
	for range 20 {
		p.stepTap(func(from *Conn, d []byte) {
			if from == p.a && len(captured) < 4 {
				captured = append(captured, bytes.Clone(d))
			}
		})
	}
	for _, d := range captured {
		f.Add(d)
	}
	// A path MTU probe's body: PING, then PADDING to the size probed.
	probe := make([]byte, 1452)
	f.Add(probe[:appendProbe(probe, len(probe))][headerLen:])
	// Stateless resets for b: echoing a packet it sent (the pair's
	// connection IDs and sequences are fixed), and forgeries.
	for _, pn := range []uint32{3, 12, 30, 1 << 20} {
		f.Add(AppendReset(nil, Header{Type: PacketData, DstCID: 0x1111, PacketNumber: pn}))
		f.Add(AppendReset(nil, Header{Type: PacketData, DstCID: 0x2222, PacketNumber: pn}))
	}

	f.Fuzz(func(t *testing.T, in []byte) {
		p := newWirePair(t, &Config{ReceiveWindow: 1 << 18, MaxMessageSize: 1 << 16, SendBufferSize: 1 << 18})
		a, b := p.a, p.b
		honest := honestMessages()
		var got []Message
		recv := func() {
			for range 100 {
				m, err := b.Recv()
				if err != nil || m.Data == nil {
					return
				}
				got = append(got, Message{Data: bytes.Clone(m.Data), Guarantee: m.Guarantee})
			}
		}
		send := func(msgs []Message) {
			for _, m := range msgs {
				if err := a.Send(m.Guarantee, m.Data); err != nil {
					t.Fatalf("honest Send: %v", err)
				}
			}
		}
		send(honest[:6])
		for range 20 {
			p.step()
			recv()
		}

		// What the fuzz bytes could inject: the frames b decodes from them.
		var injected []msgFrame
		closes, sawFrames := false, false
		collect := func(body []byte) {
			var fr frame
			for len(body) > 0 {
				n, err := decodeFrame(body, &fr)
				if err != nil {
					return
				}
				sawFrames = true
				switch {
				case fr.typ&0xf0 == frameMsg, fr.typ&0xf0 == frameStreamMsg:
					m := fr.msg
					m.data = bytes.Clone(m.data)
					injected = append(injected, m)
				case fr.typ == frameClose, fr.typ == frameStreamFin:
					closes = true // (a STREAM_FIN makes the honest second batch a violation)
				}
				body = body[n:]
			}
		}
		if h, body, err := ParseHeader(in); err == nil && h.Type == PacketData {
			collect(body)
		} else if err == nil && h.Type == PacketReset {
			closes = true // a reset that echoes one of b's packets ends b
		}
		wrapped := sealed(Header{Type: PacketData, DstCID: b.LocalCID(), PacketNumber: uint32(a.nextPN)}, in)
		collect(in)
		_ = sawFrames

		b.HandleDatagram(p.now, in)
		b.HandleDatagram(p.now, wrapped)
		recv()
		checkBounded(t, b)

		send(honest[6:])
		for i := 0; i < 3000 && !b.Closed(); i++ {
			p.step()
			recv()
			if i%100 == 0 {
				checkBounded(t, b)
			}
		}
		checkBounded(t, b)
		// Still usable: polling and receiving must not panic.
		_ = b.PollTransmit(p.now, p.buf)
		_, _ = b.Recv()
		b.HandleTimeout(p.now.Add(time.Hour))
		_, _ = b.Recv()

		checkProvenance(t, got, honest, injected)
		violated := errors.Is(b.Err(), ErrProtocolViolation) || errors.Is(b.life.closing.abortReason, ErrProtocolViolation)
		if violated && b.Stats().ProtocolViolations != 1 {
			t.Fatalf("ended by a protocol violation, %d counted", b.Stats().ProtocolViolations)
		}
		if len(injected) == 0 && !closes && !violated {
			// Nothing could have disturbed the honest stream: every Delivery
			// message arrives, once and in order. (A frame that broke the
			// protocol, such as an ACK of a packet never sent, ends it.)
			var want, have [][]byte
			for _, m := range honest {
				if m.Guarantee == Delivery {
					want = append(want, m.Data)
				}
			}
			for _, m := range got {
				if m.Guarantee == Delivery {
					have = append(have, m.Data)
				}
			}
			if !slices.EqualFunc(want, have, bytes.Equal) {
				t.Fatalf("Delivery messages: got %d, want %d (b closed %v err %v, stats %+v)", len(have), len(want), b.Closed(), b.Err(), b.Stats())
			}
		}
	})
}

// checkBounded checks that what b holds stays within its configured limits.
func checkBounded(t *testing.T, c *Conn) {
	t.Helper()
	s := c.Stats()
	switch {
	case c.recvWindow < c.cfg.ReceiveWindow || c.recvWindow > c.cfg.MaxReceiveWindow:
		t.Fatalf("receive window %d", c.recvWindow)
	case c.pendingDelivery < 0 || c.pendingDelivery > c.recvWindow:
		t.Fatalf("pendingDelivery %d", c.pendingDelivery)
	case c.unreliableBytes < 0 || c.unreliableBytes > c.cfg.ReceiveWindow/4+c.cfg.MaxMessageSize:
		t.Fatalf("unreliableBytes %d", c.unreliableBytes)
	case len(c.acks.recvd.runs) > maxAckRanges:
		t.Fatalf("%d received runs", len(c.acks.recvd.runs))
	case len(c.ord.pending)+len(c.ord.noneMsgs) > 1+c.recvWindow/msgCreditOverhead:
		t.Fatalf("%d pending, %d none messages", len(c.ord.pending), len(c.ord.noneMsgs))
	case s.BytesInFlight < 0 || c.elicitingInFlight < 0:
		t.Fatalf("in flight: %d bytes, %d packets", s.BytesInFlight, c.elicitingInFlight)
	case len(c.sent.inFlight()) > 1<<16:
		t.Fatalf("%d packets remembered", len(c.sent.inFlight()))
	case c.streams != nil && len(c.streams.list) > int(c.cfg.MaxIncomingStreams)+int(c.streams.opened):
		t.Fatalf("%d streams held, the limit is %d", len(c.streams.list), c.cfg.MaxIncomingStreams)
	}
	for _, m := range c.ord.pending {
		if !m.yielded && (len(m.runs) > runLimit(m.total) || m.filled > m.total || m.filled < 0 || m.footprint() > int(m.held)) {
			t.Fatalf("pending message: %d runs, filled %d of %d, footprint %d of %d charged", len(m.runs), m.filled, m.total, m.footprint(), m.held)
		}
	}
	if err := CheckStreamCredit(c); err != nil {
		t.Fatal(err)
	}
}

// checkProvenance: every message b yielded is an honest one, or every byte
// of it was carried at that offset by an honest message of that length or
// by an injected MSG frame (never stale buffer contents).
func checkProvenance(t *testing.T, got, honest []Message, injected []msgFrame) {
	t.Helper()
	counts := map[string]int{}
	for _, m := range got {
		if i := slices.IndexFunc(honest, func(h Message) bool { return bytes.Equal(h.Data, m.Data) && h.Guarantee == m.Guarantee }); i >= 0 {
			counts[string(m.Data)]++
			if len(injected) == 0 && counts[string(m.Data)] > 1 {
				t.Fatalf("honest message %d yielded twice", i)
			}
			continue
		}
		if len(injected) == 0 {
			t.Fatalf("yielded %d bytes (%v) nobody sent: %x", len(m.Data), m.Guarantee, head(m.Data))
		}
		for off, c := range m.Data {
			ok := slices.ContainsFunc(honest, func(h Message) bool { return len(h.Data) == len(m.Data) && h.Data[off] == c })
			ok = ok || slices.ContainsFunc(injected, func(f msgFrame) bool {
				start := 0
				if f.fragment {
					start = int(f.offset)
				}
				return off >= start && off < start+len(f.data) && f.data[off-start] == c
			})
			if !ok {
				t.Fatalf("yielded %d-byte %v message whose byte %d (%#x) nobody sent", len(m.Data), m.Guarantee, off, c)
			}
		}
	}
}

func head(b []byte) []byte { return b[:min(len(b), 32)] }

// TestWriteFuzzSeeds regenerates the committed seed corpora under
// testdata/fuzz when RUDP_WRITE_SEEDS is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if testingWriteSeeds == "" {
		t.Skip("set RUDP_WRITE_SEEDS=1 to regenerate testdata/fuzz seeds")
	}
	write := func(target, name string, values ...any) {
		var buf bytes.Buffer
		buf.WriteString("go test fuzz v1\n")
		for _, v := range values {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&buf, "[]byte(%q)\n", v)
			case uint32:
				fmt.Fprintf(&buf, "uint32(%d)\n", v)
			}
		}
		writeSeed(t, target, name, buf.Bytes())
	}
	p := newWirePair(t, nil)
	_ = p.a.Send(Delivery, []byte("seed message"))
	_ = p.a.Send(Order, bytes.Repeat([]byte("o"), 2500))
	var datagrams [][]byte
	for range 30 {
		p.stepTap(func(_ *Conn, d []byte) {
			if len(datagrams) < 6 {
				datagrams = append(datagrams, bytes.Clone(d))
			}
		})
	}
	datagrams = append(datagrams, AppendRetry(nil, 0x2222, []byte("cookie")), AppendRefuse(nil, 0x1111))
	for i, d := range datagrams {
		write("FuzzParseHeader", fmt.Sprintf("datagram-%d", i), d)
		write("FuzzHandleDatagram", fmt.Sprintf("datagram-%d", i), d)
	}
	for i, b := range seedFrames() {
		write("FuzzDecodeFrame", fmt.Sprintf("frame-%d-type-%#x", i, b[0]), b)
		write("FuzzHandleDatagram", fmt.Sprintf("frame-%d-type-%#x", i, b[0]), b)
	}
	acks := []struct {
		base uint32
		data []byte
	}{
		{0, []byte{0, 1, 2, 3, 5, 4, 9, 7}},
		{0xfffffff0, []byte{1, 20, 3, 40, 5, 6, 7, 0, 200, 100}},
		{1 << 31, bytes.Repeat([]byte{3, 1, 255}, 80)},
		{7, []byte{0, 0, 1, 0, 0, 1, 0x80, 0x01, 0, 5, 0}},
	}
	for i, c := range acks {
		write("FuzzAckRanges", fmt.Sprintf("ranges-%d", i), c.base, c.data)
	}
}

var testingWriteSeeds = os.Getenv("RUDP_WRITE_SEEDS")

func writeSeed(t *testing.T, target, name string, content []byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzProtectedDatagram: whatever arrives at a protected connection, as a
// whole datagram and as the body of a protected packet addressed to it
// (the fuzz bytes after a valid header: what reaches header protection
// and the AEAD), is dropped and counted: nothing authenticates without the
// keys, so nothing is applied or acknowledged, the packet numbers expected
// do not move, and the connection goes on; never a panic.
func FuzzProtectedDatagram(f *testing.F) {
	p := newProtectedPair(f, tls.TLS_AES_128_GCM_SHA256, 0)
	for _, g := range []Guarantee{None, Delivery} {
		d := p.sealedFrom(f, p.a, g, []byte("a genuine message"))
		f.Add(d)
		f.Add(d[headerLen:])
		x := bytes.Clone(d)
		x[len(x)/2] ^= 0x40
		f.Add(x)
	}
	f.Add(sealed(Header{Type: PacketData, DstCID: 0x2222, PacketNumber: 40}, appendMsg(nil, &msgFrame{guarantee: Delivery, data: []byte("forged")})))
	f.Add(make([]byte, minProtectedLen))
	f.Fuzz(func(t *testing.T, in []byte) {
		p := newProtectedPair(t, testSuites[len(in)%len(testSuites)], 0)
		b := p.b
		p.sendStep(t, "before")
		largest, _ := b.acks.largest()
		body := in
		if len(in) > 0 && in[0]&1 == 1 { // (half the inputs: a whole datagram)
			body = nil
		}
		datagrams := [][]byte{in}
		if body != nil {
			for _, typ := range []PacketType{PacketApp, PacketHandshake} {
				x := make([]byte, headerLen, headerLen+len(body))
				putHeader(x, Header{Type: typ | PacketType(len(in)>>1&1), DstCID: b.localCID, PacketNumber: uint32(largest) + uint32(len(in))})
				datagrams = append(datagrams, append(x, body...))
			}
		}
		for _, d := range datagrams {
			b.HandleDatagram(p.now, d)
			if l, _ := b.acks.largest(); l != largest || b.acks.owed() || b.Closed() {
				t.Fatalf("%x: largest %d (was %d), ACK owed %v, closed %v", d, l, largest, b.acks.owed(), b.Closed())
			}
			if m, _ := b.Recv(); m.Data != nil {
				t.Fatalf("%x delivered %q", d, m.Data)
			}
		}
		p.sendStep(t, "after")
	})
}
