package core

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestProbesHoldNoDataBack: a connection whose ceiling is 64 KiB (loopback,
// the root's ceiling following the route) sends its first path MTU probes
// when its handshake ends, with nothing else to send; the message the
// application writes right after them goes at once. Before, each probe
// spent its whole size of the pacer's budget, so the message
// waited until the pacer had earned 64 KiB back: 10 ms here, at a new
// connection's pacing rate over a 50 ms round trip (and on loopback a
// PacketConn test's peers were echoed out of order).
func TestProbesHoldNoDataBack(t *testing.T) {
	for _, before := range []bool{false, true} {
		t.Run(map[bool]string{false: "written-after", true: "written-before"}[before], func(t *testing.T) {
			probesHoldNoDataBack(t, before)
		})
	}
}

// probesHoldNoDataBack is TestProbesHoldNoDataBack with the message written
// after the probes went, or (before) waiting when the handshake ends: then
// it goes first, and the probes after it.
func probesHoldNoDataBack(t *testing.T, before bool) {
	const oneWay = 25 * time.Millisecond
	// NewReno: its pacing rate follows the window (BBR's, after a
	// handshake, follows the handshake's few bytes per round trip, far
	// below what either probe size needs).
	cfg := &Config{Rand: rand.NewPCG(1, 2), MaxDatagramSize: MaxDatagramSizeLimit, NewCongestionController: NewNewReno}
	a, b, now := newConnPair(t, cfg, cfg)
	buf := make([]byte, MaxDatagramSizeLimit)
	// drain returns what c sends at now.
	drain := func(c *Conn, now time.Time) (out [][]byte) {
		for {
			n := c.PollTransmit(now, buf)
			if n == 0 {
				return out
			}
			out = append(out, append([]byte(nil), buf[:n]...))
		}
	}
	// The handshake, each datagram arriving oneWay after it was sent.
	for i := 0; i < 20 && !a.Established(); i++ {
		for _, d := range drain(a, now) {
			b.HandleDatagram(now.Add(oneWay), d)
		}
		now = now.Add(oneWay)
		for _, d := range drain(b, now) {
			a.HandleDatagram(now.Add(oneWay), d)
		}
		now = now.Add(oneWay)
	}
	if !a.Established() {
		t.Fatalf("handshake did not complete: a=%+v b=%+v", a.Stats(), b.Stats())
	}
	send := func() {
		if err := a.Send(Delivery, []byte("first")); err != nil {
			t.Fatal(err)
		}
	}
	if before {
		send()
	}
	// a's flush once established: its probes (and an ACK), and the
	// message if it waits.
	probeAt := now
	probes := 0
	for _, d := range drain(a, now) {
		if len(d) > a.DatagramSize() {
			probes++
		} else {
			b.HandleDatagram(now, d)
		}
	}
	if probes == 0 {
		t.Fatalf("no path MTU probe sent (stats %+v)", a.Stats())
	}
	if !before {
		send()
	}
	// a sends when its timers say it may.
	for now.Sub(probeAt) < oneWay {
		for _, d := range drain(a, now) {
			if len(d) <= a.DatagramSize() {
				b.HandleDatagram(now, d)
			}
		}
		if m, _ := b.Recv(); m.Data != nil {
			if string(m.Data) != "first" {
				t.Fatalf("read %q", m.Data)
			}
			if d := now.Sub(probeAt); d > 0 {
				t.Fatalf("the message left %v after the %d probes", d, probes)
			}
			return
		}
		next := a.NextTimeout()
		if !next.After(now) {
			next = now.Add(time.Microsecond)
		}
		a.HandleTimeout(next)
		now = next
	}
	t.Fatalf("the message did not leave within %v of the %d probes (a: %+v)", oneWay, probes, a.Stats())
}
