package core

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestProbesHoldNoDataBack: a connection whose ceiling is 64 KiB (loopback,
// the root's ceiling following the route) sends its first path MTU probes
// once it had more to send than a datagram (a large message), after that
// data; the message the application writes right after them goes at once. Before, each probe
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
// after the probes went, or (before) waiting behind the large message: then
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
	// More than a datagram carries: the search starts.
	large := make([]byte, 3*a.DatagramSize())
	if err := a.Send(Delivery, large); err != nil {
		t.Fatal(err)
	}
	if before {
		send()
	}
	// a's flush: the large message, its probes (and an ACK), and the
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
			if len(m.Data) == len(large) {
				continue // (read again at once: the clock has not moved)
			}
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

// TestPathMTUSearchOnDemand: a connection of small messages never probes
// for larger datagrams (searching from the handshake's end cost every
// loopback dial three 64 KiB probes each way, and their acknowledgements);
// the first time more waits to be sent than a datagram carries, the search
// starts, on that side only, and the size grows.
func TestPathMTUSearchOnDemand(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(c *Conn) error
	}{
		{"large message", func(c *Conn) error { return c.Send(Delivery, make([]byte, 20000)) }},
		{"many small ones", func(c *Conn) error {
			for range 40 {
				if err := c.Send(Delivery, make([]byte, 100)); err != nil {
					return err
				}
			}
			return nil
		}},
		{"message cut in two", func(c *Conn) error { return c.Send(Delivery, make([]byte, c.fragPayload+1)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newWirePair(t, &Config{MaxDatagramSize: 1452})
			msg := make([]byte, 64)
			for i := range 20 {
				for _, d := range [][2]*Conn{{p.a, p.b}, {p.b, p.a}} {
					if err := d[0].Send(Delivery, msg); err != nil {
						t.Fatal(err)
					}
					got := 0
					for j := 0; j < 100 && got == 0; j++ {
						p.step()
						recvEach(t, d[1], func(Message) { got++ })
					}
					if got != 1 {
						t.Fatalf("round trip %d: %d messages arrived", i, got)
					}
				}
			}
			for name, c := range map[string]*Conn{"a": p.a, "b": p.b} {
				if c.pmtu != nil || c.Stats().ProbesSent != 0 || c.DatagramSize() != BaseDatagramSize {
					t.Fatalf("%s after small round trips: search %v, %d probes, datagram size %d", name, c.pmtu != nil, c.Stats().ProbesSent, c.DatagramSize())
				}
			}
			if err := tc.write(p.a); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 1000 && p.a.DatagramSize() != 1452; i++ {
				p.step()
				recvEach(t, p.b, func(Message) {})
			}
			if p.a.DatagramSize() != 1452 {
				t.Fatalf("a: datagram size %d once it had more to send than a datagram", p.a.DatagramSize())
			}
			if p.b.pmtu != nil || p.b.Stats().ProbesSent != 0 {
				t.Fatalf("b, which only acknowledged, searched: %d probes", p.b.Stats().ProbesSent)
			}
		})
	}
}
