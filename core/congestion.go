package core

import "time"

// CongestionController decides how many bytes may be in flight. The core
// calls it on every send, acknowledgement and loss; implementations other
// than NewReno (CUBIC, BBR) plug in through Config.NewCongestionController.
type CongestionController interface {
	// OnPacketSent is called for every packet that counts as in flight.
	OnPacketSent(now time.Time, bytes int)
	// OnPacketAcked is called for every newly acknowledged in-flight packet.
	OnPacketAcked(now time.Time, bytes int, sentAt time.Time, rtt *RTTStats)
	// OnPacketsLost is called once per batch of packets declared lost;
	// largestLostSentAt is when the newest of them was sent.
	OnPacketsLost(now time.Time, bytes int, largestLostSentAt time.Time, persistent bool)
	// Window returns the congestion window in bytes.
	Window() int
}

// RateSample is one delivery-rate measurement, taken once per ACK frame
// that acknowledges new data (draft-cheng-iccrg-delivery-rate-estimation):
// the bytes acknowledged between the sending of the newest packet this ACK
// covers and its acknowledgement, over that interval.
type RateSample struct {
	// Delivered bytes over Interval; Interval is 0 when the sample is not
	// usable as a rate (shorter than the minimum RTT: acknowledgements
	// compressed on the way back would overstate the rate).
	Delivered int
	Interval  time.Duration
	// AppLimited: the newest packet was sent with the sender short of
	// data, so the rate may be below what the path carries.
	AppLimited bool
	// PriorDelivered is the connection's delivered count when the newest
	// acknowledged packet was sent; TotalDelivered is the count now. A
	// round trip ends when PriorDelivered reaches the TotalDelivered of
	// the round's start.
	PriorDelivered, TotalDelivered uint64
	// RTT is the newest acknowledged packet's round trip, ack delay included.
	RTT time.Duration
	// NewlyAcked and NewlyLost are the bytes this ACK acknowledged and
	// declared lost; BytesInFlight is what is in flight after it.
	NewlyAcked, NewlyLost int
	BytesInFlight         int
	// LossBursts is the connection's count so far of loss bursts: runs of
	// consecutive packet numbers declared lost (losses found by the loss
	// timer included). A queue that overflows under a paced sender loses
	// packets here and there; one burst is a link's hiccup or a batch of
	// datagrams dropped as one.
	LossBursts uint64
}

// RateObserver is implemented by a CongestionController that models the
// path from delivery-rate samples (BBR); the connection then calls
// OnRateSample after every ACK frame that acknowledges new data, after
// OnPacketAcked and OnPacketsLost for that frame.
type RateObserver interface {
	OnRateSample(now time.Time, rs *RateSample)
}

// PacingRater is implemented by a CongestionController that sets the
// pacing rate itself. PacingRate returns bytes per second; 0 means no
// rate yet, and the connection paces at 5/4 of a window per smoothed RTT.
type PacingRater interface {
	PacingRate() float64
}

// RTTStats is the connection's view of the round-trip time.
type RTTStats struct {
	Smoothed, Min, Variance, Latest time.Duration
}

// NewReno is the alternative to the default BBR: slow start, congestion
// avoidance and one window reduction per recovery period (RFC 9002 appendix B),
// with TCP Veno's rule for telling random loss from congestion. When the RTT
// shows almost no queue of ours at the bottleneck (Veno's backlog estimate,
// window x (srtt - min) / srtt, below venoBacklog datagrams), the window is
// no larger than what the measured delivery rate fills in a minimum RTT (a
// shallow queue hides in the RTT, but not in the delivery rate) and the
// recent loss rate is moderate, a loss is taken as random (a lossy radio link, say):
// the window drops to 4/5 instead of 1/2, slow start may regrow it to 5/4 of
// that (back to where it was), and acknowledgements during that recovery
// period keep growing it. A loss with a queue behind it, or a high loss rate,
// is congestion and is handled exactly as NewReno does, so the controller
// yields to competing traffic; growth above the last window is NewReno's one
// datagram per round trip. The simulator checks that at a shallow bottleneck
// queue (where a queue barely shows in the RTT) the sender's own loss rate
// stays low.
type NewReno struct {
	mss           int
	window        int
	ssthresh      int
	ackedInCA     int
	recoveryStart time.Time
	rtt           RTTStats // as of the last acknowledgement
	// recent acked and lost bytes, halved every couple of windows: the loss rate
	ackedRecent, lostRecent int
	randomEpisode           bool // the current recovery period began with a random loss

	// The delivery rate: bytes acknowledged per smoothed RTT, its recent
	// maximum decaying by 1/8 per round.
	roundStart time.Time
	roundAcked int
	maxRate    float64 // bytes per second
}

// maxRandomLossRate is the loss rate above which a loss is congestion
// whatever the RTT says (a policer drops without queueing).
const maxRandomLossRate = 0.25

// venoBacklog is the queue, in datagrams, below which a loss counts as random.
const venoBacklog = 3

// initialWindow is the congestion window a connection starts with, as in
// RFC 9002 section 7.2: ten datagrams, at most max(14720 bytes, two).
func initialWindow(maxDatagramSize int) int {
	return min(10*maxDatagramSize, max(2*maxDatagramSize, 14720))
}

// NewNewReno returns a NewReno controller for datagrams of maxDatagramSize.
func NewNewReno(maxDatagramSize int) CongestionController {
	return &NewReno{
		mss:      maxDatagramSize,
		window:   initialWindow(maxDatagramSize),
		ssthresh: int(^uint(0) >> 1),
	}
}

func (n *NewReno) minWindow() int { return 2 * n.mss }

// OnPacketSent implements CongestionController.
func (n *NewReno) OnPacketSent(time.Time, int) {}

// OnPacketAcked implements CongestionController.
func (n *NewReno) OnPacketAcked(now time.Time, bytes int, sentAt time.Time, rtt *RTTStats) {
	if rtt != nil {
		n.rtt = *rtt
	}
	n.roundAcked += bytes
	if n.roundStart.IsZero() {
		n.roundStart = now
	} else if elapsed := now.Sub(n.roundStart); n.rtt.Smoothed > 0 && elapsed >= n.rtt.Smoothed {
		n.maxRate = max(float64(n.roundAcked)/elapsed.Seconds(), n.maxRate*7/8)
		n.roundStart, n.roundAcked = now, 0
	}
	n.ackedRecent += bytes
	if n.ackedRecent > 2*n.window {
		n.ackedRecent /= 2
		n.lostRecent /= 2
	}
	if !sentAt.After(n.recoveryStart) && !n.recoveryStart.IsZero() && !n.randomEpisode {
		return // sent before the congestion that started recovery
	}
	if n.window < n.ssthresh {
		n.window += bytes
		return
	}
	n.ackedInCA += bytes
	if n.ackedInCA >= n.window {
		n.ackedInCA -= n.window
		n.window += n.mss
	}
}

// OnPacketsLost implements CongestionController.
func (n *NewReno) OnPacketsLost(now time.Time, bytes int, largestLostSentAt time.Time, persistent bool) {
	n.lostRecent += bytes
	if persistent {
		n.randomEpisode = false
		n.window = n.minWindow()
		n.recoveryStart = now
		return
	}
	if !n.recoveryStart.IsZero() && !largestLostSentAt.After(n.recoveryStart) {
		return // already reduced for this loss episode
	}
	n.recoveryStart = now
	n.randomEpisode = n.noQueue() && n.withinDeliveryRate() &&
		float64(n.lostRecent) < maxRandomLossRate*float64(n.lostRecent+n.ackedRecent)
	if n.randomEpisode {
		n.window = max(n.window*4/5, n.minWindow())
		n.ssthresh = n.window * 5 / 4
	} else {
		n.ssthresh = max(n.window/2, n.minWindow())
		n.window = n.ssthresh
	}
	n.ackedInCA = 0
}

// noQueue reports whether the RTT shows no standing queue of ours: the
// window's share of the RTT above the minimum, in datagrams, is small.
func (n *NewReno) noQueue() bool {
	srtt, base := n.rtt.Smoothed, n.rtt.Min
	if srtt <= 0 || base <= 0 {
		return false // no samples yet: assume congestion
	}
	backlog := float64(n.window) * float64(srtt-base) / float64(srtt)
	return backlog < venoBacklog*float64(n.mss)
}

// withinDeliveryRate reports whether the window is at most 5/4 of what the
// recent delivery rate fills in a minimum RTT (plus venoBacklog datagrams):
// the path still delivers what the window sends.
func (n *NewReno) withinDeliveryRate() bool {
	if n.maxRate <= 0 || n.rtt.Min <= 0 {
		return false
	}
	bdp := n.maxRate * n.rtt.Min.Seconds()
	return float64(n.window) <= bdp*5/4+venoBacklog*float64(n.mss)
}

// Window implements CongestionController.
func (n *NewReno) Window() int { return n.window }

// pacer is a token bucket: it refills at the pacing rate and holds a burst
// of a few datagrams (more at high rates, where timers are coarse next to a
// datagram's time on the wire), so that a sender never dumps a whole window
// into a queue.
//
// A sender the pacer held back comes back when its pacing timer fires, and
// on a loaded machine that is often later than asked: a millisecond or two
// after the due time under a load of 7-15 on 2 cores (rudpbench longfat),
// where a datagram of a 100 Mbit/s path is due every 0.12 ms. The bucket
// alone would drop what it earned beyond its burst while it waited to be
// woken, and the sender would run below its pacing rate: a fifth of the
// bytes sent at load 15, which BBR then measures as a slower path. So a
// call that ends a wait (late) may spend up to pacingLateCredit more of
// the rate than the burst: what a punctual timer would have sent, no more,
// and never more than the rate over any interval but by that bounded
// burst. Linux's TCP pacing makes up for the same lateness ("OS jitter",
// tcp_update_skb_after_send). A simulated timer is never late, so the
// simulator's runs are the same either way.
type pacer struct {
	tokens float64 // bytes that may be sent now
	last   time.Time
}

// ready returns when a packet of size bytes may leave (now if already),
// refilling at rate bytes per second up to burst bytes. late says this call
// ends a wait the pacer set (see pacer): it may refill up to
// pacingLateCredit of the rate beyond the burst. keep says an earlier call
// at this same instant was such a call: what it allowed is not cut back to
// the burst (nothing was earned since).
func (p *pacer) ready(now time.Time, size int, rate, burst float64, late, keep bool) time.Time {
	switch {
	case p.last.IsZero():
		p.tokens = burst
	case now.After(p.last):
		elapsed := now.Sub(p.last)
		p.tokens += elapsed.Seconds() * rate
		limit := burst
		if late {
			limit += min(elapsed, pacingLateCredit).Seconds() * rate
		}
		p.tokens = min(p.tokens, limit)
	case !keep:
		p.tokens = min(p.tokens, burst)
	}
	p.last = now
	if p.tokens >= float64(size) {
		return now
	}
	wait := time.Duration((float64(size) - p.tokens) / rate * float64(time.Second))
	return now.Add(max(wait, time.Microsecond))
}

func (p *pacer) spend(size int) { p.tokens -= float64(size) }

// pacingBurstTime is how much of the pacing rate a controller-set pacer
// may send at once (at least pacingMinBurst datagrams).
const (
	pacingBurstTime = time.Millisecond
	pacingMinBurst  = 10
	// pacingLateCredit bounds what a late wake-up may make up for
	// beyond the burst (see pacer).
	pacingLateCredit = time.Millisecond
)
