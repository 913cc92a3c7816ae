package core

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// newWirePairOf is newWirePair with a config per side.
func newWirePairOf(t testing.TB, cfgA, cfgB *Config) *wirePair {
	t.Helper()
	cfgA.Rand, cfgB.Rand = rand.NewPCG(1, 2), rand.NewPCG(3, 4)
	a, b, now := newConnPair(t, cfgA, cfgB)
	p := &wirePair{now: now, a: a, b: b, buf: make([]byte, 65536)}
	p.establish(t)
	return p
}

// TestMessageOverPeerLimit: a sender whose
// MaxMessageSize is 2 MiB sends a 1.5 MiB Delivery message, then a short
// one, then closes, to a receiver that takes at most 1 MiB. The receiver
// used to drop the fragments yet acknowledge their packets (1,205 of
// them), the sender's close completed, and the receiver read io.EOF
// without the short message. Now Send refuses the large message up front
// (the HELLO told the sender the peer's limit), the short one arrives,
// then io.EOF, and no packet is acknowledged whose frames were discarded.
func TestMessageOverPeerLimit(t *testing.T) {
	p := newWirePairOf(t, &Config{MaxMessageSize: 2 << 20, ReceiveWindow: 4 << 20}, &Config{})
	big := bytes.Repeat([]byte{0xB1}, 1536<<10)
	short := []byte("the message after the large one")
	errBig := p.a.Send(Delivery, big)
	sentShort := false
	var got [][]byte
	var recvErr error
	for i := 0; i < 200000 && recvErr == nil; i++ {
		if !sentShort {
			switch err := p.a.Send(Delivery, short); {
			case err == nil:
				sentShort = true
				p.a.Close(p.now)
			case !errors.Is(err, ErrWouldBlock):
				t.Fatalf("Send(short): %v", err)
			}
		}
		p.step()
		for recvErr == nil {
			m, err := p.b.Recv()
			if err != nil {
				recvErr = err
				break
			}
			if m.Data == nil {
				break
			}
			got = append(got, bytes.Clone(m.Data))
		}
	}
	// (Before the ack rule, FlowViolations counted the fragments dropped
	// from packets that were acknowledged all the same.)
	discarded := p.b.Stats().ProtocolViolations + p.b.Stats().PacketsRefused
	t.Logf("Send(1.5 MiB) = %v; sender closed %v (err %v); receiver read %d messages, then %v; fragments discarded by the receiver after their packets were acknowledged: %d",
		errBig, p.a.Closed(), p.a.Err(), len(got), recvErr, discarded)
	if !errors.Is(errBig, ErrMessageTooLarge) {
		t.Errorf("Send of 1.5 MiB to a peer accepting 1 MiB: %v, want ErrMessageTooLarge", errBig)
	}
	if discarded != 0 {
		t.Errorf("the receiver discarded %d fragments of acknowledged packets", discarded)
	}
	if len(got) != 1 || !bytes.Equal(got[0], short) || recvErr != io.EOF {
		t.Errorf("the receiver read %d messages, then %v; want the short message, then io.EOF", len(got), recvErr)
	}
}

// hostileDelivery is the k-th Delivery message of the hostile peer, whole.
func hostileDelivery(k uint32) []byte {
	m := msgFrame{guarantee: Delivery, seq: 0xFFFFFFF0 + k, d: 0xFFFFFFF0 + k, data: []byte{byte(k)}}
	return appendMsg(nil, &m)
}

// hostileClose is the hostile peer's graceful CLOSE after its Delivery message k-1.
func hostileClose(k uint32) []byte { return appendClose(nil, CloseGraceful, 0xFFFFFFF0+k, "") }

// readAll reads what c yields now: the first byte of each message, and the error.
func readAll(c *Conn) ([]byte, error) {
	var got []byte
	for {
		m, err := c.Recv()
		if err != nil || m.Data == nil {
			return got, err
		}
		got = append(got, m.Data[0])
	}
}

// refusedOverGap sends Delivery messages 0 and 2, then end (a CLOSE or a
// STREAM_FIN, named what) with the final position 3, over the gap at 1: it
// must be refused and not received, not end the peer's direction (ended),
// and only message 0 can be read.
func (h *hostilePeer) refusedOverGap(t *testing.T, what string, end []byte, ended func() bool) {
	t.Helper()
	h.send(hostileDelivery(0))
	h.send(hostileDelivery(2))
	received := h.c.Stats().PacketsReceived
	h.send(end)
	if s := h.c.Stats(); s.PacketsRefused != 1 || s.PacketsReceived != received || ended() {
		t.Fatalf("%s over a gap: refused %d, received %d (was %d), peer's direction ended %v", what, s.PacketsRefused, s.PacketsReceived, received, ended())
	}
	if got, err := readAll(h.c); !bytes.Equal(got, []byte{0}) || err != nil {
		t.Fatalf("read %v, %v over the gap; want message 0 and nothing more yet", got, err)
	}
}

// TestCloseOverGap: a graceful CLOSE whose final position lies beyond a
// Delivery message not yet received is refused (not acknowledged, so the
// peer sends it again) and the application never reads io.EOF over the
// gap; once the gap fills, the CLOSE is acknowledged and io.EOF follows
// the last message. If it never fills, the connection ends with an error.
func TestCloseOverGap(t *testing.T) {
	h := newHostilePeer(t)
	h.refusedOverGap(t, "CLOSE", hostileClose(3), h.c.PeerClosed)

	h.send(hostileDelivery(1))
	h.send(hostileClose(3))
	if s := h.c.Stats(); s.PacketsRefused != 1 || !h.c.PeerClosed() {
		t.Fatalf("CLOSE after the gap filled: refused %d, peer closed %v", s.PacketsRefused, h.c.PeerClosed())
	}
	if got, err := readAll(h.c); !bytes.Equal(got, []byte{1, 2}) || err != io.EOF {
		t.Fatalf("read %v, %v; want messages 1 and 2, then io.EOF", got, err)
	}

	// The gap never fills (the sender is gone): an error, never io.EOF.
	h = newHostilePeer(t)
	h.send(hostileDelivery(1))
	h.send(hostileClose(2))
	h.c.HandleTimeout(h.now.Add(time.Hour))
	if got, err := readAll(h.c); len(got) != 0 || !errors.Is(err, ErrIdleTimeout) {
		t.Fatalf("read %v, %v after the peer vanished over a gap; want ErrIdleTimeout", got, err)
	}
}

// sentClose returns the CLOSE frame among the datagrams c sent, if any.
func sentClose(t *testing.T, datagrams [][]byte) (closeFrame, bool) {
	t.Helper()
	for _, d := range datagrams {
		_, body, err := ParseHeader(d)
		if err != nil {
			t.Fatal(err)
		}
		var f frame
		for len(body) > 0 {
			n, err := decodeFrame(body, &f)
			if err != nil {
				t.Fatalf("c sent a malformed frame: %v", err)
			}
			if f.typ == frameClose {
				return f.close, true
			}
			body = body[n:]
		}
	}
	return closeFrame{}, false
}

// TestProtocolViolations: what an honest peer never sends ends the
// connection: the packet is not acknowledged, the application reads an
// error matching ErrProtocolViolation (never io.EOF), and the peer is told
// with a CLOSE carrying CloseProtocolViolation and the reason.
func TestProtocolViolations(t *testing.T) {
	frag := func(seq uint32, total uint64, data []byte) []byte {
		m := msgFrame{guarantee: Delivery, seq: 0xFFFFFFF0 + seq, d: 0xFFFFFFF0 + seq, fragment: true, total: total, data: data}
		return appendMsg(nil, &m)
	}
	cases := []struct {
		name   string
		before [][]byte // honest packets
		bad    func(c *Conn) []byte
	}{
		{"message over MaxMessageSize", nil, func(c *Conn) []byte {
			return frag(0, uint64(c.cfg.MaxMessageSize)+1, []byte("x"))
		}},
		{"Delivery beyond the credit", [][]byte{frag(0, 4000, []byte("a")), frag(1, 4000, []byte("b"))}, func(*Conn) []byte {
			return frag(2, 4000, []byte("c"))
		}},
		{"fragment with another total", [][]byte{frag(0, 1000, []byte("a"))}, func(*Conn) []byte {
			m := msgFrame{guarantee: Delivery, seq: 0xFFFFFFF0, d: 0xFFFFFFF0, fragment: true, total: 2000, offset: 10, data: []byte("b")}
			return appendMsg(nil, &m)
		}},
		{"fragment with another guarantee", [][]byte{frag(0, 1000, []byte("a"))}, func(*Conn) []byte {
			m := msgFrame{guarantee: Order, seq: 0xFFFFFFF0, d: 0xFFFFFFF0, fragment: true, total: 1000, offset: 10, data: []byte("b")}
			return appendMsg(nil, &m)
		}},
		{"ACK of a packet never sent", nil, func(c *Conn) []byte {
			a := ackFrame{largest: uint32(c.nextPN) + 5, ranges: []ackRange{{0, 0}}}
			return appendAck(nil, &a)
		}},
		{"Delivery after the CLOSE's final position", [][]byte{hostileDelivery(0), hostileClose(1)}, func(*Conn) []byte {
			return hostileDelivery(1)
		}},
		{"CLOSE again with another final position", [][]byte{hostileDelivery(0), hostileClose(1)}, func(*Conn) []byte {
			return hostileClose(2)
		}},
		{"CLOSE before messages already read", [][]byte{hostileDelivery(0), hostileDelivery(1)}, func(*Conn) []byte {
			return hostileClose(1)
		}},
		{"Delivery after the STREAM_FIN's final position", [][]byte{hostileDelivery(0), hostileFin(1)}, func(*Conn) []byte {
			return hostileDelivery(1)
		}},
		{"STREAM_FIN below a Delivery message held", [][]byte{hostileDelivery(0), hostileDelivery(2)}, func(*Conn) []byte {
			return hostileFin(2)
		}},
		{"STREAM_FIN again with another final position", [][]byte{hostileDelivery(0), hostileFin(1)}, func(*Conn) []byte {
			return hostileFin(2)
		}},
		{"STREAM_FIN before messages already read", [][]byte{hostileDelivery(0), hostileDelivery(1)}, func(*Conn) []byte {
			return hostileFin(1)
		}},
		{"STREAM_FIN for a stream that may not be open", nil, func(*Conn) []byte {
			// (Beyond the limit whoever opens it: §17.)
			return appendStreamFin(nil, &streamFinFrame{stream: 1 << 40, final: 0xFFFFFFF0})
		}},
		{"CLOSE with another final position than its STREAM_FIN", [][]byte{hostileDelivery(0), hostileFin(1)}, func(*Conn) []byte {
			return hostileClose(2)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostilePeer(t)
			for _, b := range tc.before {
				h.send(b)
			}
			if _, err := readAll(h.c); err != nil && err != io.EOF {
				t.Fatalf("honest part: %v", err)
			}
			received := h.c.Stats().PacketsReceived
			h.send(tc.bad(h.c))
			s := h.c.Stats()
			if s.ProtocolViolations != 1 || s.PacketsReceived != received {
				t.Fatalf("violations %d, packets received %d (was %d): the violating packet must not count, nor be acknowledged", s.ProtocolViolations, s.PacketsReceived, received)
			}
			if _, err := readAll(h.c); !errors.Is(err, ErrProtocolViolation) {
				t.Fatalf("Recv: %v, want ErrProtocolViolation", err)
			}
			if err := h.c.Send(Delivery, []byte("x")); !errors.Is(err, ErrProtocolViolation) {
				t.Fatalf("Send: %v, want ErrProtocolViolation", err)
			}
			cl, ok := sentClose(t, h.sent)
			if !ok || cl.code != CloseProtocolViolation || len(cl.reason) == 0 {
				t.Fatalf("answer to the violation: CLOSE %v %+v, want CloseProtocolViolation with a reason", ok, cl)
			}
			t.Logf("reason sent: %q", cl.reason)
			// The first reason stands: another violation, or the
			// application aborting, changes nothing.
			never := ackFrame{largest: uint32(h.c.nextPN) + 5, ranges: []ackRange{{0, 0}}}
			h.send(appendAck(nil, &never))
			h.c.Abort(h.now, ErrClosed)
			if _, err := readAll(h.c); !errors.Is(err, ErrProtocolViolation) || h.c.Stats().ProtocolViolations != 1 {
				t.Fatalf("after more: Recv %v, %d violations counted", err, h.c.Stats().ProtocolViolations)
			}
			h.c.HandleTimeout(h.now.Add(time.Minute))
			if !h.c.Closed() || !errors.Is(h.c.Err(), ErrProtocolViolation) {
				t.Fatalf("ended %v with %v", h.c.Closed(), h.c.Err())
			}
		})
	}
}

// TestViolationSeenByBothSides: a sender that ignores the limit the peer's
// HELLO announced gets no fragment acknowledged; the receiver ends with
// ErrProtocolViolation, the sender with ErrPeerProtocolViolation and the
// receiver's reason.
func TestViolationSeenByBothSides(t *testing.T) {
	p := newWirePairOf(t, &Config{MaxMessageSize: 2 << 20, ReceiveWindow: 4 << 20}, &Config{})
	p.a.peerMaxMessage = 0 // a buggy sender: forgets the peer's limit
	if err := p.a.Send(Delivery, make([]byte, 1536<<10)); err != nil {
		t.Fatal(err)
	}
	bigPackets := map[uint32]bool{}
	ackedBig := 0
	tap := func(from *Conn, d []byte) {
		h, body, err := ParseHeader(d)
		if err != nil {
			t.Fatal(err)
		}
		var f frame
		for len(body) > 0 {
			n, err := decodeFrame(body, &f)
			if err != nil {
				t.Fatal(err)
			}
			body = body[n:]
			switch {
			case from == p.a && f.typ&0xf0 == frameMsg && f.msg.total > 1<<20:
				bigPackets[h.PacketNumber] = true
			case from == p.b && f.typ == frameAck:
				for pn := range bigPackets {
					for _, r := range f.ack.ranges {
						if dist := uint64(f.ack.largest - pn); dist >= r.lo && dist <= r.hi {
							ackedBig++
						}
					}
				}
			}
		}
	}
	for i := 0; i < 10000 && !(p.a.Closed() && p.b.Closed()); i++ {
		p.stepTap(tap)
	}
	t.Logf("a: %v; b: %v; %d packets with fragments of the large message sent, %d acknowledged", p.a.Err(), p.b.Err(), len(bigPackets), ackedBig)
	if !errors.Is(p.b.Err(), ErrProtocolViolation) || !errors.Is(p.a.Err(), ErrPeerProtocolViolation) {
		t.Fatalf("a ended with %v, b with %v; want ErrPeerProtocolViolation, ErrProtocolViolation", p.a.Err(), p.b.Err())
	}
	if len(bigPackets) == 0 || ackedBig != 0 {
		t.Fatalf("%d packets carrying fragments over the limit acknowledged (of %d)", ackedBig, len(bigPackets))
	}
	if _, err := p.b.Recv(); !errors.Is(err, ErrProtocolViolation) {
		t.Fatalf("b's Recv: %v", err)
	}
}

// TestHelloCarriesLimits: each side learns the peer's MaxMessageSize and
// MaxDatagramSize from its HELLO; Send refuses a message over the peer's
// limit up front, with an error matching ErrMessageTooLarge.
func TestHelloCarriesLimits(t *testing.T) {
	p := newWirePairOf(t, &Config{MaxMessageSize: 1 << 20, MaxDatagramSize: 1400}, &Config{MaxMessageSize: 1000, MaxDatagramSize: 1300})
	if got := p.a.life.peerMaxDatagram(); got != 1300 {
		t.Errorf("a: peer's max datagram %d, want 1300", got)
	}
	if got := p.b.life.peerMaxDatagram(); got != 1400 {
		t.Errorf("b: peer's max datagram %d, want 1400", got)
	}
	if p.a.MaxMessageSize() != 1000 || p.b.MaxMessageSize() != 1000 {
		t.Errorf("MaxMessageSize: a %d, b %d; want 1000 both", p.a.MaxMessageSize(), p.b.MaxMessageSize())
	}
	if err := p.a.Send(Delivery, make([]byte, 1001)); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("a: Send of 1001 bytes to a peer taking 1000: %v", err)
	}
	if err := p.a.Send(Delivery, make([]byte, 1000)); err != nil {
		t.Errorf("a: Send of 1000 bytes: %v", err)
	}
	if err := p.b.Send(Delivery, make([]byte, 1001)); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("b: Send of 1001 bytes over its own limit: %v", err)
	}
	c, err := NewConn(&Config{}, 7, p.now)
	if err != nil {
		t.Fatal(err)
	}
	if c.life.peerMaxDatagram() != 0 || c.MaxMessageSize() != 1<<20 {
		t.Errorf("before the HELLO: peer's max datagram %d, MaxMessageSize %d", c.life.peerMaxDatagram(), c.MaxMessageSize())
	}
}

// TestQueuedBeforeHandshakeOverPeerLimit: a message Send took before the
// peer's HELLO told its limit, and larger than it, does not vanish: the
// connection ends with an error matching ErrMessageTooLarge, and the peer
// learns why (ErrAborted with the reason).
func TestQueuedBeforeHandshakeOverPeerLimit(t *testing.T) {
	a, b, now := newConnPair(t, &Config{MaxMessageSize: 2 << 20, ReceiveWindow: 4 << 20}, &Config{})
	if err := a.Send(Delivery, make([]byte, 1536<<10)); err != nil {
		t.Fatalf("Send before the handshake: %v", err)
	}
	p := &wirePair{now: now, a: a, b: b, buf: make([]byte, 65536)}
	for i := 0; i < 1000 && !(a.Closed() && b.Closed()); i++ {
		p.step()
	}
	if !errors.Is(a.Err(), ErrMessageTooLarge) || !errors.Is(b.Err(), ErrAborted) {
		t.Fatalf("a ended with %v, b with %v; want ErrMessageTooLarge, ErrAborted", a.Err(), b.Err())
	}
	t.Logf("a: %v\nb: %v", a.Err(), b.Err())
}

// TestHelloLimitsDecoding: the limits a HELLO announces must be usable
// values; anything else makes the frame malformed.
func TestHelloLimitsDecoding(t *testing.T) {
	for _, c := range []struct {
		msg, dgram uint64
		ok         bool
	}{
		{1, MinHelloDatagram, true},
		{maxMessageLimit, maxUDPPayload, true},
		{0, 1400, false},
		{maxMessageLimit + 1, 1400, false},
		{1 << 20, MinHelloDatagram - 1, false},
		{1 << 20, maxUDPPayload + 1, false},
		{1 << 20, 0, false},
	} {
		b := appendHello(nil, &HelloFrame{SrcCID: 1, MaxMessageSize: c.msg, MaxDatagramSize: c.dgram})
		var f frame
		_, err := decodeFrame(b, &f)
		if (err == nil) != c.ok {
			t.Errorf("HELLO with MaxMessageSize %d, MaxDatagramSize %d: %v", c.msg, c.dgram, err)
		}
		if _, ok := PeekHello(b); ok != c.ok {
			t.Errorf("PeekHello with MaxMessageSize %d, MaxDatagramSize %d: %v", c.msg, c.dgram, ok)
		}
	}
}

// TestCloseDecoding: each code's layout, a reason longer than
// maxCloseReason rejected, every shorter prefix rejected.
func TestCloseDecoding(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want closeFrame
	}{
		{appendClose(nil, CloseGraceful, 0x01020304, "ignored"), closeFrame{code: CloseGraceful, final: 0x01020304}},
		{appendClose(nil, CloseRefused, 9, "ignored"), closeFrame{code: CloseRefused}},
		{appendClose(nil, CloseError, 9, "why"), closeFrame{code: CloseError, reason: []byte("why")}},
		{appendClose(nil, CloseProtocolViolation, 0, string(bytes.Repeat([]byte("r"), 300))), closeFrame{code: CloseProtocolViolation, reason: bytes.Repeat([]byte("r"), maxCloseReason)}},
		{appendClose(nil, 77, 0, ""), closeFrame{code: 77, reason: []byte{}}},
	} {
		var f frame
		n, err := decodeFrame(c.b, &f)
		if err != nil || n != len(c.b) {
			t.Fatalf("%x: %v, %d of %d bytes", c.b, err, n, len(c.b))
		}
		requireSameFrame(t, &frame{typ: frameClose, close: c.want}, &f)
		checkPrefixes(t, c.b)
	}
	long := append([]byte{frameClose, CloseError, maxCloseReason + 1}, bytes.Repeat([]byte("r"), maxCloseReason+1)...)
	var f frame
	if _, err := decodeFrame(long, &f); err == nil {
		t.Fatalf("a reason of %d bytes accepted", maxCloseReason+1)
	}
}
