package rudp

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// checkQueue checks the heap order and every queued connection's pos, and
// that the queue holds exactly the connections want has a time for.
func checkQueue(t *testing.T, q *timerQueue, conns []*Conn, want map[*Conn]time.Time) {
	t.Helper()
	require.Equal(t, len(want), q.len())
	for i, c := range q.heap {
		require.Equal(t, i+1, c.timer.pos, "pos of heap[%d]", i)
		if i > 0 {
			require.False(t, q.less(i, (i-1)/2), "heap[%d] is due before its parent", i)
		}
	}
	for i, c := range conns {
		at, ok := want[c]
		if !ok {
			require.Zero(t, c.timer.pos, "conn %d is not scheduled but queued", i)
			continue
		}
		require.NotZero(t, c.timer.pos, "conn %d is scheduled but not queued", i)
		require.True(t, c.timer.at.Equal(at), "conn %d due at %v, want %v", i, c.timer.at, at)
	}
}

// TestTimerQueueOrder runs random schedules, reschedules, removals and pops
// against a map of what is due when: popDue returns exactly the
// connections due, earliest first, and the heap stays consistent.
func TestTimerQueueOrder(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 9))
		q := &timerQueue{manual: true}
		conns := make([]*Conn, 1+rng.IntN(40))
		for i := range conns {
			conns[i] = &Conn{}
		}
		want := make(map[*Conn]time.Time)
		base := time.Unix(1_000_000, 0)
		now := base
		for range 2000 {
			c := conns[rng.IntN(len(conns))]
			switch op := rng.IntN(10); {
			case op < 6: // (re)schedule, sometimes to the time it has
				at := now.Add(time.Duration(rng.IntN(100)) * time.Millisecond)
				if old, ok := want[c]; ok && rng.IntN(4) == 0 {
					at = old
				}
				q.schedule(c, at)
				want[c] = at
			case op < 7:
				q.schedule(c, time.Time{})
				delete(want, c)
			case op < 8:
				q.remove(c)
				delete(want, c)
			default:
				now = now.Add(time.Duration(rng.IntN(30)) * time.Millisecond)
				due := q.popDue(now, nil)
				for i, d := range due {
					at, ok := want[d]
					require.True(t, ok, "seed %d: popped a connection not scheduled", seed)
					require.False(t, at.After(now), "seed %d: popped one due at %v at %v", seed, at, now)
					if i > 0 {
						require.False(t, at.Before(want[due[i-1]]), "seed %d: popped out of order", seed)
					}
					delete(want, d)
				}
				for _, at := range want {
					require.True(t, at.After(now), "seed %d: one due at %v left at %v", seed, at, now)
				}
			}
			checkQueue(t, q, conns, want)
		}
		require.Nil(t, q.timer, "Manual mode armed a time.Timer")
	}
}

// TestTimerQueueArming checks when the one time.Timer is (re)armed: for the
// earliest connection, at once when a timer moves earlier, not when it
// moves later (that firing re-arms), never after stop.
func TestTimerQueueArming(t *testing.T) {
	fired := make(chan struct{}, 1)
	q := &timerQueue{}
	q.fire = func() { signal(fired) }
	defer q.stop()
	now := time.Now()
	a, b := &Conn{}, &Conn{}

	q.schedule(a, now.Add(time.Hour))
	require.True(t, q.armedAt.Equal(now.Add(time.Hour)))
	q.schedule(b, now.Add(30*time.Minute))
	require.True(t, q.armedAt.Equal(now.Add(30*time.Minute)), "an earlier timer re-arms")
	q.schedule(b, now.Add(2*time.Hour))
	require.True(t, q.armedAt.Equal(now.Add(30*time.Minute)), "a later timer does not re-arm")
	require.Empty(t, q.popDue(now, nil))
	require.True(t, q.armedAt.Equal(now.Add(30*time.Minute)))

	// The firing finds nothing due and re-arms for the earliest.
	q.fired()
	require.Empty(t, q.popDue(now.Add(30*time.Minute), nil))
	require.True(t, q.armedAt.Equal(now.Add(time.Hour)))

	q.fired()
	require.Equal(t, []*Conn{a}, q.popDue(now.Add(time.Hour), nil))
	require.True(t, q.armedAt.Equal(now.Add(2*time.Hour)))

	// fireNow runs fire at once, whatever is due.
	q.fireNow()
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("fireNow did not fire")
	}

	q.stop()
	q.fired()
	q.schedule(a, now)
	q.fireNow()
	require.True(t, q.armedAt.IsZero(), "armed after stop")
}
