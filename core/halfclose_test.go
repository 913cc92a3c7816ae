package core

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// hostileFin is the hostile peer's STREAM_FIN for stream 0 after its
// Delivery message k-1.
func hostileFin(k uint32) []byte {
	return appendStreamFin(nil, &streamFinFrame{stream: 0, final: 0xFFFFFFF0 + k})
}

// carriesFin reports whether datagram d carries a STREAM_FIN.
func carriesFin(t testing.TB, d []byte) bool {
	t.Helper()
	_, body, err := ParseHeader(d)
	if err != nil {
		t.Fatal(err)
	}
	var f frame
	for len(body) > 0 {
		n, err := decodeFrame(body, &f)
		if err != nil {
			t.Fatalf("malformed frame sent: %v", err)
		}
		if f.typ == frameStreamFin {
			return true
		}
		body = body[n:]
	}
	return false
}

// recvAllOf reads what c yields now, whole messages, and the error.
func recvAllOf(c *Conn) ([][]byte, error) {
	var got [][]byte
	for {
		m, err := c.Recv()
		if err != nil || m.Data == nil {
			return got, err
		}
		got = append(got, bytes.Clone(m.Data))
	}
}

// TestCloseWriteRequestResponse: a sends a request and half-closes; b reads
// the request, then io.EOF, and answers on the same connection; a still
// reads the whole answer, then io.EOF when b closes, and both end cleanly.
// After CloseWrite, Send fails with ErrClosed whatever the guarantee.
func TestCloseWriteRequestResponse(t *testing.T) {
	p := newWirePair(t, nil)
	a, b := p.a, p.b
	request := bytes.Repeat([]byte("GET /x "), 700) // fragmented: 4900 bytes
	if err := a.Send(Delivery, request); err != nil {
		t.Fatal(err)
	}
	if err := a.CloseWrite(p.now); err != nil {
		t.Fatal(err)
	}
	for _, g := range []Guarantee{None, Order, Delivery} {
		if err := a.Send(g, []byte("late")); !errors.Is(err, ErrClosed) {
			t.Fatalf("Send(%v) after CloseWrite: %v, want ErrClosed", g, err)
		}
	}
	if err := a.CloseWrite(p.now); err != nil {
		t.Fatalf("second CloseWrite: %v", err)
	}
	var got [][]byte
	var err error
	for i := 0; i < 200 && err == nil; i++ {
		p.step()
		var more [][]byte
		more, err = recvAllOf(b)
		got = append(got, more...)
	}
	if err != io.EOF || len(got) != 1 || !bytes.Equal(got[0], request) {
		t.Fatalf("b read %d messages, then %v; want the request, then io.EOF", len(got), err)
	}
	if !b.PeerWriteClosed() || b.PeerClosed() || a.Closed() || b.Closed() {
		t.Fatalf("after a's half-close: b peer write closed %v, peer closed %v; a closed %v, b closed %v",
			b.PeerWriteClosed(), b.PeerClosed(), a.Closed(), b.Closed())
	}
	if _, err := b.Recv(); err != io.EOF {
		t.Fatalf("b's second read after io.EOF: %v", err)
	}

	// b answers on the connection a half-closed, then closes.
	response := bytes.Repeat([]byte("200 OK "), 3000)
	if err := b.Send(Delivery, response); err != nil {
		t.Fatalf("b's answer: %v", err)
	}
	if err := b.Send(Delivery, []byte("trailer")); err != nil {
		t.Fatal(err)
	}
	b.Close(p.now)
	got, err = nil, nil
	for i := 0; i < 500 && err == nil; i++ {
		p.step()
		var more [][]byte
		more, err = recvAllOf(a)
		got = append(got, more...)
	}
	if err != io.EOF || len(got) != 2 || !bytes.Equal(got[0], response) || string(got[1]) != "trailer" {
		t.Fatalf("a read %d messages, then %v; want the answer and its trailer, then io.EOF", len(got), err)
	}
	a.Close(p.now)
	for i := 0; i < 500 && !(a.Closed() && b.Closed()); i++ {
		p.step()
	}
	if !a.Closed() || !b.Closed() || a.Err() != nil || b.Err() != nil {
		t.Fatalf("end: a closed %v (%v), b closed %v (%v)", a.Closed(), a.Err(), b.Closed(), b.Err())
	}
	if s := a.Stats(); s.ProtocolViolations != 0 || b.Stats().ProtocolViolations != 0 {
		t.Fatalf("violations: a %d, b %d", s.ProtocolViolations, b.Stats().ProtocolViolations)
	}
}

// TestCloseWriteBothWays: both sides half-close (an io.Copy proxy in each
// direction); each reads all the other sent, then io.EOF, and Close then
// ends both cleanly.
func TestCloseWriteBothWays(t *testing.T) {
	p := newWirePair(t, nil)
	a, b := p.a, p.b
	for i := range 20 {
		if err := a.Send(Delivery, []byte{'a', byte(i)}); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(Delivery, []byte{'b', byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.CloseWrite(p.now); err != nil {
		t.Fatal(err)
	}
	if err := b.CloseWrite(p.now); err != nil {
		t.Fatal(err)
	}
	var gotA, gotB [][]byte
	var errA, errB error
	for i := 0; i < 200 && (errA == nil || errB == nil); i++ {
		p.step()
		if errA == nil {
			var m [][]byte
			m, errA = recvAllOf(a)
			gotA = append(gotA, m...)
		}
		if errB == nil {
			var m [][]byte
			m, errB = recvAllOf(b)
			gotB = append(gotB, m...)
		}
	}
	if errA != io.EOF || errB != io.EOF || len(gotA) != 20 || len(gotB) != 20 {
		t.Fatalf("a read %d then %v, b read %d then %v; want 20 each, then io.EOF", len(gotA), errA, len(gotB), errB)
	}
	for i := range 20 {
		if !bytes.Equal(gotA[i], []byte{'b', byte(i)}) || !bytes.Equal(gotB[i], []byte{'a', byte(i)}) {
			t.Fatalf("message %d: a read %q, b read %q", i, gotA[i], gotB[i])
		}
	}
	for i := 0; i < 100 && !(a.life.closing.finAcked && b.life.closing.finAcked); i++ {
		p.step()
	}
	if !a.life.closing.finAcked || !b.life.closing.finAcked {
		t.Fatalf("STREAM_FIN acknowledged: a %v, b %v", a.life.closing.finAcked, b.life.closing.finAcked)
	}
	a.Close(p.now)
	b.Close(p.now)
	for i := 0; i < 500 && !(a.Closed() && b.Closed()); i++ {
		p.step()
	}
	if !a.Closed() || !b.Closed() || a.Err() != nil || b.Err() != nil {
		t.Fatalf("end: a closed %v (%v), b closed %v (%v)", a.Closed(), a.Err(), b.Closed(), b.Err())
	}
}

// TestStreamFinRetransmitted: a STREAM_FIN that is lost is sent again
// until acknowledged, and the receiver reads io.EOF once.
func TestStreamFinRetransmitted(t *testing.T) {
	p := newWirePair(t, nil)
	if err := p.a.Send(Delivery, []byte("last")); err != nil {
		t.Fatal(err)
	}
	if err := p.a.CloseWrite(p.now); err != nil {
		t.Fatal(err)
	}
	dropped := 0
	var got [][]byte
	var err error
	for i := 0; i < 2000 && err == nil; i++ {
		p.stepTap(func(from *Conn, d []byte) {
			if from == p.a && carriesFin(t, d) && dropped < 3 {
				dropped++
				d[len(d)-1] ^= 0xff // the checksum fails: lost
			}
		})
		var more [][]byte
		more, err = recvAllOf(p.b)
		got = append(got, more...)
	}
	if dropped != 3 || err != io.EOF || len(got) != 1 || string(got[0]) != "last" {
		t.Fatalf("dropped %d copies; b read %d messages, then %v", dropped, len(got), err)
	}
	for i := 0; i < 100 && !p.a.life.closing.finAcked; i++ {
		p.step()
	}
	if !p.a.life.closing.finAcked || p.a.life.closing.finNeeded {
		t.Fatalf("STREAM_FIN acked %v, still owed %v", p.a.life.closing.finAcked, p.a.life.closing.finNeeded)
	}
}

// TestStreamFinOverGap: a STREAM_FIN whose final position lies beyond a
// Delivery message not yet received is refused (not acknowledged: the peer
// sends it again), and io.EOF is never read over the gap; once the gap
// fills, the STREAM_FIN takes effect and io.EOF follows the last message.
// The half-closed peer may still be sent to.
func TestStreamFinOverGap(t *testing.T) {
	h := newHostilePeer(t)
	h.refusedOverGap(t, "STREAM_FIN", hostileFin(3), h.c.PeerWriteClosed)
	h.send(hostileDelivery(1))
	h.send(hostileFin(3))
	if s := h.c.Stats(); s.PacketsRefused != 1 || !h.c.PeerWriteClosed() || h.c.PeerClosed() {
		t.Fatalf("STREAM_FIN after the gap filled: refused %d, peer write closed %v, closed %v", s.PacketsRefused, h.c.PeerWriteClosed(), h.c.PeerClosed())
	}
	if got, err := readAll(h.c); !bytes.Equal(got, []byte{1, 2}) || err != io.EOF {
		t.Fatalf("read %v, %v; want messages 1 and 2, then io.EOF", got, err)
	}
	if err := h.c.Send(Delivery, []byte("answer")); err != nil {
		t.Fatalf("Send to a half-closed peer: %v", err)
	}
	if h.c.life.closing.writeClosed || h.c.life.closing.finNeeded {
		t.Fatal("the receiver's own direction ended with the peer's")
	}
}

// TestStreamFinReplayed: a STREAM_FIN received again (a retransmission, a
// replayed datagram, one crossing the peer's CLOSE) changes nothing: no
// violation, io.EOF stays, and a later CLOSE with the same final position
// closes as ever.
func TestStreamFinReplayed(t *testing.T) {
	h := newHostilePeer(t)
	h.send(hostileDelivery(0))
	h.send(hostileFin(1))
	if got, err := readAll(h.c); !bytes.Equal(got, []byte{0}) || err != io.EOF {
		t.Fatalf("read %v, %v", got, err)
	}
	h.send(hostileFin(1))
	h.send(append(hostileFin(1), hostileFin(1)...))
	h.send(hostileClose(1))
	h.send(hostileFin(1))
	s := h.c.Stats()
	if s.ProtocolViolations != 0 || s.PacketsRefused != 0 || !h.c.PeerClosed() {
		t.Fatalf("replayed STREAM_FIN: %d violations, %d refused, peer closed %v", s.ProtocolViolations, s.PacketsRefused, h.c.PeerClosed())
	}
	if got, err := readAll(h.c); len(got) != 0 || err != io.EOF {
		t.Fatalf("read %v, %v after the replays; want io.EOF", got, err)
	}
}

// TestNothingAfterEOF: once the peer's direction ended and io.EOF was
// read, a None or Order message that was sent before the STREAM_FIN and
// overtaken by it is dropped (its guarantee allows it): nothing is read
// after io.EOF.
func TestNothingAfterEOF(t *testing.T) {
	h := newHostilePeer(t)
	h.send(hostileDelivery(0))
	h.send(hostileFin(1))
	if got, err := readAll(h.c); !bytes.Equal(got, []byte{0}) || err != io.EOF {
		t.Fatalf("read %v, %v", got, err)
	}
	order := msgFrame{guarantee: Order, seq: 0xFFFFFFF0 + 1, d: 0xFFFFFFF0 + 1, data: []byte{7}}
	none := msgFrame{guarantee: None, seq: 0xFFFFFFF0, data: []byte{8}}
	h.send(append(appendMsg(nil, &order), appendMsg(nil, &none)...))
	if got, err := readAll(h.c); len(got) != 0 || err != io.EOF {
		t.Fatalf("read %v, %v after io.EOF; want io.EOF only", got, err)
	}
	if s := h.c.Stats(); s.StaleDropped != 2 || s.ProtocolViolations != 0 {
		t.Fatalf("stale dropped %d, violations %d", s.StaleDropped, s.ProtocolViolations)
	}
}

// FuzzStreamFin drives one connection with a peer's packets chosen by the
// fuzz bytes, one per byte: Delivery messages 0..15 in any order and
// repeated, Order and None messages, STREAM_FINs and CLOSEs with any final
// position 0..15, STREAM_FINs for other streams, a STREAM_FIN sharing a
// packet with a message. Whatever the sequence, the connection never
// panics; it yields the Delivery messages exactly once and in order;
// io.EOF comes only after every Delivery message below the final position
// was read (never over a gap), and after io.EOF no message is yielded;
// what ends it with a violation is counted once.
func FuzzStreamFin(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0x62})                   // two messages, FIN
	f.Add([]byte{0x00, 0x62, 0x01, 0x62, 0x62, 0x72}) // FIN over a gap, filled, replayed, CLOSE
	f.Add([]byte{0x00, 0x61, 0x81, 0x91, 0x01})       // FIN, Order and None after EOF, Delivery after FIN
	f.Add([]byte{0x00, 0x02, 0x63, 0x01, 0xa0, 0xb3}) // held beyond the FIN, other stream, FIN with data
	f.Fuzz(func(t *testing.T, ops []byte) {
		h := newHostilePeer(t)
		var base uint32 = 0xFFFFFFF0
		nextDelivery, eof := 0, false
		drain := func() {
			for {
				m, err := h.c.Recv()
				if err == io.EOF {
					if final := int(h.c.life.closing.peerFinal - base); !h.c.PeerWriteClosed() || nextDelivery != final {
						t.Fatalf("io.EOF after %d Delivery messages; the peer's final position is %d (ended %v)", nextDelivery, final, h.c.PeerWriteClosed())
					}
					eof = true
					return
				}
				if err != nil || m.Data == nil {
					return
				}
				if eof {
					t.Fatalf("a %d-byte %v message yielded after io.EOF", len(m.Data), m.Guarantee)
				}
				if m.Guarantee == Delivery {
					if int(m.Data[0]) != nextDelivery {
						t.Fatalf("Delivery message %d yielded, %d expected", m.Data[0], nextDelivery)
					}
					nextDelivery++
				}
			}
		}
		for _, op := range ops {
			k := uint32(op & 0x0f)
			switch op >> 4 {
			case 0, 1, 2, 3, 4, 5:
				h.send(hostileDelivery(k))
			case 6:
				h.send(hostileFin(k))
			case 7:
				h.send(hostileClose(k))
			case 8:
				m := msgFrame{guarantee: Order, seq: base + 16 + k, d: base + k, data: []byte{0x80 | byte(k)}}
				h.send(appendMsg(nil, &m))
			case 9:
				m := msgFrame{guarantee: None, seq: base + k, data: []byte{0x90 | byte(k)}}
				h.send(appendMsg(nil, &m))
			case 10:
				h.send(appendStreamFin(nil, &streamFinFrame{stream: uint64(k), final: base + k}))
			case 11:
				h.send(append(hostileDelivery(k), hostileFin(k+1)...))
			default:
				h.c.HandleTimeout(h.now.Add(time.Duration(k) * time.Second))
			}
			drain()
			if s := h.c.Stats(); s.ProtocolViolations > 1 {
				t.Fatalf("%d violations counted", s.ProtocolViolations)
			}
		}
	})
}

// TestDataAfterFinSeenByBothSides: a sender that goes on sending Delivery
// data after its STREAM_FIN took effect (Send refuses it: the test lifts
// the refusal) gets none of it acknowledged; the receiver ends with
// ErrProtocolViolation after reading everything before the STREAM_FIN
// (never io.EOF over it), the sender with ErrPeerProtocolViolation and the
// receiver's reason.
func TestDataAfterFinSeenByBothSides(t *testing.T) {
	p := newWirePair(t, nil)
	a, b := p.a, p.b
	if err := a.Send(Delivery, []byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := a.CloseWrite(p.now); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && !b.PeerWriteClosed(); i++ {
		p.step()
	}
	if got, err := recvAllOf(b); len(got) != 1 || err != io.EOF {
		t.Fatalf("b read %d messages, then %v", len(got), err)
	}
	a.life.closing.writeClosed = false // a broken sender
	if err := a.Send(Delivery, []byte("after")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000 && !(a.Closed() && b.Closed()); i++ {
		p.step()
	}
	if !errors.Is(b.Err(), ErrProtocolViolation) || !errors.Is(a.Err(), ErrPeerProtocolViolation) {
		t.Fatalf("b ended with %v, a with %v", b.Err(), a.Err())
	}
	if !strings.Contains(a.Err().Error(), "STREAM_FIN") {
		t.Fatalf("a's error %q does not carry b's reason", a.Err())
	}
	if s := b.Stats(); s.ProtocolViolations != 1 || s.MessagesReceived != 1 {
		t.Fatalf("b: %d violations, %d messages received", s.ProtocolViolations, s.MessagesReceived)
	}
}

// TestCloseWriteDuringHandshake: CloseWrite before the handshake completed
// ends our direction at once (Send fails); the STREAM_FIN follows the data
// queued before it once the connection is established.
func TestCloseWriteDuringHandshake(t *testing.T) {
	a, b, now := newConnPair(t, &Config{Rand: rand.NewPCG(1, 2)}, &Config{Rand: rand.NewPCG(3, 4)})
	if err := a.Send(Delivery, []byte("early")); err != nil {
		t.Fatal(err)
	}
	if err := a.CloseWrite(now); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(Delivery, []byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after CloseWrite in the handshake: %v", err)
	}
	p := &wirePair{now: now, a: a, b: b, buf: make([]byte, 2048)}
	var got [][]byte
	var err error
	for i := 0; i < 200 && err != io.EOF; i++ {
		p.step()
		var more [][]byte
		more, err = recvAllOf(b)
		got = append(got, more...)
	}
	if err != io.EOF || len(got) != 1 || string(got[0]) != "early" {
		t.Fatalf("b read %q, then %v", got, err)
	}
}
