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
	now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	cfgA.Rand, cfgB.Rand = rand.NewPCG(1, 2), rand.NewPCG(3, 4)
	a, err := NewConn(cfgA, 0x1111, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewConn(cfgB, 0x2222, now)
	if err != nil {
		t.Fatal(err)
	}
	p := &wirePair{now: now, a: a, b: b, buf: make([]byte, 65536)}
	for i := 0; i < 100 && !(a.Established() && b.Established()); i++ {
		p.step()
	}
	if !a.Established() || !b.Established() {
		t.Fatalf("handshake did not complete: a=%+v b=%+v", a.Stats(), b.Stats())
	}
	for i := 0; i < 10; i++ {
		p.step()
	}
	return p
}

// TestMessageOverPeerLimit is issue 8's first finding: a sender whose
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
