package core

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// checkScheduler verifies the scheduler's structure (every level a heap
// whose entries know their place, the levels sorted and non-empty, the
// count right) and that peek returns what a scan of every ready entry
// would: the lowest priority, then the earliest start tag, then the first
// come.
func checkScheduler(t *testing.T, q *scheduler, all []*schedEntry) {
	t.Helper()
	n := 0
	for i, l := range q.levels {
		if len(l.heap) == 0 {
			t.Fatalf("level %d is empty but stays", l.priority)
		}
		if i > 0 && q.levels[i-1].priority >= l.priority {
			t.Fatalf("levels out of order: %d then %d", q.levels[i-1].priority, l.priority)
		}
		for j, e := range l.heap {
			switch {
			case e.pos != j+1 || e.level != l || e.priority != l.priority:
				t.Fatalf("entry %d of level %d: pos %d, level %p (%p), priority %d", j, l.priority, e.pos, e.level, l, e.priority)
			case j > 0 && l.less(j, (j-1)/2):
				t.Fatalf("level %d: entry %d before its parent", l.priority, j)
			}
		}
		n += len(l.heap)
	}
	var want *schedEntry
	ready := 0
	for _, e := range all {
		if !e.ready() {
			continue
		}
		ready++
		if want == nil || e.priority < want.priority ||
			e.priority == want.priority && (vtBefore(e.start, want.start) || e.start == want.start && e.order < want.order) {
			want = e
		}
	}
	if n != q.len() || ready != n {
		t.Fatalf("%d entries in the levels, len %d, %d ready", n, q.len(), ready)
	}
	if got := q.peek(); got != want {
		t.Fatalf("peek %+v, want %+v", got, want)
	}
}

// TestSchedulerModel drives the scheduler with random operations and
// checks it against a scan of every entry after each one.
func TestSchedulerModel(t *testing.T) {
	seeds := uint64(200)
	if testing.Short() {
		seeds = 20
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			var q scheduler
			all := make([]*schedEntry, 40)
			for i := range all {
				all[i] = &schedEntry{weight: 1 + r.IntN(8), priority: r.IntN(3)}
			}
			for range 2000 {
				e := all[r.IntN(len(all))]
				switch op := r.IntN(10); {
				case op < 4:
					q.push(e)
				case op < 5:
					q.remove(e)
				case op < 6:
					q.setPriority(e, r.IntN(3), 1+r.IntN(8))
				case op < 7:
					if top := q.peek(); top != nil {
						q.pass(top)
					}
				case op < 8:
					q.unpass()
				default:
					if top := q.peek(); top != nil {
						q.served(top, 1+r.IntN(1400), r.IntN(4) != 0)
					}
				}
				checkScheduler(t, &q, all)
			}
			q.unpass()
			q.reset()
			checkScheduler(t, &q, all)
			require.Empty(t, q.levels)
		})
	}
}

// TestSchedulerShares: backlogged entries of one priority are served in
// proportion to their weights, fragment by fragment; one that joins late
// (idle until then) earns nothing for its idle time; a lower priority goes
// strictly first.
func TestSchedulerShares(t *testing.T) {
	var q scheduler
	a, b, c := &schedEntry{weight: 4}, &schedEntry{weight: 1}, &schedEntry{weight: 1}
	serve := func(n int) map[*schedEntry]int {
		got := map[*schedEntry]int{}
		for range n {
			e := q.peek()
			got[e]++
			q.served(e, 1000, true)
		}
		return got
	}
	q.push(a)
	q.push(b)
	got := serve(5000)
	require.Equal(t, 4000, got[a])
	require.Equal(t, 1000, got[b])
	// c, idle all along, joins: it starts at the level's virtual time, not
	// at zero, so it does not take the next thousands of fragments.
	q.push(c)
	got = serve(6000)
	require.InDelta(t, 4000, got[a], 2)
	require.InDelta(t, 1000, got[b], 2)
	require.InDelta(t, 1000, got[c], 2)
	// A joining entry goes within a fragment or so, whatever the weights.
	q.remove(c)
	serve(100)
	q.push(c)
	require.Same(t, c, q.peek())
	// Strict priority: a at priority 1 waits while b and c have data.
	q.setPriority(a, 1, 4)
	got = serve(1000)
	require.Zero(t, got[a])
	require.Equal(t, 500, got[b])
	q.remove(b)
	q.remove(c)
	require.Same(t, a, q.peek())
	// A stream that empties with every fragment and has another at once
	// (one message at a time) gains nothing by the instant it was idle:
	// it starts where its last fragment ended.
	q.setPriority(a, 0, 1)
	q.push(b)
	got = map[*schedEntry]int{}
	for range 1000 {
		e := q.peek()
		got[e]++
		q.served(e, 1000, e != b)
		if e == b {
			q.push(b)
		}
	}
	require.InDelta(t, 500, got[b], 1)
	// Nor does one passed over (no credit for its next message) while the
	// other is served: once it may go again, the two alternate.
	for range 100 {
		if e := q.peek(); e == a {
			q.pass(a)
		}
		q.served(q.peek(), 1000, true)
		q.unpass()
	}
	got = serve(100)
	require.InDelta(t, 50, got[a], 1)
}

// TestSetStreamPriorityErrors: bad arguments are refused naming them.
func TestSetStreamPriorityErrors(t *testing.T) {
	p := newStreamPair(t, nil, nil)
	id, err := p.a.OpenStream(Delivery)
	require.NoError(t, err)
	var ce *ConfigError
	require.ErrorAs(t, p.a.SetStreamPriority(0, 1, 1), &ce)
	require.Equal(t, "id", ce.Field)
	for _, w := range []int{0, -1, MaxStreamWeight + 1} {
		require.ErrorAs(t, p.a.SetStreamPriority(id, 0, w), &ce)
		require.Equal(t, "weight", ce.Field)
	}
	require.ErrorIs(t, p.a.SetStreamPriority(id+2, 0, 1), ErrStreamClosed)
	require.NoError(t, p.a.SetStreamPriority(id, -5, MaxStreamWeight))
}

// BenchmarkScheduler is the scheduler's cost per fragment with n streams
// backlogged at random weights: it grows as log n, not as n.
func BenchmarkScheduler(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var q scheduler
			r := rand.New(rand.NewPCG(1, 2))
			for range n {
				q.push(&schedEntry{weight: 1 + r.IntN(16)})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				q.served(q.peek(), 1200, true)
			}
		})
	}
}
