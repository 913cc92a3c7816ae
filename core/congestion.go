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

// RTTStats is the connection's view of the round-trip time.
type RTTStats struct {
	Smoothed, Min, Variance, Latest time.Duration
}

// NewReno is the default congestion controller: slow start, congestion
// avoidance and one window reduction per recovery period (RFC 9002 appendix B).
type NewReno struct {
	mss           int
	window        int
	ssthresh      int
	ackedInCA     int
	recoveryStart time.Time
}

// NewNewReno returns a NewReno controller for datagrams of maxDatagramSize.
func NewNewReno(maxDatagramSize int) CongestionController {
	return &NewReno{
		mss:      maxDatagramSize,
		window:   min(10*maxDatagramSize, max(2*maxDatagramSize, 14720)),
		ssthresh: int(^uint(0) >> 1),
	}
}

func (n *NewReno) minWindow() int { return 2 * n.mss }

// OnPacketSent implements CongestionController.
func (n *NewReno) OnPacketSent(time.Time, int) {}

// OnPacketAcked implements CongestionController.
func (n *NewReno) OnPacketAcked(_ time.Time, bytes int, sentAt time.Time, _ *RTTStats) {
	if !sentAt.After(n.recoveryStart) && !n.recoveryStart.IsZero() {
		return // sent before the loss that started recovery
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
func (n *NewReno) OnPacketsLost(now time.Time, _ int, largestLostSentAt time.Time, persistent bool) {
	if persistent {
		n.window = n.minWindow()
		n.recoveryStart = now
		return
	}
	if !n.recoveryStart.IsZero() && !largestLostSentAt.After(n.recoveryStart) {
		return // already reduced for this loss episode
	}
	n.recoveryStart = now
	n.ssthresh = max(n.window/2, n.minWindow())
	n.window = n.ssthresh
	n.ackedInCA = 0
}

// Window implements CongestionController.
func (n *NewReno) Window() int { return n.window }

// pacer spreads a window's worth of packets over a round trip: a token
// bucket refilled at 1.25 x window / smoothed RTT, holding a burst of a few
// datagrams, so that a sender never dumps a whole window into a queue.
type pacer struct {
	tokens   float64 // bytes that may be sent now
	capacity float64
	last     time.Time
}

// ready returns when a packet of size bytes may leave (now if already).
func (p *pacer) ready(now time.Time, size int, window int, srtt time.Duration) time.Time {
	p.refill(now, window, srtt)
	if p.tokens >= float64(size) {
		return now
	}
	rate := p.rate(window, srtt)
	wait := time.Duration((float64(size) - p.tokens) / rate * float64(time.Second))
	return now.Add(max(wait, time.Microsecond))
}

func (p *pacer) rate(window int, srtt time.Duration) float64 {
	if srtt <= 0 {
		srtt = time.Microsecond
	}
	return 1.25 * float64(window) / srtt.Seconds()
}

func (p *pacer) refill(now time.Time, window int, srtt time.Duration) {
	p.capacity = float64(max(window/4, 10*1500))
	if p.last.IsZero() {
		p.tokens = p.capacity
	} else if now.After(p.last) {
		p.tokens += now.Sub(p.last).Seconds() * p.rate(window, srtt)
	}
	p.tokens = min(p.tokens, p.capacity)
	p.last = now
}

func (p *pacer) spend(size int) { p.tokens -= float64(size) }
