package sim

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// pair builds a Network with a sender node 0 and a receiver node 1 joined by cfg.
func pair(t *testing.T, seed uint64, sender, receiver Node, cfg LinkConfig) *Network {
	t.Helper()
	n := New(seed)
	a, b := n.AddNode(sender), n.AddNode(receiver)
	require.NoError(t, n.Connect(a, b, cfg))
	return n
}

func TestEpochAndStart(t *testing.T) {
	n := New(1)
	require.Equal(t, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), n.Now())
	require.Equal(t, uint64(1), n.Seed())
	require.False(t, n.Step(), "an empty network has nothing to do")
	require.ErrorIs(t, n.RunUntil(func() bool { return false }, time.Second), ErrIdle)
}

func TestLatencyIsExact(t *testing.T) {
	p, r := newPacer(5, 10*time.Millisecond, 100), &recorder{}
	n := pair(t, 1, p, r, LinkConfig{Latency: 37 * time.Millisecond})
	require.NoError(t, n.RunUntil(func() bool { return len(r.arrivals) == 5 }, time.Second))
	for i, a := range r.arrivals {
		require.Equal(t, uint64(i), a.seq)
		require.True(t, a.ok)
		require.Equal(t, Epoch.Add(time.Duration(i)*10*time.Millisecond+37*time.Millisecond), a.at, "datagram %d", i)
	}
	require.Equal(t, Epoch.Add(77*time.Millisecond), n.Now(), "the clock stops at the last event")
	st := n.Link(0, 1).Stats()
	require.Equal(t, LinkStats{Sent: 5, Delivered: 5, BytesDelivered: 500}, st)
}

func TestJitterBounds(t *testing.T) {
	const interval = 10 * time.Millisecond
	p, r := newPacer(1000, interval, 100), &recorder{}
	n := pair(t, 3, p, r, LinkConfig{Latency: 10 * time.Millisecond, Jitter: 5 * time.Millisecond})
	require.NoError(t, n.RunUntil(func() bool { return len(r.arrivals) == 1000 }, time.Minute))
	seen := map[time.Duration]bool{}
	for _, a := range r.arrivals {
		delay := a.at.Sub(Epoch.Add(time.Duration(a.seq) * interval))
		require.GreaterOrEqual(t, delay, 10*time.Millisecond)
		require.LessOrEqual(t, delay, 15*time.Millisecond)
		seen[delay] = true
	}
	require.Greater(t, len(seen), 100, "jitter should spread the delays")
}

func TestConnectAsym(t *testing.T) {
	n := New(1)
	e1, e2 := &echo{}, &echo{}
	a, b := n.AddNode(e1), n.AddNode(e2)
	require.NoError(t, n.ConnectAsym(a, b, LinkConfig{Latency: 10 * time.Millisecond}, LinkConfig{Latency: 30 * time.Millisecond}))
	require.Equal(t, 10*time.Millisecond, n.Link(a, b).Config().Latency)
	require.Equal(t, 30*time.Millisecond, n.Link(b, a).Config().Latency)
	require.Nil(t, n.Link(a, a))

	e1.send([]byte("ping"))
	var at []time.Duration
	n.OnDeliver = func(now time.Time, from, to int, b []byte) {
		require.Equal(t, "ping", string(b))
		at = append(at, now.Sub(Epoch))
	}
	require.NoError(t, n.RunUntil(func() bool { return len(at) == 4 }, time.Second))
	require.Equal(t, []time.Duration{10 * time.Millisecond, 40 * time.Millisecond, 50 * time.Millisecond, 80 * time.Millisecond}, at)
}

func TestConnectErrors(t *testing.T) {
	n := New(1)
	a, b, c := n.AddNode(&echo{}), n.AddNode(&echo{}), n.AddNode(&echo{})
	require.Error(t, n.Connect(a, 7, LinkConfig{}))
	require.Error(t, n.Connect(a, a, LinkConfig{}))
	require.ErrorContains(t, n.Connect(a, b, LinkConfig{Loss: 2}), "Loss")
	require.NoError(t, n.Connect(a, b, LinkConfig{}))
	require.ErrorContains(t, n.Connect(c, a, LinkConfig{}), "already connected")
	require.ErrorContains(t, n.Link(a, b).SetConfig(LinkConfig{MTU: -1}), "MTU")
}

func TestLinkConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   LinkConfig
		field string // empty: valid
	}{
		{"zero", LinkConfig{}, ""},
		{"everything", LinkConfig{Latency: 1, Jitter: 1, Loss: 1, Duplicate: .5, Reorder: .1, ReorderDelay: 1, Corrupt: .1, Truncate: .1, MTU: 1200, Bandwidth: 1e6, QueueBytes: 1}, ""},
		{"negative loss", LinkConfig{Loss: -0.1}, "Loss"},
		{"NaN duplicate", LinkConfig{Duplicate: math.NaN()}, "Duplicate"},
		{"reorder > 1", LinkConfig{Reorder: 1.5, ReorderDelay: 1}, "Reorder"},
		{"corrupt", LinkConfig{Corrupt: 2}, "Corrupt"},
		{"truncate", LinkConfig{Truncate: -1}, "Truncate"},
		{"latency", LinkConfig{Latency: -1}, "Latency"},
		{"jitter", LinkConfig{Jitter: -1}, "Jitter"},
		{"reorder without delay", LinkConfig{Reorder: .1}, "ReorderDelay"},
		{"mtu", LinkConfig{MTU: -1}, "MTU"},
		{"bandwidth", LinkConfig{Bandwidth: -1}, "Bandwidth"},
		{"queue", LinkConfig{QueueBytes: -1}, "QueueBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, "LinkConfig."+tt.field+" ")
		})
	}
}

func TestBottleneckBurst(t *testing.T) {
	// 10 datagrams of 1000 bytes at once into 1 MB/s (1 ms each) with room for 5 waiting: the
	// first goes straight on the wire, 5 queue behind it, 4 are dropped at the tail.
	p, r := newPacer(10, 0, 1000), &recorder{}
	n := pair(t, 1, p, r, LinkConfig{Latency: 20 * time.Millisecond, Bandwidth: 1_000_000, QueueBytes: 5000})
	require.NoError(t, n.RunFor(time.Second))
	require.Len(t, r.arrivals, 6)
	for i, a := range r.arrivals {
		require.Equal(t, uint64(i), a.seq)
		require.Equal(t, Epoch.Add(time.Duration(i+1)*time.Millisecond+20*time.Millisecond), a.at, "datagram %d", i)
	}
	st := n.Link(0, 1).Stats()
	require.Equal(t, uint64(10), st.Sent)
	require.Equal(t, uint64(4), st.DroppedQueue)
	require.Equal(t, uint64(6), st.Delivered)

	// Once the queue has drained the link takes a full burst again.
	require.Equal(t, Epoch.Add(time.Second), n.Now())
	p.count, p.nextSend = 20, n.Now()
	require.NoError(t, n.RunFor(time.Second))
	require.Len(t, r.arrivals, 12)
	require.Equal(t, Epoch.Add(time.Second+21*time.Millisecond), r.arrivals[6].at)
	require.Equal(t, uint64(8), n.Link(0, 1).Stats().DroppedQueue)
}

func TestBottleneckSustained(t *testing.T) {
	// Offer 2 MB/s to a 1 MB/s bottleneck: it delivers at its rate, one datagram per
	// serialization time, drops the excess, and queueing delay stays bounded by the queue.
	const (
		size    = 1000
		latency = 5 * time.Millisecond
		queue   = 10 * size
	)
	p, r := newPacer(4000, 500*time.Microsecond, size), &recorder{}
	n := pair(t, 1, p, r, LinkConfig{Latency: latency, Bandwidth: 1_000_000, QueueBytes: queue})
	require.NoError(t, n.RunFor(3*time.Second))
	st := n.Link(0, 1).Stats()
	require.Equal(t, uint64(4000), st.Sent)
	require.Equal(t, st.Sent, st.Delivered+st.DroppedQueue)
	require.InDelta(t, 2000, float64(st.Delivered), 20)
	for i := 1; i < len(r.arrivals); i++ {
		require.GreaterOrEqual(t, r.arrivals[i].at.Sub(r.arrivals[i-1].at), time.Millisecond, "serialization spaces arrivals")
		require.Greater(t, r.arrivals[i].seq, r.arrivals[i-1].seq, "FIFO")
	}
	for _, a := range r.arrivals {
		sent := Epoch.Add(time.Duration(a.seq) * 500 * time.Microsecond)
		// At most queue bytes ahead of it, plus the one on the wire and its own serialization.
		require.LessOrEqual(t, a.at.Sub(sent), latency+time.Duration(queue/size+2)*time.Millisecond)
	}
	span := r.arrivals[len(r.arrivals)-1].at.Sub(r.arrivals[0].at)
	rate := float64(st.BytesDelivered-size) / span.Seconds()
	require.InEpsilon(t, 1_000_000, rate, 0.01)
}

func TestMTU(t *testing.T) {
	p, r := newPacer(10, time.Millisecond, 1000, 1500), &recorder{}
	n := pair(t, 1, p, r, LinkConfig{MTU: 1200})
	require.NoError(t, n.RunFor(time.Second))
	require.Len(t, r.arrivals, 5)
	for _, a := range r.arrivals {
		require.Equal(t, 1000, a.size)
	}
	st := n.Link(0, 1).Stats()
	require.Equal(t, uint64(5), st.DroppedMTU)
	require.Equal(t, uint64(5), st.Delivered)
}

func TestFilterDropsTheNth(t *testing.T) {
	p, r := newPacer(6, time.Millisecond, 100), &recorder{}
	seen := 0
	n := pair(t, 1, p, r, LinkConfig{Filter: func(now time.Time, b []byte) bool {
		seen++
		return seen != 3
	}})
	require.NoError(t, n.RunFor(time.Second))
	var seqs []uint64
	for _, a := range r.arrivals {
		seqs = append(seqs, a.seq)
	}
	require.Equal(t, []uint64{0, 1, 3, 4, 5}, seqs)
	require.Equal(t, uint64(1), n.Link(0, 1).Stats().Filtered)
}

func TestImpairmentRates(t *testing.T) {
	const (
		count    = 10000
		size     = 200
		p        = 0.1
		interval = time.Millisecond
	)
	tests := []struct {
		name string
		cfg  LinkConfig
		// stat picks the counter under test; observed is what the receiver saw of it.
		stat     func(LinkStats) uint64
		observed func(arrivals []arrival) int
	}{
		{
			name: "loss",
			cfg:  LinkConfig{Loss: p},
			stat: func(s LinkStats) uint64 { return s.Lost },
			observed: func(as []arrival) int {
				return count - len(as)
			},
		},
		{
			name: "duplicate",
			cfg:  LinkConfig{Duplicate: p, Jitter: 3 * time.Millisecond},
			stat: func(s LinkStats) uint64 { return s.Duplicated },
			observed: func(as []arrival) int {
				seen := map[uint64]bool{}
				dups := 0
				for _, a := range as {
					if seen[a.seq] {
						dups++
					}
					seen[a.seq] = true
				}
				return dups
			},
		},
		{
			name: "reorder",
			cfg:  LinkConfig{Reorder: p, ReorderDelay: 5 * interval},
			stat: func(s LinkStats) uint64 { return s.Reordered },
			observed: func(as []arrival) int {
				late, highest := 0, uint64(0)
				for _, a := range as {
					if a.seq < highest {
						late++
					}
					highest = max(highest, a.seq)
				}
				return late
			},
		},
		{
			name: "corrupt",
			cfg:  LinkConfig{Corrupt: p},
			stat: func(s LinkStats) uint64 { return s.Corrupted },
			observed: func(as []arrival) int {
				bad := 0
				for _, a := range as {
					if !a.ok {
						bad++
					}
				}
				return bad
			},
		},
		{
			name: "truncate",
			cfg:  LinkConfig{Truncate: p},
			stat: func(s LinkStats) uint64 { return s.Truncated },
			observed: func(as []arrival) int {
				short := 0
				for _, a := range as {
					if a.size < size {
						short++
					}
				}
				return short
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const seed = 20240601
			pc, r := newPacer(count, interval, size), &recorder{}
			tt.cfg.Latency = 20 * time.Millisecond
			n := pair(t, seed, pc, r, tt.cfg)
			require.NoError(t, n.RunFor(count*interval+time.Second))
			st := n.Link(0, 1).Stats()
			require.Equal(t, uint64(count), st.Sent)
			got := tt.stat(st)
			// Binomial(10000, 0.1) has a standard deviation of 30: 1.5% is 5 sigma.
			require.InDelta(t, p, float64(got)/count, 0.015, "seed %d: %s count %d", seed, tt.name, got)
			// The receiver sees what the counter says (reordering: up to 1% of reordered
			// datagrams may be overtaken only by other reordered ones).
			require.InDelta(t, float64(got), float64(tt.observed(r.arrivals)), float64(got)/100, "seed %d", seed)
			require.Equal(t, st.Delivered, uint64(len(r.arrivals)))
		})
	}
}

func TestTwoPairs(t *testing.T) {
	n := New(9)
	p1, r1 := newPacer(10, time.Millisecond, 100), &recorder{}
	p2, r2 := newPacer(10, time.Millisecond, 300), &recorder{}
	a, b := n.AddNode(p1), n.AddNode(r1)
	c, d := n.AddNode(p2), n.AddNode(r2)
	require.NoError(t, n.Connect(a, b, LinkConfig{Latency: 10 * time.Millisecond}))
	require.NoError(t, n.Connect(c, d, LinkConfig{Latency: 50 * time.Millisecond, Loss: 0.3}))
	require.NoError(t, n.RunFor(time.Second))
	require.Len(t, r1.arrivals, 10)
	for _, x := range r1.arrivals {
		require.Equal(t, 100, x.size)
		require.Equal(t, Epoch.Add(time.Duration(x.seq)*time.Millisecond+10*time.Millisecond), x.at)
	}
	for _, x := range r2.arrivals {
		require.Equal(t, 300, x.size)
		require.Equal(t, Epoch.Add(time.Duration(x.seq)*time.Millisecond+50*time.Millisecond), x.at)
	}
	require.Equal(t, uint64(10), n.Link(c, d).Stats().Sent)
	require.Equal(t, n.Link(c, d).Stats().Delivered, uint64(len(r2.arrivals)))
	require.Zero(t, n.Link(a, b).Stats().Lost)
	require.Nil(t, n.Link(a, d))
}

func TestStepPicksUpApplicationSends(t *testing.T) {
	e, r := &echo{}, &recorder{}
	n := pair(t, 1, e, r, LinkConfig{Latency: 5 * time.Millisecond})
	require.NoError(t, n.RunFor(time.Second))
	require.Empty(t, r.arrivals)

	e.send([]byte("hello")) // an application action between steps, without an explicit poll
	require.True(t, n.Step())
	require.Len(t, r.arrivals, 1)
	require.Equal(t, Epoch.Add(time.Second+5*time.Millisecond), r.arrivals[0].at)
	require.False(t, n.Step())
}

func TestUnconnectedNodeTrafficIsDropped(t *testing.T) {
	n := New(1)
	e := &echo{}
	n.AddNode(e)
	e.send([]byte("x"))
	require.False(t, n.Step())
	require.Equal(t, uint64(1), n.Unrouted())
}

// transfer runs the toy ARQ over a lossy link, returning the network and the receiver.
func transfer(t testing.TB, seed uint64, total int, cfg LinkConfig) (*Network, *arqSender, *arqReceiver) {
	s := newARQSender(total, 1200, 64, 100*time.Millisecond)
	r := newARQReceiver(s.chunks)
	n := New(seed)
	a, b := n.AddNode(s), n.AddNode(r)
	if err := n.Connect(a, b, cfg); err != nil {
		t.Fatal(err)
	}
	if err := n.RunUntil(s.done, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	return n, s, r
}

var lossy = LinkConfig{Latency: 20 * time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 0.1}

func TestTransferAllocatesNothingPerDatagram(t *testing.T) {
	const total = 1 << 20
	// Warm up once so the runtime's own one-time allocations are out of the way.
	transfer(t, 1, total, lossy)

	s := newARQSender(total, 1200, 64, 100*time.Millisecond)
	r := newARQReceiver(s.chunks)
	n := New(1)
	require.NoError(t, n.Connect(n.AddNode(s), n.AddNode(r), lossy))

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	require.NoError(t, n.RunUntil(s.done, 10*time.Minute))
	wall := time.Since(start)
	runtime.ReadMemStats(&after)

	st := n.Link(0, 1).Stats()
	datagrams := st.Sent + n.Link(1, 0).Stats().Sent
	allocs := after.Mallocs - before.Mallocs
	t.Logf("1 MiB over 10%% loss: %d datagrams, %v virtual, %v wall, %d allocations",
		datagrams, n.Elapsed(), wall, allocs)
	require.Equal(t, s.chunks, r.distinct)
	require.Greater(t, st.Lost, uint64(0))
	// Heap and free-list growth only: a small constant, far below one per datagram.
	require.Less(t, allocs, datagrams/20, "allocations per datagram")
	if !raceEnabled {
		require.Less(t, wall, time.Second)
	}
}

// trace records every delivery of a run: time, direction and bytes.
func trace(t *testing.T, seed uint64) []string {
	cfg := LinkConfig{
		Latency: 15 * time.Millisecond, Jitter: 3 * time.Millisecond,
		Loss: 0.05, Duplicate: 0.05, Reorder: 0.05, ReorderDelay: 10 * time.Millisecond,
		Corrupt: 0.05, Truncate: 0.05, Bandwidth: 2_000_000, QueueBytes: 20_000,
	}
	s := newARQSender(200_000, 1200, 32, 80*time.Millisecond)
	r := newARQReceiver(s.chunks)
	n := New(seed)
	require.NoError(t, n.Connect(n.AddNode(s), n.AddNode(r), cfg))
	var events []string
	n.OnDeliver = func(now time.Time, from, to int, b []byte) {
		events = append(events, fmt.Sprintf("%d %d->%d %x", now.Sub(Epoch), from, to, b))
	}
	require.NoError(t, n.RunUntil(s.done, time.Hour))
	return events
}

func TestDeterminism(t *testing.T) {
	first, second := trace(t, 42), trace(t, 42)
	require.Greater(t, len(first), 300, "the trace should be long enough to mean something")
	require.Equal(t, first, second, "same seed, same trace")
	require.NotEqual(t, first, trace(t, 43), "another seed, another trace")
}

func TestLivelockStuckTimer(t *testing.T) {
	for _, at := range []time.Time{Epoch, Epoch.Add(-time.Hour)} {
		n := New(7)
		s := &stuckTimer{at: at}
		n.AddNode(s)
		err := n.RunFor(time.Second)
		require.ErrorIs(t, err, ErrLivelock)
		require.ErrorContains(t, err, "seed 7")
		var re *RunError
		require.True(t, errors.As(err, &re))
		require.Equal(t, uint64(7), re.Seed)
		require.Equal(t, Epoch, n.Now(), "time never went backwards")
		require.LessOrEqual(t, s.fired, DefaultMaxStepsPerInstant+1)
		require.False(t, n.Step(), "a stopped network stays stopped")
		require.ErrorIs(t, n.Err(), ErrLivelock)
	}
}

func TestLivelockZeroLatencyPingPong(t *testing.T) {
	n := New(5)
	e1, e2 := &echo{}, &echo{}
	require.NoError(t, n.Connect(n.AddNode(e1), n.AddNode(e2), LinkConfig{}))
	e1.send([]byte("ball"))
	require.ErrorIs(t, n.RunUntil(func() bool { return false }, time.Second), ErrLivelock)
}

func TestLivelockEndlessPollTransmit(t *testing.T) {
	n := New(11)
	n.AddNode(&chatty{})
	err := n.RunFor(time.Second)
	require.ErrorIs(t, err, ErrLivelock)
	require.ErrorContains(t, err, "seed 11")
}

func TestBadLength(t *testing.T) {
	n := New(1)
	n.AddNode(&chatty{length: MaxDatagramSize + 1})
	require.False(t, n.Step())
	require.ErrorIs(t, n.Err(), ErrBadLength)
}

func TestTimerInThePast(t *testing.T) {
	n := New(1)
	b := &backwardsTimer{next: Epoch.Add(time.Second)}
	n.AddNode(b)
	require.NoError(t, n.RunUntil(func() bool { return len(b.fires) == 5 }, time.Minute))
	want := []time.Duration{1, 2, 2, 3, 4}
	for i, at := range b.fires {
		require.Equal(t, Epoch.Add(want[i]*time.Second), at, "firing %d: a past timer fires at now", i)
	}
	require.Equal(t, uint64(1), n.PastTimeouts())
}

func TestRunBounds(t *testing.T) {
	t.Run("time limit", func(t *testing.T) {
		n := pair(t, 3, newPacer(1000, time.Second, 10), &recorder{}, LinkConfig{})
		err := n.RunUntil(func() bool { return false }, 10*time.Second)
		require.ErrorIs(t, err, ErrTimeLimit)
		require.ErrorContains(t, err, "seed 3")
		require.Equal(t, Epoch.Add(10*time.Second), n.Now())
		require.NoError(t, n.Err(), "a time limit does not stop the network")
	})
	t.Run("step limit", func(t *testing.T) {
		n := pair(t, 4, newPacer(1000, time.Second, 10), &recorder{}, LinkConfig{})
		n.MaxSteps = 10
		err := n.RunFor(time.Hour)
		require.ErrorIs(t, err, ErrStepLimit)
		require.ErrorContains(t, err, "seed 4")
		require.NoError(t, n.Err(), "a step limit does not stop the network")
		require.True(t, n.Step())
	})
	t.Run("idle", func(t *testing.T) {
		r := &recorder{}
		n := pair(t, 5, newPacer(3, time.Second, 10), r, LinkConfig{})
		require.ErrorIs(t, n.RunUntil(func() bool { return len(r.arrivals) > 3 }, time.Hour), ErrIdle)
		require.Len(t, r.arrivals, 3)
	})
}

func TestDuplicateCopiesAreIndependent(t *testing.T) {
	// A duplicated datagram's copy gets its own jitter draw.
	p, r := newPacer(2000, 10*time.Millisecond, 64), &recorder{keep: true}
	n := pair(t, 8, p, r, LinkConfig{Latency: time.Millisecond, Jitter: 5 * time.Millisecond, Duplicate: 1})
	require.NoError(t, n.RunFor(time.Minute))
	require.Len(t, r.arrivals, 4000)
	bySeq := map[uint64][]arrival{}
	for _, a := range r.arrivals {
		bySeq[a.seq] = append(bySeq[a.seq], a)
	}
	differ := 0
	for _, as := range bySeq {
		require.Len(t, as, 2)
		require.True(t, bytes.Equal(as[0].data, as[1].data))
		if !as[0].at.Equal(as[1].at) {
			differ++
		}
	}
	require.Greater(t, differ, 1500)
}

func BenchmarkTransfer1MiB(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(1 << 20)
	for b.Loop() {
		transfer(b, 1, 1<<20, lossy)
	}
}
