package core_test

import (
	"errors"
	"flag"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
)

var longFatSeeds = flag.Int("longfat-seeds", 4, "TestLongFatPath: seeds per transfer size")

// The path of issue 12's fifth target, as rudpbench's userspace proxy
// builds it (-rate 100mbit, its default queue): a 100 Mbit/s bottleneck
// with a 64 KiB drop-tail queue.
const (
	longFatBandwidth = 100_000_000 / 8
	longFatQueue     = 64 << 10
)

// transferTime moves total bytes from a to b over the path p describes
// and returns the time from the handshake's end (the sender established,
// as Dial returns) until the receiver read the last byte, with the
// sender's stats. The sender runs BBR with its bounds checked after every
// call (CheckedCongestion).
func transferTime(p goodputParams, total int) (time.Duration, core.Stats, error) {
	return transferTimeWith(p, total, core.NewBBR)
}

// transferTimeWith is transferTime with the sender's controller made by
// newCC (its bounds checked as BBR's are).
func transferTimeWith(p goodputParams, total int, newCC func(int) core.CongestionController) (time.Duration, core.Stats, error) {
	p.total = total
	var ccErr error
	tweak := p.sender
	p.sender = func(c *core.Config) {
		if tweak != nil {
			tweak(c)
		}
		c.NewCongestionController = func(mss int) core.CongestionController {
			return core.CheckedCongestion(newCC(mss), func(err error) { ccErr = err })
		}
	}
	net, a, b, err := newGoodputNet(p)
	if err != nil {
		return 0, core.Stats{}, err
	}
	if err := net.RunUntil(a.conn.Established, 10*time.Second); err != nil {
		return 0, core.Stats{}, err
	}
	start := net.Elapsed()
	limit := 20*time.Second + time.Duration(float64(total)/float64(p.bandwidth)*4*float64(time.Second))
	done := func() bool { return b.bytes >= total || a.err != nil || b.err != nil || ccErr != nil }
	if err := net.RunUntil(done, limit); err != nil {
		return 0, core.Stats{}, err
	}
	if err := errors.Join(a.err, b.err, ccErr); err != nil {
		return 0, core.Stats{}, err
	}
	return net.Elapsed() - start, a.conn.Stats(), nil
}

// TestLongFatPath is issue 12's fifth target in the simulator: a bulk
// transfer through a 100 Mbit/s bottleneck with a 64 KiB queue, at 100 ms
// RTT against 2 ms (goodput ratio = the inverse ratio of the times), with
// the ACK path's jitter drawn from the seed, BBR's bounds checked on every
// step.
//
// Slow start bounds what 32 MiB can show. The best any controller that
// doubles per round trip from the initial window can do is idealDoubling's
// time: it knows the bandwidth-delay product, stops growing exactly there
// and loses nothing, and still gets 0.824 of the 2 ms goodput at 32 MiB
// (0.949 at 128 MiB); a controller that knew the bottleneck's rate before
// the first round trip would get 0.982 (0.995). BBR gets 0.804-0.810
// (0.944-0.957). So at 32 MiB BBR is held to within a round trip of the
// ideal doubling start, and the 90% target is asserted at 128 MiB (BBR
// reaches 0.9 at about 70 MiB: 0.893 at 64, 0.912 at 80). Loss: STARTUP
// must end in the round its overflow of the 64 KiB queue shows, not
// rounds later once the bandwidth stopped growing: at most 1.5 BDPs lost
// in all (1 BDP is ~860 datagrams; 2,576 were lost at 32 MiB when STARTUP
// waited for the bandwidth to stop growing, ~1,000 now, ~680 of them in
// STARTUP).
func TestLongFatPath(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of simulated bulk transfer")
	}
	t.Parallel()
	const bdpDatagrams = longFatBandwidth / 10 / 1452 // at 100 ms, in datagrams of the path's MTU
	for _, c := range []struct {
		mib      int
		minRatio float64
	}{{32, 0.78}, {128, 0.9}} {
		for seed := uint64(1); seed <= uint64(*longFatSeeds); seed++ {
			var took [2]time.Duration
			for i, rtt := range []time.Duration{2 * time.Millisecond, 100 * time.Millisecond} {
				p := goodputParams{seed: seed, rtt: rtt, queueBytes: longFatQueue, bandwidth: longFatBandwidth,
					ackJitter: time.Duration(seed-1) * 300 * time.Microsecond}
				d, st, err := transferTime(p, c.mib<<20)
				if err != nil {
					t.Fatalf("%d MiB seed %d rtt %v: %v", c.mib, seed, rtt, err)
				}
				took[i] = d
				t.Logf("%d MiB seed %d rtt %v: %v, %.1f Mbit/s, lost %d/%d, cwnd %d KiB", c.mib, seed, rtt, d,
					float64(c.mib<<20)*8/d.Seconds()/1e6, st.PacketsLost, st.PacketsSent, st.CongestionWindow>>10)
				if rtt == 100*time.Millisecond && c.mib == 32 && st.PacketsLost > 3*bdpDatagrams/2 {
					t.Errorf("%d MiB seed %d rtt %v: %d datagrams lost, want at most 1.5 BDPs (%d): STARTUP overshot",
						c.mib, seed, rtt, st.PacketsLost, 3*bdpDatagrams/2)
				}
			}
			if c.mib == 32 {
				p := goodputParams{seed: seed, rtt: 100 * time.Millisecond, queueBytes: longFatQueue, bandwidth: longFatBandwidth,
					ackJitter: time.Duration(seed-1) * 300 * time.Microsecond}
				ideal, _, err := transferTimeWith(p, c.mib<<20, newIdealDoubling(p))
				if err != nil {
					t.Fatalf("%d MiB seed %d: ideal doubling: %v", c.mib, seed, err)
				}
				t.Logf("%d MiB seed %d: ideal doubling start at 100 ms: %v, BBR %+v later", c.mib, seed, ideal, took[1]-ideal)
				if took[1] > ideal+p.rtt {
					t.Errorf("%d MiB seed %d rtt 100ms: %v, more than a round trip behind the ideal doubling start's %v", c.mib, seed, took[1], ideal)
				}
			}
			ratio := took[0].Seconds() / took[1].Seconds()
			t.Logf("%d MiB seed %d: goodput at 100 ms / at 2 ms = %.3f", c.mib, seed, ratio)
			if ratio < c.minRatio {
				t.Errorf("%d MiB seed %d: goodput at 100 ms RTT is %.3f of that at 2 ms, want >= %v", c.mib, seed, ratio, c.minRatio)
			}
		}
	}
}

// idealDoubling is the best a controller that doubles its window per round
// trip can do on a path it knows: its window grows from the initial window
// by what is acknowledged (doubling per round trip, paced as the
// connection paces a controller without a rate: 5/4 of a window per RTT)
// until it holds the bandwidth-delay product, then stays at the BDP plus
// half the queue, paced at 99% of the bottleneck's rate. It never
// overflows the queue and never probes, so no controller that learns the
// path by doubling starts faster.
type idealDoubling struct {
	window, bdp, hold int
	rate              float64
	grown             bool
}

func newIdealDoubling(p goodputParams) func(mss int) core.CongestionController {
	bdp := int(float64(p.bandwidth) * p.rtt.Seconds())
	return func(mss int) core.CongestionController {
		return &idealDoubling{window: min(10*mss, max(2*mss, 14720)), bdp: bdp, hold: bdp + p.queueBytes/2, rate: 0.99 * float64(p.bandwidth)}
	}
}

func (d *idealDoubling) OnPacketSent(time.Time, int) {}

func (d *idealDoubling) OnPacketAcked(_ time.Time, n int, _ time.Time, _ *core.RTTStats) {
	if d.grown {
		return
	}
	if d.window += n; d.window >= d.bdp {
		d.window, d.grown = d.hold, true
	}
}

func (d *idealDoubling) OnPacketsLost(time.Time, int, time.Time, bool) {}

func (d *idealDoubling) Window() int { return d.window }

// PacingRate implements core.PacingRater: 0 (the connection's own pacing)
// while growing, then the bottleneck's rate.
func (d *idealDoubling) PacingRate() float64 {
	if d.grown {
		return d.rate
	}
	return 0
}
