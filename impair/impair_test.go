package impair

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// listenUDP opens a loopback socket closed at the end of the test.
func listenUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

// wrapUDP opens a loopback socket impaired by cfg, closed at the end of the test.
func wrapUDP(t testing.TB, cfg Config) *PacketConn {
	t.Helper()
	pc, err := Wrap(listenUDP(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	return pc
}

type arrival struct {
	data []byte
	at   time.Time
}

// collector records every datagram arriving on a loopback socket.
type collector struct {
	conn  *net.UDPConn
	count atomic.Int64
	bytes atomic.Int64

	mu  sync.Mutex
	got []arrival
}

func newCollector(t testing.TB) *collector {
	t.Helper()
	c := &collector{conn: listenUDP(t)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		for {
			n, err := c.conn.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			a := arrival{data: append([]byte(nil), buf[:n]...), at: time.Now()}
			c.mu.Lock()
			c.got = append(c.got, a)
			c.mu.Unlock()
			c.bytes.Add(int64(n))
			c.count.Add(1)
		}
	}()
	t.Cleanup(func() { c.conn.Close(); <-done })
	return c
}

func (c *collector) addr() net.Addr { return c.conn.LocalAddr() }

func (c *collector) arrivals() []arrival {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]arrival(nil), c.got...)
}

// waitFor waits until at least n datagrams arrived, or timeout; it returns the count.
func (c *collector) waitFor(n int64, timeout time.Duration) int64 {
	deadline := time.Now().Add(timeout)
	for c.count.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return c.count.Load()
}

// settle waits until the count stops changing for quiet, or timeout.
func (c *collector) settle(quiet, timeout time.Duration) int64 {
	deadline := time.Now().Add(timeout)
	last, since := c.count.Load(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		if n := c.count.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			break
		}
	}
	return last
}

// sendNumbered writes n datagrams of size bytes (>= 8), numbered 0..n-1 in
// their first 8 bytes, in batches, waiting after each batch until the
// collector has everything Stats says was sent, so that no kernel buffer
// overflows on a slow machine.
func sendNumbered(t testing.TB, pc *PacketConn, c *collector, n, size, batch int) {
	t.Helper()
	buf := make([]byte, size)
	for i := range n {
		binary.BigEndian.PutUint64(buf, uint64(i))
		_, err := pc.WriteTo(buf, c.addr())
		require.NoError(t, err)
		if (i+1)%batch == 0 {
			c.waitFor(int64(pc.Stats().Sent), time.Second)
		}
	}
}

func seqOf(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func TestValidate(t *testing.T) {
	tests := []struct {
		field string
		cfg   Config
	}{
		{"Loss", Config{Loss: -0.1}},
		{"Loss", Config{Loss: 1.5}},
		{"Duplicate", Config{Duplicate: 2}},
		{"Reorder", Config{Reorder: -1}},
		{"Corrupt", Config{Corrupt: 1.01}},
		{"Delay", Config{Delay: -time.Millisecond}},
		{"Jitter", Config{Jitter: -1}},
		{"ReorderDelay", Config{ReorderDelay: -1}},
		{"Rate", Config{Rate: -1}},
		{"QueueBytes", Config{QueueBytes: -1}},
		{"MaxDatagramSize", Config{MaxDatagramSize: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			err := tt.cfg.Validate()
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.Contains(t, err.Error(), tt.field+" =")
		})
	}
	t.Run("NaN", func(t *testing.T) {
		var nan float64
		nan = nan / nan // a NaN that vet does not flag as a constant division
		require.ErrorContains(t, Config{Reorder: nan}.Validate(), "Reorder")
	})
	t.Run("valid", func(t *testing.T) {
		require.NoError(t, Config{}.Validate())
		require.NoError(t, Config{Loss: 1, Duplicate: 1, Reorder: 1, Corrupt: 1, Delay: time.Second,
			Jitter: time.Second, ReorderDelay: time.Second, Rate: 1, QueueBytes: 1}.Validate())
	})
	t.Run("Wrap", func(t *testing.T) {
		_, err := Wrap(&recorder{}, Config{Loss: 2})
		require.ErrorIs(t, err, ErrInvalidConfig)
		require.ErrorContains(t, err, "Loss")
		_, err = Wrap(nil, Config{})
		require.ErrorIs(t, err, ErrInvalidConfig)
		require.ErrorContains(t, err, "pc")
	})
	t.Run("NewProxy", func(t *testing.T) {
		_, err := NewProxy("127.0.0.1:0", "127.0.0.1:9", Config{Jitter: -1}, Config{})
		require.ErrorIs(t, err, ErrInvalidConfig)
		require.ErrorContains(t, err, "up: ")
		require.ErrorContains(t, err, "Jitter")
		_, err = NewProxy("127.0.0.1:0", "127.0.0.1:9", Config{}, Config{Loss: 3})
		require.ErrorContains(t, err, "down: ")
		_, err = NewProxy("127.0.0.1:0", "127.0.0.1:9", Config{}, Config{}, WithMaxClients(0))
		require.ErrorContains(t, err, "MaxClients")
		_, err = NewProxy("127.0.0.1:0", "127.0.0.1:9", Config{}, Config{}, WithIdleTimeout(-1))
		require.ErrorContains(t, err, "IdleTimeout")
	})
}

// recorder is an in-memory net.PacketConn that keeps a copy of every write.
type recorder struct {
	net.PacketConn // nil: only the methods below are used
	mu             sync.Mutex
	writes         [][]byte
}

func (r *recorder) WriteTo(p []byte, _ net.Addr) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (r *recorder) Close() error { return nil }

func TestSameSeedSameDecisions(t *testing.T) {
	run := func(seed uint64) [][]byte {
		rec := &recorder{}
		// No delay, so every datagram is written before WriteTo returns and
		// the output depends on the decisions alone.
		pc, err := Wrap(rec, Config{Seed: seed, Loss: 0.2, Duplicate: 0.2, Corrupt: 0.2})
		require.NoError(t, err)
		defer pc.Close()
		buf := make([]byte, 16)
		for i := range 2000 {
			binary.BigEndian.PutUint64(buf, uint64(i))
			_, err := pc.WriteTo(buf, nil)
			require.NoError(t, err)
		}
		return rec.writes
	}
	a, b, other := run(1), run(1), run(2)
	require.Equal(t, a, b)
	require.NotEqual(t, a, other)
}

func TestLoss(t *testing.T) {
	const n, loss = 20000, 0.2
	c := newCollector(t)
	pc := wrapUDP(t, Config{Seed: 7, Loss: loss})
	sendNumbered(t, pc, c, n, 32, 500)
	st := pc.Stats()
	got := c.waitFor(int64(st.Sent), 2*time.Second)

	// Expected 4000 losses with a standard deviation of about 57.
	require.InDelta(t, loss*n, float64(st.DroppedLoss), 500, "stats %+v", st)
	require.Equal(t, uint64(n), st.Sent+st.DroppedLoss)
	// The kernel should deliver everything on loopback when paced; allow 1%.
	require.GreaterOrEqual(t, float64(got), 0.99*float64(st.Sent))
}

func TestDuplicate(t *testing.T) {
	const n = 1000
	c := newCollector(t)
	pc := wrapUDP(t, Config{Seed: 3, Duplicate: 0.5})
	sendNumbered(t, pc, c, n, 16, 100)
	st := pc.Stats()
	c.waitFor(int64(st.Sent), 2*time.Second)

	require.InDelta(t, n/2, float64(st.Duplicated), 150)
	require.Equal(t, uint64(n)+st.Duplicated, st.Sent)
	seen := map[uint64]int{}
	for _, a := range c.arrivals() {
		seen[seqOf(a.data)]++
	}
	twice := 0
	for _, k := range seen {
		require.LessOrEqual(t, k, 2)
		if k == 2 {
			twice++
		}
	}
	require.InDelta(t, float64(st.Duplicated), float64(twice), 0.01*n)
}

func TestDelay(t *testing.T) {
	const delay, jitter = 30 * time.Millisecond, 10 * time.Millisecond
	c := newCollector(t)
	pc := wrapUDP(t, Config{Seed: 1, Delay: delay, Jitter: jitter})
	const n = 20
	sent := make([]time.Time, n)
	buf := make([]byte, 8)
	for i := range n {
		binary.BigEndian.PutUint64(buf, uint64(i))
		sent[i] = time.Now()
		_, err := pc.WriteTo(buf, c.addr())
		require.NoError(t, err)
		time.Sleep(time.Millisecond)
	}
	require.Equal(t, int64(n), c.waitFor(n, 5*time.Second))
	for _, a := range c.arrivals() {
		lat := a.at.Sub(sent[seqOf(a.data)])
		require.GreaterOrEqual(t, lat, delay)
		require.Less(t, lat, 3*time.Second) // sanity only: a busy machine may be slow
	}
}

func TestReorder(t *testing.T) {
	const n = 500
	c := newCollector(t)
	pc := wrapUDP(t, Config{Seed: 5, Reorder: 0.2, ReorderDelay: 10 * time.Millisecond})
	sendNumbered(t, pc, c, n, 16, 50)
	require.Equal(t, int64(n), c.waitFor(n, 5*time.Second))
	st := pc.Stats()
	require.InDelta(t, 0.2*n, float64(st.Reordered), 50)

	late := 0 // arrivals numbered lower than one that arrived before them
	var highest uint64
	for i, a := range c.arrivals() {
		s := seqOf(a.data)
		if i > 0 && s < highest {
			late++
		}
		highest = max(highest, s)
	}
	require.Positive(t, late)
}

func TestCorrupt(t *testing.T) {
	const n = 200
	c := newCollector(t)
	pc := wrapUDP(t, Config{Seed: 9, Corrupt: 1})
	orig := make([]byte, 64)
	for i := range orig {
		orig[i] = byte(i)
	}
	buf := append([]byte(nil), orig...)
	for range n {
		_, err := pc.WriteTo(buf, c.addr())
		require.NoError(t, err)
		require.Equal(t, orig, buf, "the caller's buffer must not change")
	}
	require.Equal(t, int64(n), c.waitFor(n, 2*time.Second))
	require.Equal(t, uint64(n), pc.Stats().Corrupted)
	distinct := map[string]bool{}
	for _, a := range c.arrivals() {
		require.Len(t, a.data, len(orig))
		flipped := 0
		for i := range orig {
			for x := a.data[i] ^ orig[i]; x != 0; x &= x - 1 {
				flipped++
			}
		}
		require.Equal(t, 1, flipped, "exactly one bit differs")
		distinct[string(a.data)] = true
	}
	require.Greater(t, len(distinct), 50, "flipped bits are spread over the datagram")
}

func TestRateLimit(t *testing.T) {
	const rate, window, size = 1_000_000, 500 * time.Millisecond, 1000
	c := newCollector(t)
	pc := wrapUDP(t, Config{Seed: 1, Rate: rate})
	buf := make([]byte, size)
	start := time.Now()
	// Offer more than the rate for the whole window: each round fills the
	// queue until it drops a datagram, so the bottleneck never idles even
	// if this goroutine sleeps far longer than asked on a loaded machine
	// (the queue holds DefaultQueueBytes: 64 ms at this rate). A limiter
	// that never drops ends the round after a bounded number of writes.
	overflowed := true
	for time.Since(start) < window {
		dropped := pc.Stats().DroppedQueue
		for i := 0; pc.Stats().DroppedQueue == dropped; i++ {
			if i == 1000 {
				overflowed = false
				break
			}
			_, err := pc.WriteTo(buf, c.addr())
			require.NoError(t, err)
		}
		time.Sleep(time.Millisecond)
	}
	require.True(t, overflowed, "offered load above the rate must overflow the queue")
	// A datagram is written only after its serialization ends, so what
	// arrived by any moment cannot exceed the rate times the time since the
	// start plus one datagram; a loaded machine only makes arrivals later.
	var inWindow, total int
	for _, a := range c.arrivals() {
		total += len(a.data)
		require.LessOrEqual(t, float64(total), float64(rate)*a.at.Sub(start).Seconds()+size,
			"%d bytes arrived %v after the start", total, a.at.Sub(start))
		if a.at.Sub(start) <= window {
			inWindow += len(a.data)
		}
	}
	// The link was kept busy, and a late scheduler sends what fell due at
	// once (its lateness does not add up), so about rate*window arrived.
	want := float64(rate) * window.Seconds()
	require.GreaterOrEqual(t, float64(inWindow), 0.5*want) // slack for a slow scheduler
}

// TestMaxDatagramSize: a datagram longer than the path's MaxDatagramSize
// is dropped and counted, one that fits passes, and the drop draws no
// random decision (the next datagram's loss is what it would have been).
func TestMaxDatagramSize(t *testing.T) {
	c := newCollector(t)
	pc := wrapUDP(t, Config{MaxDatagramSize: 1472})
	for _, n := range []int{1472, 1473, 65000, 100} {
		_, err := pc.WriteTo(make([]byte, n), c.addr())
		require.NoError(t, err, "a dropped datagram is reported as written, as UDP does")
	}
	require.Equal(t, int64(2), c.waitFor(2, 3*time.Second))
	require.Equal(t, int64(2), c.settle(50*time.Millisecond, time.Second))
	for _, a := range c.arrivals() {
		require.LessOrEqual(t, len(a.data), 1472)
	}
	st := pc.Stats()
	require.Equal(t, uint64(2), st.DroppedTooBig)
	require.Equal(t, uint64(2), st.Sent)

	// The same seed loses the same small datagrams whether or not too big
	// ones come between them.
	lostOf := func(big bool) []int {
		l := newLink(Config{Seed: 7, Loss: 0.5, MaxDatagramSize: 1000})
		defer l.stop()
		var lost []int
		for i := range 64 {
			if big {
				_, _ = l.submit(make([]byte, 2000), discard{}, nil)
			}
			before := l.stats.droppedLoss.Load()
			_, _ = l.submit(make([]byte, 10), discard{}, nil)
			if l.stats.droppedLoss.Load() > before {
				lost = append(lost, i)
			}
		}
		return lost
	}
	require.Equal(t, lostOf(false), lostOf(true))
}

// discard is a sink that drops everything.
type discard struct{}

func (discard) send([]byte, net.Addr) error { return nil }

func TestQueueOverflow(t *testing.T) {
	const size, queue = 1000, 10_000
	c := newCollector(t)
	// 100 kB/s: the burst below takes far less than a datagram's 10 ms serialization.
	pc := wrapUDP(t, Config{Rate: 100_000, QueueBytes: queue})
	buf := make([]byte, size)
	for range 100 {
		_, err := pc.WriteTo(buf, c.addr())
		require.NoError(t, err)
	}
	st := pc.Stats()
	accepted := 100 - st.DroppedQueue
	require.GreaterOrEqual(t, accepted, uint64(queue/size-1))
	require.LessOrEqual(t, accepted, uint64(queue/size+5))
	// The queue drains at the rate: about 0.1 s for 10 kB.
	require.Equal(t, int64(accepted), c.waitFor(int64(accepted), 3*time.Second))
	require.Equal(t, int64(accepted), c.settle(50*time.Millisecond, time.Second))
}

func TestWrapCloseDropsPending(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last, after the helpers close
	c := newCollector(t)
	pc, err := Wrap(listenUDP(t), Config{Delay: time.Hour})
	require.NoError(t, err)
	for range 10 {
		_, err := pc.WriteTo([]byte("late"), c.addr())
		require.NoError(t, err)
	}
	start := time.Now()
	require.NoError(t, pc.Close())
	require.Less(t, time.Since(start), time.Second)
	require.Equal(t, uint64(10), pc.Stats().DroppedClose)
	require.NoError(t, pc.Close(), "a second Close returns the first's result")

	_, err = pc.WriteTo([]byte("x"), c.addr())
	require.ErrorIs(t, err, net.ErrClosed)
	var opErr *net.OpError
	require.ErrorAs(t, err, &opErr)
	require.Zero(t, c.count.Load())
}

func TestDeadlinesPassThrough(t *testing.T) {
	pc := wrapUDP(t, Config{Delay: time.Millisecond})
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, _, err := pc.ReadFrom(make([]byte, 10))
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout())

	// ReadFrom is unimpaired: a datagram sent to the wrapped socket arrives.
	src := listenUDP(t)
	require.NoError(t, pc.SetDeadline(time.Now().Add(2*time.Second)))
	_, err = src.WriteTo([]byte("in"), pc.LocalAddr())
	require.NoError(t, err)
	buf := make([]byte, 10)
	n, from, err := pc.ReadFrom(buf)
	require.NoError(t, err)
	require.Equal(t, "in", string(buf[:n]))
	require.Equal(t, src.LocalAddr().String(), from.String())
}

// echoServer answers every datagram with itself and records its peers.
type echoServer struct {
	conn  *net.UDPConn
	mu    sync.Mutex
	peers map[netip.AddrPort]int
}

func newEchoServer(t testing.TB, record bool) *echoServer {
	t.Helper()
	e := &echoServer{conn: listenUDP(t), peers: map[netip.AddrPort]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := e.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if record {
				e.mu.Lock()
				e.peers[from]++
				e.mu.Unlock()
			}
			_, _ = e.conn.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { e.conn.Close(); <-done })
	return e
}

func newProxy(t testing.TB, target string, up, down Config, opts ...ProxyOption) *Proxy {
	t.Helper()
	p, err := NewProxy("127.0.0.1:0", target, up, down, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// dialProxy opens a client socket connected to the proxy.
func dialProxy(t testing.TB, p *Proxy) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, p.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProxyRelaysBothWays(t *testing.T) {
	const clients, perClient = 5, 20
	tests := []struct {
		name     string
		up, down Config
		minRTT   time.Duration
	}{
		{name: "unimpaired"},
		{name: "delayed", up: Config{Seed: 1, Delay: 5 * time.Millisecond}, down: Config{Seed: 2, Delay: 5 * time.Millisecond}, minRTT: 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			echo := newEchoServer(t, true)
			p := newProxy(t, echo.conn.LocalAddr().String(), tt.up, tt.down)
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				c := dialProxy(t, p)
				wg.Go(func() {
					buf := make([]byte, 64)
					for j := range perClient {
						msg := []byte{byte(i), byte(j)}
						sent := time.Now()
						if _, err := c.Write(msg); err != nil {
							errs <- err
							return
						}
						_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
						n, err := c.Read(buf)
						if err != nil {
							errs <- err
							return
						}
						if rtt := time.Since(sent); rtt < tt.minRTT {
							errs <- errors.New("reply faster than the configured delays: " + rtt.String())
							return
						}
						if string(buf[:n]) != string(msg) {
							errs <- errors.New("reply does not match request")
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			// A reply can reach its client before the relay counts it.
			want := uint64(clients * perClient)
			require.Eventually(t, func() bool {
				st := p.Stats()
				return st.Up.Sent == want && st.Down.Sent == want
			}, 2*time.Second, time.Millisecond, "stats %+v", p.Stats())
			require.Equal(t, clients, p.Stats().Clients)
			echo.mu.Lock()
			defer echo.mu.Unlock()
			require.Len(t, echo.peers, clients, "the target sees one address per client")
			for _, k := range echo.peers {
				require.Equal(t, perClient, k)
			}
		})
	}
}

// roundTrip sends msg and waits up to wait for its echo.
func roundTrip(c *net.UDPConn, msg string, wait time.Duration) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err == nil && string(buf[:n]) != msg {
		return errors.New("wrong reply")
	}
	return err
}

func TestProxyClientLimitAndReaping(t *testing.T) {
	echo := newEchoServer(t, false)
	p := newProxy(t, echo.conn.LocalAddr().String(), Config{}, Config{},
		WithMaxClients(2), WithIdleTimeout(150*time.Millisecond))
	a, b, third := dialProxy(t, p), dialProxy(t, p), dialProxy(t, p)
	require.NoError(t, roundTrip(a, "a", 2*time.Second))
	require.NoError(t, roundTrip(b, "b", 2*time.Second))
	err := roundTrip(third, "c", 100*time.Millisecond)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "a third client is over the limit")
	require.Positive(t, p.Stats().Rejected)

	require.Eventually(t, func() bool { return p.Stats().Clients == 0 }, 3*time.Second, 10*time.Millisecond)
	require.Equal(t, uint64(2), p.Stats().Reaped)
	require.NoError(t, roundTrip(third, "c", 2*time.Second), "room again after reaping")
}

func TestProxyCloseStopsEverything(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last, after the helpers close
	echo := newEchoServer(t, false)
	p, err := NewProxy("127.0.0.1:0", echo.conn.LocalAddr().String(),
		Config{Delay: time.Hour}, Config{Delay: time.Millisecond})
	require.NoError(t, err)
	for range 3 {
		c, err := net.DialUDP("udp", nil, p.Addr().(*net.UDPAddr))
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte("pending"))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return p.Stats().Clients == 3 }, 2*time.Second, time.Millisecond)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	st := p.Stats()
	require.Equal(t, uint64(3), st.Up.DroppedClose)
	require.Zero(t, st.Clients)
}

// TestProxyNoAllocs checks the steady state of the relay, both unimpaired and
// through the scheduler: a round trip through the proxy allocates nothing.
func TestProxyNoAllocs(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"unimpaired", Config{}},
		{"scheduled", Config{Delay: 100 * time.Microsecond, Jitter: 100 * time.Microsecond, Corrupt: 0.1, Duplicate: 0.01}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			echo := newEchoServer(t, false)
			p := newProxy(t, echo.conn.LocalAddr().String(), tt.cfg, tt.cfg)
			c := dialProxy(t, p)
			msg := make([]byte, 1200)
			buf := make([]byte, 2048)
			require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
			trip := func() {
				_, err := c.Write(msg)
				require.NoError(t, err)
				_, err = c.Read(buf)
				require.NoError(t, err)
			}
			for range 50 { // open the session, fill the free lists
				trip()
			}
			allocs := testing.AllocsPerRun(300, trip)
			// Duplicates are drained by the next reads; they cost nothing.
			require.LessOrEqual(t, allocs, 0.05)
		})
	}
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
