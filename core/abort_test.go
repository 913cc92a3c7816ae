package core

import (
	"errors"
	"testing"
)

// TestAbortCloseIgnoresCongestion: an Abort's CLOSE goes out at once, even
// with the congestion window full and nothing acknowledging it (the usual
// reason to abort a close: the peer stopped taking data). Held back, it
// never went: the connection ended one PTO later without it, and the peer
// learnt of the abort only at its idle timeout.
func TestAbortCloseIgnoresCongestion(t *testing.T) {
	p := newSmokePair(t, nil)
	for range 20 {
		p.step()
	}
	if !p.a.Established() || !p.b.Established() {
		t.Fatal("no handshake")
	}
	// Fill a's congestion window; b hears none of it.
	msg := make([]byte, 1000)
	for p.a.Send(Delivery, msg) == nil {
	}
	for p.a.PollTransmit(p.now, p.buf) > 0 {
	}
	if in, w := p.a.bytesInFlight, p.a.cc.Window(); in+p.a.cfg.MaxDatagramSize <= w {
		t.Fatalf("window not full: %d in flight of %d", in, w)
	}
	p.a.Abort(p.now, ErrClosed)
	n := p.a.PollTransmit(p.now, p.buf)
	if n == 0 {
		t.Fatal("the abort's CLOSE waits for the congestion window")
	}
	p.b.HandleDatagram(p.now, p.buf[:n])
	if !p.b.Closed() || !errors.Is(p.b.Err(), ErrAborted) {
		t.Fatalf("peer: closed %v, err %v; want ErrAborted", p.b.Closed(), p.b.Err())
	}
}
