package core

import "time"

// BBR is a model-based congestion controller in the manner of BBR v1
// (draft-cardwell-iccrg-bbr-congestion-control-00): it estimates the
// bottleneck bandwidth (the windowed maximum of delivery-rate samples over
// bbrBwRounds round trips) and the propagation delay (the windowed minimum
// RTT over bbrMinRTTWindow), paces at a gain times that bandwidth and keeps
// at most cwndGain bandwidth-delay products in flight. Random loss does not
// lower the rate, which is why it keeps most of a lossy path where a
// loss-based controller collapses.
//
// Rules in the spirit of BBR v2 keep it from blasting a shallow queue:
// a round trip that loses more than bbrHeavyLoss of what it sent is
// congestion, not a lossy link (STARTUP ends at once, whether or not the
// bandwidth still grows, and in flight is capped at bbrHeavyLossBeta of
// the round's);
// a probe for bandwidth that loses clearly more than the rounds that do not
// probe overflowed the queue, so in flight is capped below where it began
// to lose (never below one BDP), the cap growing again, faster each time,
// while probes find room. PROBE_RTT keeps half a BDP in flight, not four
// packets. It is the default (Config.NewCongestionController): it keeps
// most of the bottleneck under random loss and at long RTT, at the price of
// BBR v1's unfairness: it takes most of a shared bottleneck from a NewReno
// flow (see TestFairness).
//
// BBR is not safe for concurrent use; a connection owns one.
type BBR struct {
	mss  int
	mode bbrMode

	// the model
	btlBw       maxFilter // bytes per second, by round
	minRTT      time.Duration
	minRTTStamp time.Time

	// round trips, counted in delivered bytes
	rounds             uint64
	nextRoundDelivered uint64
	roundStart         bool

	// STARTUP: the bandwidth stopped growing
	filledPipe  bool
	fullBw      float64
	fullBwCount int

	// PROBE_BW gain cycling
	cycleIndex int
	cycleStamp time.Time

	// PROBE_RTT
	probeRTTDoneAt    time.Time
	probeRTTRoundDone bool
	priorCwnd         int

	// loss within the current round trip, and the in-flight cap loss set
	roundLost, roundAcked int
	roundAckedSinceLoss   int    // acknowledged in the round since its first loss (STARTUP's test)
	roundBursts           uint64 // RateSample.LossBursts when the round began
	roundMaxInflight      int
	roundProbed           bool    // the pacing gain was above 1 in this round
	baselineLoss          float64 // loss rate of rounds that did not probe (EWMA)
	// the rounds of one probe for bandwidth and the round after (when the
	// probe's losses show), summed
	probeLost, probeAcked, probeMaxInflight int
	probeBursts                             uint64
	probeEcho                               bool // the last round probed: this one shows its losses
	inflightHi                              int  // 0: no cap
	probeGrowth                             int  // bytes the cap grew by at the last probe

	pacingGain, cwndGain float64
	pacingRate           float64
	cwnd                 int
}

type bbrMode uint8

const (
	bbrStartup bbrMode = iota
	bbrDrain
	bbrProbeBW
	bbrProbeRTT
)

// BBR constants, from the draft unless said otherwise.
const (
	bbrHighGain       = 2.885 // 2/ln 2: doubles the delivery rate every round
	bbrDrainGain      = 1 / bbrHighGain
	bbrCwndGain       = 2.0
	bbrBwRounds       = 10
	bbrMinRTTWindow   = 10 * time.Second
	bbrProbeRTTTime   = 200 * time.Millisecond
	bbrFullBwGrowth   = 1.25
	bbrFullBwRounds   = 3
	bbrMinCwndPackets = 4
	bbrPacingMargin   = 0.99 // pace 1% below the estimate, so a queue drains
	// bbrHeavyLoss is the share of a round's packets whose loss marks
	// congestion rather than a lossy link; it takes bbrHeavyLossPackets
	// lost packets in the round to say so (a short round is noise).
	bbrHeavyLoss        = 0.2
	bbrHeavyLossPackets = 8
	bbrHeavyLossBeta    = 0.85
	// bbrCongestionBursts is the least number of loss bursts (runs of
	// consecutive packets lost) that loss must come in to mean congestion:
	// a queue overflowing under a paced sender drops packets here and
	// there, while a single run is a hiccup of the link or a batch of
	// datagrams dropped as one (a GSO send on loopback under kernel loss
	// loses up to a whole window at once, 2% of the time).
	bbrCongestionBursts = 2
	// bbrProbeExcessLoss is how much more than twice the usual loss rate a
	// probe for bandwidth must lose to say it overflowed the queue.
	bbrProbeExcessLoss = 0.02
)

var bbrPacingGains = [...]float64{1.25, 0.75, 1, 1, 1, 1, 1, 1}

// minCwnd is the least congestion window BBR keeps.
func (b *BBR) minCwnd() int { return bbrMinCwndPackets * b.mss }

// NewBBR returns a BBR controller for datagrams of maxDatagramSize.
func NewBBR(maxDatagramSize int) CongestionController {
	b := &BBR{
		mss:        maxDatagramSize,
		cwnd:       initialWindow(maxDatagramSize),
		pacingGain: bbrHighGain,
		cwndGain:   bbrHighGain,
	}
	return b
}

// OnPacketSent implements CongestionController.
func (b *BBR) OnPacketSent(time.Time, int) {}

// OnPacketAcked implements CongestionController; BBR learns from rate samples.
func (b *BBR) OnPacketAcked(time.Time, int, time.Time, *RTTStats) {}

// OnPacketsLost implements CongestionController: losses count toward the
// round's loss rate, and do not lower the rate by themselves.
func (b *BBR) OnPacketsLost(_ time.Time, bytes int, _ time.Time, persistent bool) {
	b.roundLost += bytes
	if persistent {
		b.cwnd = b.minCwnd()
	}
}

// Window implements CongestionController.
func (b *BBR) Window() int { return b.cwnd }

// PacingRate implements PacingRater.
func (b *BBR) PacingRate() float64 { return b.pacingRate }

// OnRateSample implements RateObserver: the per-ACK model update.
func (b *BBR) OnRateSample(now time.Time, rs *RateSample) {
	b.updateRound(rs)
	b.updateBandwidth(rs)
	b.checkLoss(rs)
	b.updateCyclePhase(now, rs)
	b.checkFullPipe(rs)
	b.checkDrain(now, rs)
	b.updateMinRTT(now, rs)
	b.setPacingRate()
	b.setCwnd(rs)
}

func (b *BBR) updateRound(rs *RateSample) {
	b.roundStart = false
	b.roundAcked += rs.NewlyAcked
	if b.roundLost > 0 {
		b.roundAckedSinceLoss += rs.NewlyAcked
	}
	b.roundMaxInflight = max(b.roundMaxInflight, rs.BytesInFlight+rs.NewlyAcked+rs.NewlyLost)
	if rs.PriorDelivered >= b.nextRoundDelivered {
		b.nextRoundDelivered = rs.TotalDelivered
		b.rounds++
		b.roundStart = true
	}
}

func (b *BBR) updateBandwidth(rs *RateSample) {
	if rs.Interval <= 0 || rs.Delivered <= 0 {
		return
	}
	bw := float64(rs.Delivered) / rs.Interval.Seconds()
	// An app-limited sample only shows a floor of what the path carries.
	if !rs.AppLimited || bw >= b.btlBw.get() {
		b.btlBw.update(b.rounds, bw, bbrBwRounds)
	}
}

// checkLoss ends a round's loss count and caps what is kept in flight when
// loss shows a full queue rather than a lossy link. A random loss rate is
// the same whatever we send; a queue that overflows loses more when we
// send more. So a probe for bandwidth (pacing gain 5/4) that loses clearly
// more than the rounds that do not probe found the path's limit: in flight
// stays below where the probe began to lose. Any round losing more than
// bbrHeavyLoss (a rate no lossy link we aim to serve has) is congestion
// whatever we were doing.
func (b *BBR) checkLoss(rs *RateSample) {
	if b.pacingGain > 1 {
		b.roundProbed = true
	}
	heavy := func(lost, acked int, bursts uint64) bool {
		return lost >= bbrHeavyLossPackets*b.mss && float64(lost) > bbrHeavyLoss*float64(lost+acked) &&
			bursts >= bbrCongestionBursts
	}
	if !b.filledPipe && heavy(b.roundLost, b.roundAckedSinceLoss, rs.LossBursts-b.roundBursts) {
		// The queue overflows: STARTUP ends at once, as BBR v2 and v3
		// end it on loss. It used to wait for the bandwidth to stop
		// growing too, but the delivery rate still grows for a round
		// after a shallow queue overflowed (the samples in flight were
		// sent below the bottleneck's rate), and a round more of STARTUP
		// at 2.885 times the bandwidth loses nearly two BDPs. The loss
		// rate counts what was acknowledged since the round's first
		// loss: what was sent about when the lost packets were, not the
		// round's earlier packets sent below the bottleneck's rate
		// (whose acknowledgements delayed the exit by half a round).
		// 32 MiB at 100 ms RTT through 100 Mbit/s and a 64 KiB queue lost
		// 2,576 datagrams, now 1,062, of which STARTUP ~680 (0.8 BDP: the
		// round trip in which the overflow shows, TestLongFatPath).
		b.filledPipe = true
		b.inflightHi = max(int(float64(b.roundMaxInflight)*bbrHeavyLossBeta), b.minCwnd())
	}
	if !b.roundStart {
		return
	}
	lost, acked, inflight, probed := b.roundLost, b.roundAcked, b.roundMaxInflight, b.roundProbed
	bursts := rs.LossBursts - b.roundBursts
	b.roundLost, b.roundAcked, b.roundAckedSinceLoss, b.roundMaxInflight, b.roundProbed = 0, 0, 0, 0, b.pacingGain > 1
	b.roundBursts = rs.LossBursts
	if heavy(lost, acked, bursts) { // (in STARTUP, the check above ended it)
		b.inflightHi = max(int(float64(inflight)*bbrHeavyLossBeta), b.minCwnd())
		b.probeGrowth = 0
		b.filledPipe = true
		b.probeLost, b.probeAcked, b.probeMaxInflight, b.probeBursts, b.probeEcho = 0, 0, 0, 0, false
		return
	}
	if b.mode != bbrProbeBW {
		return
	}
	if !probed && !b.probeEcho {
		if lost+acked > 0 {
			b.baselineLoss += (float64(lost)/float64(lost+acked) - b.baselineLoss) / 8
		}
		return
	}
	b.probeLost += lost
	b.probeAcked += acked
	b.probeBursts += bursts
	b.probeMaxInflight = max(b.probeMaxInflight, inflight)
	if b.probeEcho = probed; probed {
		return // the probe's losses show a round later
	}
	rate := float64(b.probeLost) / float64(max(b.probeLost+b.probeAcked, 1))
	if b.probeLost >= bbrHeavyLossPackets*b.mss && rate > 2*b.baselineLoss+bbrProbeExcessLoss &&
		b.probeBursts >= bbrCongestionBursts {
		// Keep in flight what the probe had before the excess loss.
		b.inflightHi = max(int(float64(b.probeMaxInflight)*(1-(rate-b.baselineLoss))), b.inflight(1))
		b.probeGrowth = 0
	} else if b.inflightHi > 0 {
		// The probe found room: lift the cap, faster each time, and drop
		// it once it no longer bounds the window.
		b.probeGrowth = max(2*b.probeGrowth, b.mss)
		b.inflightHi += b.probeGrowth
		if b.inflightHi > b.inflight(b.cwndGain)+3*b.mss {
			b.inflightHi, b.probeGrowth = 0, 0
		}
	}
	b.probeLost, b.probeAcked, b.probeMaxInflight, b.probeBursts = 0, 0, 0, 0
}

func (b *BBR) updateCyclePhase(now time.Time, rs *RateSample) {
	if b.mode != bbrProbeBW || !b.nextCyclePhase(now, rs) {
		return
	}
	b.cycleIndex = (b.cycleIndex + 1) % len(bbrPacingGains)
	b.cycleStamp = now
	b.pacingGain = bbrPacingGains[b.cycleIndex]
}

func (b *BBR) nextCyclePhase(now time.Time, rs *RateSample) bool {
	fullLength := now.Sub(b.cycleStamp) > b.minRTT
	prior := rs.BytesInFlight + rs.NewlyAcked + rs.NewlyLost
	switch {
	case b.pacingGain > 1:
		capped := b.inflightHi > 0 && prior+b.mss >= b.inflightHi
		return fullLength && (rs.NewlyLost > 0 || capped || prior >= b.inflight(b.pacingGain))
	case b.pacingGain < 1:
		return fullLength || prior <= b.inflight(1)
	}
	return fullLength
}

func (b *BBR) checkFullPipe(rs *RateSample) {
	if b.filledPipe || !b.roundStart || rs.AppLimited {
		return
	}
	if bw := b.btlBw.get(); bw >= b.fullBw*bbrFullBwGrowth {
		b.fullBw = bw
		b.fullBwCount = 0
		return
	}
	b.fullBwCount++
	b.filledPipe = b.fullBwCount >= bbrFullBwRounds
}

func (b *BBR) checkDrain(now time.Time, rs *RateSample) {
	if b.mode == bbrStartup && b.filledPipe {
		b.mode = bbrDrain
		b.pacingGain, b.cwndGain = bbrDrainGain, bbrHighGain
	}
	if b.mode == bbrDrain && rs.BytesInFlight <= b.inflight(1) {
		b.enterProbeBW(now)
	}
}

func (b *BBR) enterProbeBW(now time.Time) {
	b.mode = bbrProbeBW
	b.cwndGain = bbrCwndGain
	// The draft starts at a random phase other than 0.75; the core draws
	// no randomness here, so every flow starts cruising two phases in.
	b.cycleIndex = 2
	b.cycleStamp = now
	b.pacingGain = bbrPacingGains[b.cycleIndex]
}

func (b *BBR) updateMinRTT(now time.Time, rs *RateSample) {
	expired := !b.minRTTStamp.IsZero() && now.Sub(b.minRTTStamp) > bbrMinRTTWindow
	if rs.RTT > 0 && (b.minRTT == 0 || rs.RTT < b.minRTT || expired) {
		b.minRTT = rs.RTT
		b.minRTTStamp = now
	}
	if expired && b.mode != bbrProbeRTT {
		b.mode = bbrProbeRTT
		b.pacingGain, b.cwndGain = 1, 1
		b.priorCwnd = max(b.priorCwnd, b.cwnd)
		b.probeRTTDoneAt = time.Time{}
	}
	if b.mode != bbrProbeRTT {
		return
	}
	switch {
	case b.probeRTTDoneAt.IsZero() && rs.BytesInFlight <= b.probeRTTCwnd():
		b.probeRTTDoneAt = now.Add(bbrProbeRTTTime)
		b.probeRTTRoundDone = false
		b.nextRoundDelivered = rs.TotalDelivered
	case !b.probeRTTDoneAt.IsZero():
		if b.roundStart {
			b.probeRTTRoundDone = true
		}
		if b.probeRTTRoundDone && !now.Before(b.probeRTTDoneAt) {
			b.minRTTStamp = now
			b.cwnd = max(b.cwnd, b.priorCwnd)
			b.priorCwnd = 0
			if b.filledPipe {
				b.enterProbeBW(now)
			} else {
				b.mode = bbrStartup
				b.pacingGain, b.cwndGain = bbrHighGain, bbrHighGain
			}
		}
	}
}

// probeRTTCwnd is the window PROBE_RTT keeps: half a BDP (BBR v2), which
// drains our queue without stalling the flow as v1's four packets do.
func (b *BBR) probeRTTCwnd() int {
	return max(b.inflight(0.5), b.minCwnd())
}

// inflight returns gain x the estimated bandwidth-delay product.
func (b *BBR) inflight(gain float64) int {
	bw := b.btlBw.get()
	if bw == 0 || b.minRTT == 0 {
		return b.cwnd
	}
	return int(gain * bw * b.minRTT.Seconds())
}

func (b *BBR) setPacingRate() {
	bw := b.btlBw.get()
	if bw == 0 {
		if b.minRTT > 0 {
			b.pacingRate = bbrHighGain * float64(b.cwnd) / b.minRTT.Seconds()
		}
		return
	}
	rate := b.pacingGain * bw * bbrPacingMargin
	if b.filledPipe || rate > b.pacingRate {
		b.pacingRate = rate
	}
}

func (b *BBR) setCwnd(rs *RateSample) {
	if b.btlBw.get() > 0 && b.minRTT > 0 {
		// Room for the ACKs the receiver holds back and the pacer's bursts.
		target := b.inflight(b.cwndGain) + 3*b.mss
		if b.filledPipe {
			b.cwnd = min(b.cwnd+rs.NewlyAcked, target)
		} else if b.cwnd < target || rs.TotalDelivered < uint64(10*b.mss) {
			b.cwnd += rs.NewlyAcked
		}
	} else {
		b.cwnd += rs.NewlyAcked
	}
	if b.inflightHi > 0 {
		b.cwnd = min(b.cwnd, b.inflightHi)
	}
	b.cwnd = max(b.cwnd, b.minCwnd())
	if b.mode == bbrProbeRTT {
		b.cwnd = min(b.cwnd, b.probeRTTCwnd())
	}
}

// maxFilter is a windowed maximum over rounds: the best, second best and
// third best samples of the window (Kathleen Nichols' algorithm, as in
// Linux's win_minmax), so that the maximum expires without a history.
type maxFilter struct {
	s [3]struct {
		round uint64
		v     float64
	}
}

func (f *maxFilter) get() float64 { return f.s[0].v }

func (f *maxFilter) reset(round uint64, v float64) {
	for i := range f.s {
		f.s[i].round, f.s[i].v = round, v
	}
}

func (f *maxFilter) update(round uint64, v float64, window uint64) {
	if v >= f.s[0].v || round-f.s[2].round > window {
		f.reset(round, v) // a new maximum, or nothing in the window
		return
	}
	if v >= f.s[1].v {
		f.s[1].round, f.s[1].v = round, v
		f.s[2] = f.s[1]
	} else if v >= f.s[2].v {
		f.s[2].round, f.s[2].v = round, v
	}
	// Expire the best samples that left the window, promoting the others.
	dt := round - f.s[0].round
	switch {
	case dt > window:
		f.s[0], f.s[1] = f.s[1], f.s[2]
		f.s[2].round, f.s[2].v = round, v
		if round-f.s[0].round > window {
			f.s[0], f.s[1] = f.s[1], f.s[2]
		}
	case f.s[1].round == f.s[0].round && dt > window/4:
		f.s[1].round, f.s[1].v = round, v
		f.s[2] = f.s[1]
	case f.s[2].round == f.s[1].round && dt > window/2:
		f.s[2].round, f.s[2].v = round, v
	}
}
