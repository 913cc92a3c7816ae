package stream_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// epoch is where every pair's virtual clock starts.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// pair is two core.Conns joined by an in-memory, lossless, instant link and
// stepped on a virtual clock, each with a Stream over it.
type pair struct {
	tb       testing.TB
	now      time.Time
	a, b     *core.Conn
	sa, sb   *stream.Stream
	datagram []byte
}

// newPair returns an established pair; cfg may be nil (core defaults).
func newPair(tb testing.TB, cfg *core.Config) *pair {
	tb.Helper()
	var c core.Config
	if cfg != nil {
		c = *cfg
	}
	c.Rand = rand.NewPCG(1, 2)
	a, err := core.NewConn(&c, 1111, epoch)
	require.NoError(tb, err)
	c.Rand = rand.NewPCG(3, 4)
	b, err := core.NewConn(&c, 2222, epoch)
	require.NoError(tb, err)
	p := &pair{tb: tb, now: epoch, a: a, b: b, sa: stream.New(a), sb: stream.New(b),
		datagram: make([]byte, 65536)}
	p.runUntil(func() bool { return a.Established() && b.Established() })
	return p
}

// exchange moves every datagram either side has to send now to the other,
// delivered at once, and reports whether any moved.
func (p *pair) exchange() bool {
	moved := false
	for _, dir := range [2][2]*core.Conn{{p.a, p.b}, {p.b, p.a}} {
		for {
			n := dir[0].PollTransmit(p.now, p.datagram)
			if n == 0 {
				break
			}
			moved = true
			dir[1].HandleDatagram(p.now, p.datagram[:n])
		}
	}
	return moved
}

// step exchanges datagrams; when none moved, it advances the clock to the
// earliest timeout and fires the timers. It reports false when there is
// nothing left to do (both sides closed).
func (p *pair) step() bool {
	if p.exchange() {
		return true
	}
	next := p.a.NextTimeout()
	if t := p.b.NextTimeout(); !t.IsZero() && (next.IsZero() || t.Before(next)) {
		next = t
	}
	if next.IsZero() {
		return false
	}
	if next.Before(p.now) {
		p.tb.Fatalf("timeout %v is before the clock %v", next, p.now)
	}
	p.now = next
	p.a.HandleTimeout(p.now)
	p.b.HandleTimeout(p.now)
	return true
}

// runUntil steps until done, failing after a bounded number of steps.
func (p *pair) runUntil(done func() bool) {
	p.tb.Helper()
	for range 100000 {
		if done() {
			return
		}
		if !p.step() {
			break
		}
	}
	if !done() {
		p.tb.Fatalf("condition not reached at %v; a=%+v b=%+v", p.now.Sub(epoch), p.a.Stats(), p.b.Stats())
	}
}

// readAll steps the pair until b's Stream read n bytes, and returns them.
func (p *pair) readAll(n int) []byte {
	p.tb.Helper()
	got := make([]byte, 0, n)
	buf := make([]byte, 4096)
	p.runUntil(func() bool {
		k, err := p.sb.Read(buf)
		require.NoError(p.tb, err)
		got = append(got, buf[:k]...)
		return len(got) >= n
	})
	return got
}
