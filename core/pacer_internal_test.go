package core

import (
	"testing"
	"time"
)

// fixedPacing is a controller with a fixed window and pacing rate.
type fixedPacing struct {
	window int
	rate   float64
}

func (f *fixedPacing) OnPacketSent(time.Time, int)                        {}
func (f *fixedPacing) OnPacketAcked(time.Time, int, time.Time, *RTTStats) {}
func (f *fixedPacing) OnPacketsLost(time.Time, int, time.Time, bool)      {}
func (f *fixedPacing) Window() int                                        { return f.window }
func (f *fixedPacing) PacingRate() float64                                { return f.rate }

// TestPacerLateWakeUps: a sender whose pacing timer always fires late
// (2 ms after the due time, as on a loaded machine) keeps its pacing rate,
// because the call that ends a wait may spend what a punctual timer would
// have let go; and it never runs ahead of the rate by more than the burst
// and the late credit. Before, the pacer dropped what it earned beyond its
// burst (10 datagrams, 1.2 ms at 100 Mbit/s) while it waited to be woken:
// the sender kept 55% of its rate here. A wake-up that ends no pacer wait
// (the window held the packet back) gets the burst only.
func TestPacerLateWakeUps(t *testing.T) {
	const (
		rate     = 12.5e6 // 100 Mbit/s
		size     = 1452
		late     = 2 * time.Millisecond
		duration = time.Second
	)
	burst := max(rate*pacingBurstTime.Seconds(), float64(pacingMinBurst*size))
	cc := &fixedPacing{window: 1 << 30, rate: rate}
	var r recovery
	r.cc, r.pacingRater = cc, cc
	start := time.Unix(1000, 0)
	now := start
	sent := 0
	for now.Sub(start) < duration {
		ok, wait := r.sendAllowed(now, size, size, true)
		if ok {
			r.pacer.spend(size)
			sent += size
			limit := rate*now.Sub(start).Seconds() + burst + rate*pacingLateCredit.Seconds() + size
			if float64(sent) > limit {
				t.Fatalf("%v in: %d bytes sent, more than the rate, the burst and the late credit allow (%.0f)", now.Sub(start), sent, limit)
			}
			continue
		}
		if wait.IsZero() {
			t.Fatalf("held back with no pacing wait")
		}
		now = wait.Add(late)
	}
	got := float64(sent) / now.Sub(start).Seconds()
	t.Logf("every wake-up %v late: %.2f MB/s sent at a pacing rate of %.2f MB/s", late, got/1e6, rate/1e6)
	if got < 0.95*rate {
		t.Errorf("sent %.2f MB/s with wake-ups %v late, want at least 95%% of the pacing rate %.2f MB/s", got/1e6, late, rate/1e6)
	}

	// The window, not the pacer, held the sender back: when it opens,
	// the pacer allows its burst, no late credit.
	cc.window = 0
	if ok, wait := r.sendAllowed(now, size, size, true); ok || !wait.IsZero() {
		t.Fatalf("a closed window let a packet go (%v) or set a pacing wait (%v)", ok, wait)
	}
	cc.window = 1 << 30
	now = now.Add(time.Second)
	n := 0
	for {
		ok, _ := r.sendAllowed(now, size, size, true)
		if !ok {
			break
		}
		r.pacer.spend(size)
		n += size
	}
	if float64(n) > burst+size {
		t.Errorf("after the window opened: %d bytes at once, want at most the burst (%.0f)", n, burst)
	}
}
