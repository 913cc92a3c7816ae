package core_test

import (
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
)

// BenchmarkPingPong is a request-response exchange of 64-byte Delivery
// messages, one round trip per op, with the calls the root package makes
// for each message: the datagram handled, a flush that finds nothing due
// (the ACK waits for the reply), the next timeout asked, the message read,
// the reply sent and flushed (a packet, then a poll that finds nothing),
// the next timeout asked again. rudpbench's rr runs both ends on one
// thread, so its round trip costs the sum of both ends' work: this is the
// protocol's share of it (issue 12, target 2). The virtual clock starts at
// time.Now, so that its times carry a monotonic reading as the root
// package's do (monoNow): time.Time's Sub and comparisons of two such times
// take a fast path that times without one (sim.Epoch) do not.
func BenchmarkPingPong(b *testing.B) {
	p := warmMemPairAt(b, time.Now(), 64, 0, nil)
	msg := make([]byte, 64)
	buf := make([]byte, 2048)
	// half moves one message from x to y and y's reply back to x's receive:
	// x sends, y handles and reads.
	half := func(x, y *core.Conn) {
		if err := x.Send(core.Delivery, msg); err != nil {
			b.Fatal(err)
		}
		n := x.PollTransmit(p.now, buf)
		if n == 0 {
			b.Fatal("no packet for the message")
		}
		if x.PollTransmit(p.now, p.buf) != 0 {
			b.Fatal("a second packet for one message")
		}
		_ = x.NextTimeout()
		p.now = p.now.Add(8 * time.Microsecond)
		y.HandleDatagram(p.now, buf[:n])
		if y.PollTransmit(p.now, p.buf) != 0 {
			b.Fatal("an immediate packet after a lone message")
		}
		_ = y.NextTimeout()
		m, err := y.Recv()
		if err != nil || len(m.Data) != len(msg) {
			b.Fatalf("read %d bytes, %v", len(m.Data), err)
		}
	}
	b.SetBytes(2 * int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		half(p.a, p.b)
		half(p.b, p.a)
	}
}
