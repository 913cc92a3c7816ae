package core_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
	"github.com/rudp-go/rudp/qlog"
)

// memPair is two Conns joined by a lossless, instant in-memory link and
// driven by a virtual clock: the cost measured is the protocol's own.
type memPair struct {
	now  time.Time
	a, b *core.Conn
	buf  []byte
	recv int // bytes b read
}

func newMemPair(tb testing.TB) *memPair { return newMemPairTraced(tb, nil) }

// newMemPairTraced is newMemPair whose sender a is traced by tracer (nil:
// not traced), setup (if any) called on the two Conns before their
// handshake.
func newMemPairTraced(tb testing.TB, tracer func(core.TraceInfo) *core.Tracer, setup ...func(a, b *core.Conn)) *memPair {
	return newMemPairAt(tb, sim.Epoch, tracer, setup...)
}

// newMemPairAt is newMemPairTraced whose virtual clock starts at start.
func newMemPairAt(tb testing.TB, start time.Time, tracer func(core.TraceInfo) *core.Tracer, setup ...func(a, b *core.Conn)) *memPair {
	mk := func(cid uint64) *core.Conn {
		cfg := &core.Config{Rand: rand.NewPCG(1, cid)}
		if cid == 1 {
			cfg.Tracer = tracer
		}
		c, err := core.NewConn(cfg, cid, start)
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
	p := &memPair{now: start, a: mk(1), b: mk(2), buf: make([]byte, 2048)}
	for _, f := range setup {
		f(p.a, p.b)
	}
	for i := 0; i < 100 && !(p.a.Established() && p.b.Established()); i++ {
		p.pump()
	}
	if !p.a.Established() || !p.b.Established() {
		tb.Fatal("handshake did not complete")
	}
	return p
}

// pump moves datagrams both ways until neither side has anything to send,
// reads what b received, then lets virtual time pass: 10µs, or up to the
// next timer when nothing moved.
func (p *memPair) pump() {
	moved := false
	for {
		k := 0
		for n := p.a.PollTransmit(p.now, p.buf); n > 0; n = p.a.PollTransmit(p.now, p.buf) {
			p.b.HandleDatagram(p.now, p.buf[:n])
			k++
		}
		for {
			m, err := p.b.Recv()
			if err != nil || m.Data == nil {
				break
			}
			p.recv += len(m.Data)
		}
		for n := p.b.PollTransmit(p.now, p.buf); n > 0; n = p.b.PollTransmit(p.now, p.buf) {
			p.a.HandleDatagram(p.now, p.buf[:n])
			k++
		}
		if k == 0 {
			break
		}
		moved = true
	}
	p.now = p.now.Add(10 * time.Microsecond)
	if !moved {
		for _, c := range []*core.Conn{p.a, p.b} {
			if t := c.NextTimeout(); !t.IsZero() && t.After(p.now) && c.HasPendingData() {
				p.now = t
			}
		}
	}
	for _, c := range []*core.Conn{p.a, p.b} {
		if t := c.NextTimeout(); !t.IsZero() && !t.After(p.now) {
			c.HandleTimeout(p.now)
		}
	}
}

// BenchmarkDelivery sends Delivery messages of one size from a to b over a
// lossless instant link; b.N messages, read and acknowledged.
// With streams=100 the connection has 100 other streams open, idle, so
// that stream 0's messages go through the streams' scheduler: the cost
// per message, 0 allocations, is the same.
func BenchmarkDelivery(b *testing.B) {
	for _, size := range []int{64, 1200} {
		for _, streams := range []int{0, 100} {
			name := fmt.Sprint(size)
			if streams > 0 {
				name += fmt.Sprint("/streams=", streams)
			}
			b.Run(name, func(b *testing.B) { benchDelivery(b, size, streams, nil) })
		}
	}
}

// BenchmarkProtection is BenchmarkDelivery of 1200-byte messages (one a
// packet) in plaintext and protected with each cipher suite, in one run:
// the protocol's cost of protection per packet (sealing and opening it),
// and 0 allocs/op in steady state.
func BenchmarkProtection(b *testing.B) {
	for _, suite := range []uint16{0, tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		name := "plaintext"
		if suite != 0 {
			name = tls.CipherSuiteName(suite)
		}
		b.Run(name, func(b *testing.B) {
			benchDelivery(b, 1200, 0, nil, func(x, y *core.Conn) {
				if suite == 0 {
					return
				}
				if err := core.ProtectPair(x, y, rand.New(rand.NewPCG(1, 2)), suite, 0); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// warmMemPair returns a pair with streams streams open besides stream 0,
// its pools filled and windows grown by sending messages of size bytes,
// the sender traced by tracer (nil: not traced), setup as newMemPairTraced's.
func warmMemPair(tb testing.TB, size, streams int, tracer func(core.TraceInfo) *core.Tracer, setup ...func(a, b *core.Conn)) *memPair {
	return warmMemPairAt(tb, sim.Epoch, size, streams, tracer, setup...)
}

// warmMemPairAt is warmMemPair whose virtual clock starts at start.
func warmMemPairAt(tb testing.TB, start time.Time, size, streams int, tracer func(core.TraceInfo) *core.Tracer, setup ...func(a, b *core.Conn)) *memPair {
	p := newMemPairAt(tb, start, tracer, setup...)
	for range streams {
		if _, err := p.a.OpenStream(core.Delivery); err != nil {
			tb.Fatal(err)
		}
	}
	msg := make([]byte, size)
	for range 20000 {
		if err := p.a.Send(core.Delivery, msg); errors.Is(err, core.ErrWouldBlock) {
			p.pump()
		}
		if p.a.SendBufferAvailable() < 64<<10 {
			p.pump()
		}
	}
	for p.a.HasPendingData() {
		p.pump()
	}
	return p
}

// TestStream0NoAlloc: a message on stream 0 costs no allocation, sent,
// carried, read and acknowledged, with or without other streams open,
// and with or without a qlog trace of it.
func TestStream0NoAlloc(t *testing.T) {
	toQlog := func(info core.TraceInfo) *core.Tracer { return qlog.NewTracer(io.Discard, info) }
	for _, c := range []struct {
		streams int
		tracer  func(core.TraceInfo) *core.Tracer
	}{{0, nil}, {100, nil}, {0, toQlog}} {
		streams := c.streams
		p := warmMemPair(t, 64, streams, c.tracer)
		msg := make([]byte, 64)
		allocs := testing.AllocsPerRun(2000, func() {
			if err := p.a.Send(core.Delivery, msg); err != nil {
				t.Fatal(err)
			}
			p.pump()
		})
		if allocs != 0 {
			t.Errorf("with %d streams open, traced %v: %.2f allocations per message on stream 0", streams, c.tracer != nil, allocs)
		}
	}
}

// benchDelivery is BenchmarkDelivery's body for messages of size bytes,
// with streams other streams open, the sender traced by tracer (nil: not
// traced), setup as newMemPairTraced's.
func benchDelivery(b *testing.B, size, streams int, tracer func(core.TraceInfo) *core.Tracer, setup ...func(a, b *core.Conn)) {
	p := warmMemPair(b, size, streams, tracer, setup...)
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := p.recv
	for i := 0; i < b.N; i++ {
		for {
			err := p.a.Send(core.Delivery, msg)
			if err == nil {
				break
			}
			if !errors.Is(err, core.ErrWouldBlock) {
				b.Fatal(err)
			}
			p.pump()
		}
		if i%32 == 31 {
			p.pump()
		}
	}
	for p.recv-start < b.N*size {
		p.pump()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkGoodput moves bulk Delivery data through the simulated 10 MB/s
// bottleneck (RTT 20 ms, queue 1 BDP, 1% loss) and reports goodput as a
// fraction of the bottleneck bandwidth; ns/op is simulator plus protocol
// cost per simulated second.
func BenchmarkGoodput(b *testing.B) {
	for _, loss := range []float64{0, 0.01, 0.05} {
		b.Run(fmt.Sprintf("loss=%g%%/rtt=20ms", loss*100), func(b *testing.B) {
			var f float64
			for i := 0; i < b.N; i++ {
				var err error
				if f, _, err = goodput("", uint64(i+1), loss, 20*time.Millisecond, time.Second); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(f, "bw-fraction")
		})
	}
}

// BenchmarkDeliveryTraced is BenchmarkDelivery with the sender traced:
// "unset" without a Tracer (what BenchmarkDelivery measures), "nop" with a
// Tracer whose every function is set and does nothing (the cost of the
// events and their frame summaries), "qlog" writing a qlog trace to
// io.Discard (the cost of the writer too).
func BenchmarkDeliveryTraced(b *testing.B) {
	nop := func(core.TraceInfo) *core.Tracer {
		return &core.Tracer{
			PacketSent: func(core.PacketEvent) {}, PacketReceived: func(core.PacketEvent) {},
			PacketAcked: func(core.AckedEvent) {}, PacketLost: func(core.LostEvent) {},
			MetricsUpdated: func(core.MetricsEvent) {}, StateChanged: func(core.StateEvent) {},
		}
	}
	toQlog := func(info core.TraceInfo) *core.Tracer { return qlog.NewTracer(io.Discard, info) }
	for _, size := range []int{64, 1200} {
		for _, tr := range []struct {
			name   string
			tracer func(core.TraceInfo) *core.Tracer
		}{{"unset", nil}, {"nop", nop}, {"qlog", toQlog}} {
			b.Run(fmt.Sprintf("%d/%s", size, tr.name), func(b *testing.B) { benchDelivery(b, size, 0, tr.tracer) })
		}
	}
}
