package core

import (
	"time"
)

// Loss detection and acknowledgement, in the manner of RFC 9002.
const (
	packetThreshold = 3 // a packet this many below an acked one is lost
	maxPTOBackoff   = 8 // probe timeouts double at most this many times
)

// recovery is loss recovery (PROTOCOL.md §9, §10, §12; RFC 9002): the
// packet numbers we send, the packets in flight (sent), the RTT estimate,
// the congestion controller, the pacer and the delivery rate, and the
// probe timeout's backoff. Its job, and nothing more: account for each
// packet as sent, acknowledged or lost (onSent, onAck, onAcked, onLost,
// discard), find the lost ones (detectLoss) and the oldest one a probe
// sends again (oldestInFlight), say how long after the last packet the
// probe timer fires (probeTimeout) and whether the window and the pacer
// let a packet go (sendAllowed). What a packet carried, and what its fate
// means to the other parts, is the Conn's (onPacketAcked, onPacketLost,
// requeue).
type recovery struct {
	nextPN               uint64
	sent                 sentList
	largestAcked         uint64
	bytesInFlight        int
	elicitingInFlight    int
	lastAckElicitingSent time.Time
	ptoCount             int
	// peerMaxAckDelay is how long the peer may hold an acknowledgement
	// back (its HELLO's MaxAckDelay).
	peerMaxAckDelay time.Duration
	rtt             rttEstimator
	cc              CongestionController
	pacer           pacer
	pacingRater     PacingRater  // cc, if it sets the pacing rate
	rateObserver    RateObserver // cc, if it takes delivery-rate samples
	// delivered is the bytes acknowledged so far: every packet remembers
	// it (sentPacket.delivered), and a rate sample is the growth from there.
	delivered uint64
	// rate is the delivery-rate estimator's state while packets are in
	// flight: made by the first send when the controller takes samples,
	// dropped by trimIdle with nothing in flight (the next send after
	// an idle period starts a fresh interval anyway), so that an idle
	// connection does not carry its 200 bytes.
	rate *deliveryRate
	// lossBursts counts runs of consecutive packet numbers declared lost
	// (handshake packets aside); lastLostPN is the newest of them.
	lossBursts uint64
	lastLostPN uint64
	anyAcked   bool
	// pacerWaiting: the pacer held the last packet back (a pacing timer
	// is set): its next call, at a later instant, may make up for the
	// timer's lateness (pacer). pacerCredit: a call at the pacer's last
	// instant did.
	pacerWaiting, pacerCredit bool
}

func (c *Conn) initRecovery(newCC func(maxDatagramSize int) CongestionController) {
	r := &c.recovery
	r.nextPN = uint64(c.cfg.InitialSequence)
	r.sent.base = r.nextPN
	r.peerMaxAckDelay = 25 * time.Millisecond // until the peer's HELLO says
	r.rtt = newRTTEstimator(c.cfg.InitialRTT)
	// The controller counts in datagrams of the largest size a path may
	// grow to: its window never falls below a few of them, so a datagram
	// or a probe of any size the search reaches always fits.
	r.cc = newCC(c.cfg.MaxDatagramSize)
	r.pacingRater, _ = r.cc.(PacingRater)
	r.rateObserver, _ = r.cc.(RateObserver)
}

// deliveryRate is the connection's delivery-rate estimator
// (draft-cheng-iccrg-delivery-rate-estimation): every packet remembers how
// much had been delivered when it was sent, so the acknowledgement of the
// newest packet in an ACK gives the rate over the interval it spanned.
type deliveryRate struct {
	deliveredAt time.Time // when recovery.delivered last grew
	firstSentAt time.Time // send time of the packet most recently acknowledged
	// the sample being built from one ACK frame
	sample      RateSample
	sampling    bool      // the ACK acknowledged something: newest* are set
	newestSent  time.Time // the newest acknowledged packet's send time
	newestFirst time.Time
	newestAt    time.Time // newest.deliveredAt
}

// pto is the probe timeout without backoff: how long an acknowledgement
// may take.
func (r *recovery) pto() time.Duration { return r.rtt.pto(r.peerMaxAckDelay) }

func (r *recovery) rttStats() RTTStats {
	return RTTStats{Smoothed: r.rtt.smoothed, Min: r.rtt.min, Variance: r.rtt.variance, Latest: r.rtt.latest}
}

// onSent records p, an ack-eliciting packet sent at now, as in flight;
// pending says whether data waits to be sent (then p is not app-limited),
// pace whether the pacer is in use.
func (r *recovery) onSent(now time.Time, p *sentPacket, pending, pace bool) {
	r.sent.add(p)
	p.appLimited = 2*(r.bytesInFlight+p.size) < r.cc.Window() && !pending
	if r.rateObserver != nil {
		if r.rate == nil {
			r.rate = new(deliveryRate)
		}
		if r.bytesInFlight == 0 {
			// Nothing in flight: the next interval starts now, not at the
			// last acknowledgement before an idle period.
			r.rate.firstSentAt, r.rate.deliveredAt = now, now
		}
		p.deliveredAt, p.firstSentAt = r.rate.deliveredAt, r.rate.firstSentAt
	}
	p.delivered = r.delivered
	r.bytesInFlight += p.size
	r.elicitingInFlight++
	r.lastAckElicitingSent = now
	r.cc.OnPacketSent(now, p.size)
	// A path MTU probe sent while no data waits spends nothing of the
	// pacer's budget: charged its size (64 KiB over loopback), it held
	// back the data the application wrote next until the pacer had earned
	// it back, milliseconds on a new connection, whose rate is still low
	// (and in Manual mode until the application next drove the socket).
	// Sent while data waits (a bulk transfer), it is paced at its size as
	// that data is: a burst of both could overflow a bottleneck's queue.
	if pace && (!p.pathProbe || pending) {
		r.pacer.spend(p.size)
	}
}

// onAck walks an ACK frame's ranges (largest unwrapped, ackDelay the
// delay the RTT sample allows for) and hands each packet in flight it
// acknowledges, sealed at level at most maxLevel, to acked, updating the
// RTT estimate from the largest. It
// returns the bytes acknowledged, and whether any of it was more than a
// PING (only that resets the probe timeout's backoff: a flow-blocked sender
// whose PING probes are answered keeps backing off).
func (r *recovery) onAck(now time.Time, a *ackFrame, largest uint64, ackDelay time.Duration, maxLevel keyLevel, acked func(*sentPacket)) (ackedBytes int, progress bool) {
	if r.rate != nil {
		r.rate.sampling = false
	}
	for _, rg := range a.ranges {
		if rg.hi > largest {
			break
		}
		hi := largest - rg.lo
		lo := largest - rg.hi
		if hi < r.sent.base {
			break // ranges go down; everything below is settled
		}
		lo = max(lo, r.sent.base)
		for pn := lo; pn <= hi; pn++ {
			p := r.sent.at(pn)
			if p == nil || p.level > maxLevel {
				continue
			}
			if pn == largest {
				r.rtt.update(now.Sub(p.sentAt), ackDelay)
			}
			ackedBytes += p.size
			if !p.ping || len(p.frags) > 0 || len(p.ctl) > 0 || p.hello || p.close {
				progress = true
			}
			acked(p)
		}
	}
	if !r.anyAcked || largest > r.largestAcked {
		r.largestAcked = largest
		r.anyAcked = true
	}
	if progress {
		r.ptoCount = 0
	}
	return ackedBytes, progress
}

// onAcked accounts for p, acknowledged at now (its record is still to be
// removed from sent): bytes in flight, the delivery rate and the
// controller, which reads the RTT estimate from rtt (a field of the
// Conn's, so that no call allocates).
func (r *recovery) onAcked(now time.Time, p *sentPacket, rtt *RTTStats) {
	r.bytesInFlight -= p.size
	r.elicitingInFlight--
	r.delivered += uint64(p.size)
	if rt := r.rate; rt != nil {
		rt.deliveredAt = now
		// The sample follows the newest packet acknowledged: most
		// delivered when it was sent, the later send on a tie (ranges are
		// walked newest range first, lowest number first within each).
		if !rt.sampling || p.delivered > rt.sample.PriorDelivered ||
			(p.delivered == rt.sample.PriorDelivered && !p.sentAt.Before(rt.newestSent)) {
			// The packet is recycled next: keep what the sample needs.
			rt.sampling = true
			rt.sample.PriorDelivered = p.delivered
			rt.sample.AppLimited = p.appLimited
			rt.newestSent, rt.newestFirst, rt.newestAt = p.sentAt, p.firstSentAt, p.deliveredAt
			rt.firstSentAt = p.sentAt
		}
	}
	if !p.appLimited {
		*rtt = r.rttStats()
		r.cc.OnPacketAcked(now, p.size, p.sentAt, rtt)
	}
}

// onAckDone finishes an ACK frame's processing: a delivery-rate sample to
// the controller, if it takes them and the frame acknowledged something.
func (r *recovery) onAckDone(now time.Time, ackedBytes, lostBytes int) {
	if r.rateObserver != nil && ackedBytes > 0 && r.rate != nil && r.rate.sampling {
		r.rateSample(now, ackedBytes, lostBytes)
		r.rateObserver.OnRateSample(now, &r.rate.sample)
	}
}

// rateSample completes the delivery-rate sample of the ACK just processed.
func (r *recovery) rateSample(now time.Time, acked, lost int) {
	rt := r.rate
	s := &rt.sample
	s.TotalDelivered = r.delivered
	s.Delivered = int(r.delivered - s.PriorDelivered)
	s.RTT = now.Sub(rt.newestSent)
	s.NewlyAcked, s.NewlyLost = acked, lost
	s.LossBursts = r.lossBursts
	s.BytesInFlight = r.bytesInFlight
	// The interval is the longer of the send and ack phases, so that
	// neither bursty sending nor compressed acknowledgements inflate it.
	s.Interval = max(rt.newestSent.Sub(rt.newestFirst), now.Sub(rt.newestAt))
	if s.Interval < r.rtt.min {
		s.Interval = 0
	}
	rt.sampling = false
}

// detectLoss hands to lost the packets below the largest acknowledged that
// are packetThreshold older or were sent a loss delay ago (RFC 9002
// section 6.1), and tells the controller. It returns the bytes declared
// lost (handshake packets and path MTU probes aside) and when the oldest
// packet left becomes lost by time (zero if none).
func (r *recovery) detectLoss(now time.Time, lost func(*sentPacket)) (lostBytes int, next time.Time) {
	delay := r.rtt.lossDelay()
	var largestLostAt time.Time
	for pn := r.sent.base; pn < r.largestAcked && pn < r.nextPN; pn++ {
		p := r.sent.at(pn)
		if p == nil {
			continue
		}
		if r.largestAcked-pn >= packetThreshold || !p.sentAt.Add(delay).After(now) {
			// A handshake loss says nothing about the path's capacity yet,
			// and a path MTU probe's loss only that it was too large.
			if !p.hello && !p.pathProbe {
				lostBytes += p.size
				if r.lossBursts == 0 || pn != r.lastLostPN+1 {
					r.lossBursts++
				}
				r.lastLostPN = pn
				if p.sentAt.After(largestLostAt) {
					largestLostAt = p.sentAt
				}
			}
			lost(p)
			continue
		}
		if at := p.sentAt.Add(delay); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if lostBytes > 0 {
		r.cc.OnPacketsLost(now, lostBytes, largestLostAt, false)
	}
	return lostBytes, next
}

// onLost accounts for p, declared lost (its record is still to be removed
// from sent).
func (r *recovery) onLost(p *sentPacket) {
	r.bytesInFlight -= p.size
	r.elicitingInFlight--
}

// discard forgets every packet in flight (the connection ended, or a Retry
// made its first flight void), handing each to forget.
func (r *recovery) discard(forget func(*sentPacket)) {
	r.sent.clear(r.nextPN, forget)
	r.bytesInFlight = 0
	r.elicitingInFlight = 0
}

// inFlight reports whether an ack-eliciting packet is in flight.
func (r *recovery) inFlight() bool { return r.elicitingInFlight > 0 }

// probeTimeout is how long after the last ack-eliciting packet the probe
// timer fires: a PTO, doubled per consecutive timeout up to backoff times.
func (r *recovery) probeTimeout(backoff int) time.Duration {
	return r.rtt.pto(r.ptoAckDelay()) << min(r.ptoCount, backoff)
}

// ptoAckDelay is the acknowledgement delay the probe timeout allows for.
// The peer acknowledges every second ack-eliciting packet at once, so with
// two or more in flight an acknowledgement is not held back for its max ack
// delay unless one was lost, and then a probe (two packets, which the peer
// acknowledges at once) costs less than waiting: RFC 9002 always adds the
// max ack delay, which on a LAN or loopback path (RTT tens of µs, default
// delay 1 ms) made every lost acknowledgement of a window-limited flight a
// stall of over a millisecond. A lone packet in flight still waits for it.
func (r *recovery) ptoAckDelay() time.Duration {
	if r.elicitingInFlight >= 2 {
		return 0
	}
	return r.peerMaxAckDelay
}

// oldestInFlight returns the oldest packet in flight that is not a path
// MTU probe (nil if none), and whether path MTU probes are all there is.
func (r *recovery) oldestInFlight() (oldest *sentPacket, probesOnly bool) {
	for pn := r.sent.base; pn < r.nextPN; pn++ {
		if p := r.sent.at(pn); p != nil {
			if p.pathProbe {
				probesOnly = true
				continue
			}
			return p, false
		}
	}
	return nil, probesOnly
}

// backOff: a probe timeout fired; the next one waits twice as long.
func (r *recovery) backOff() { r.ptoCount++ }

// resetBackoff forgets the probe timeout's backoff.
func (r *recovery) resetBackoff() { r.ptoCount = 0 }

// probesSent restarts the probe timer's count at now, when probes (or a
// PING) are about to go.
func (r *recovery) probesSent(now time.Time) { r.lastAckElicitingSent = now }

// takePN returns the number of the packet being sent and moves to the next.
func (r *recovery) takePN() uint64 {
	pn := r.nextPN
	r.nextPN++
	return pn
}

// pacing returns the pacer's rate in bytes per second and its burst in
// bytes, for datagrams of mss bytes: the controller's rate if it sets one,
// else 5/4 of the window per smoothed RTT with a burst of a quarter window.
func (r *recovery) pacing(mss int) (rate, burst float64) {
	if r.pacingRater != nil {
		if rt := r.pacingRater.PacingRate(); rt > 0 {
			return rt, max(rt*pacingBurstTime.Seconds(), float64(pacingMinBurst*mss))
		}
	}
	window := r.cc.Window()
	srtt := r.rtt.smoothed
	if srtt <= 0 {
		srtt = time.Microsecond
	}
	return 1.25 * float64(window) / srtt.Seconds(), float64(max(window/4, 10*1500))
}

// sendAllowed reports whether the congestion window and the pacer (if
// pace) let an ack-eliciting packet of size bytes go now; if only the
// pacer holds it back, wait is when it may.
func (r *recovery) sendAllowed(now time.Time, size, mss int, pace bool) (ok bool, wait time.Time) {
	if r.bytesInFlight+size > r.cc.Window() {
		// The window, not the pacer, holds it back.
		r.pacerWaiting, r.pacerCredit = false, false
		return false, time.Time{} // wait for acknowledgements
	}
	if pace {
		rate, burst := r.pacing(mss)
		later := r.pacer.last.IsZero() || now.After(r.pacer.last)
		late, keep := later && r.pacerWaiting, !later && r.pacerCredit
		at := r.pacer.ready(now, size, rate, burst, late, keep)
		r.pacerCredit = late || keep
		if r.pacerWaiting = at.After(now); r.pacerWaiting {
			return false, at
		}
	}
	return true, time.Time{}
}

// The Conn's side of loss recovery: what a packet's fate means to the
// parts that filled it.

// recycleSentPacket gives p's record back to the pool (not while lean).
func (c *Conn) recycleSentPacket(p *sentPacket) {
	limit := c.maxFrags
	if c.lean {
		limit = 0
	}
	c.sent.recycle(p, limit)
}

// onPacketSent records an ack-eliciting packet as in flight.
func (c *Conn) onPacketSent(now time.Time, p *sentPacket) {
	c.recovery.onSent(now, p, c.HasPendingData(), !c.cfg.DisablePacing)
	c.armPTO()
	c.armHeartbeat()
	c.traceMetrics()
}

// handleAck processes an ACK frame received at now.
func (c *Conn) handleAck(now time.Time, a *ackFrame) verdict {
	largest := unwrap32(c.nextPN, a.largest)
	if largest >= c.nextPN {
		return c.violate(now, "ACK of a packet never sent")
	}
	if a.maxData > c.peerMaxData {
		c.peerMaxData = a.maxData
	}
	delay := time.Duration(min(a.delay, uint64(c.peerMaxAckDelay/time.Microsecond))) * time.Microsecond
	if !c.life.established() {
		delay = 0
	}
	// An ACK in a plaintext packet of a protected connection acknowledges
	// only plaintext packets: it could be anyone's.
	maxLevel := levelApp
	if c.sec != nil {
		maxLevel = c.sec.rxLevel
	}
	ackedBytes, _ := c.recovery.onAck(now, a, largest, delay, maxLevel, func(p *sentPacket) { c.onPacketAcked(now, p) })
	if ackedBytes > 0 {
		c.unreachableProbes = 0 // the peer is there: the report was wrong or stale
	}
	lostBytes := c.detectLoss(now)
	c.recovery.onAckDone(now, ackedBytes, lostBytes)
	c.traceMetrics()
	c.armPTO()
	c.maybeSendClose(now)
	return applied
}

// onPacketAcked tells each part that filled p that it was acknowledged.
func (c *Conn) onPacketAcked(now time.Time, p *sentPacket) {
	// (The estimate goes to the controller through stats.RTT, which Stats
	// fills afresh on its copy: a field, so no allocation per ack, and no
	// second 32-byte field for it in every Conn.)
	c.tracePacketAcked(p)
	c.recovery.onAcked(now, p, &c.stats.RTT)
	for _, f := range p.frags {
		f.inflight--
		if f.redund != 0 {
			c.onCarrierAcked(f, p)
		}
		c.onFragmentAcked(f)
		c.maybeFreeFragment(f)
	}
	for _, r := range p.ctl {
		c.onCtlAcked(r)
	}
	if p.hello {
		c.life.onHelloAcked()
	}
	if c.sec != nil {
		c.sec.onSealedAcked(p.level, p.pn)
	}
	c.onCryptoAcked(now, p)
	c.onLargeAcked(p.pn, p.size)
	if p.pathProbe {
		c.onProbeAcked(now, p.size)
	}
	if p.close {
		c.life.onCloseAcked()
	}
	if p.fin {
		c.life.onFinAcked()
	}
	c.sent.remove(p.pn, c.nextPN)
	c.recycleSentPacket(p)
	if c.life.closeAcked() {
		c.terminate(nil) // (an abort ends with its reason)
	}
}

// detectLoss runs loss detection (recovery.detectLoss) and arms the loss
// timer for the packets not yet lost. It returns the bytes declared lost.
func (c *Conn) detectLoss(now time.Time) int {
	c.timers.stop(timerLoss)
	if !c.anyAcked || c.life.ended() {
		return 0
	}
	lostBytes, next := c.recovery.detectLoss(now, func(p *sentPacket) { c.onPacketLost(now, p) })
	if !next.IsZero() {
		c.timers.set(timerLoss, next)
	}
	return lostBytes
}

// onPacketLost tells each part that filled p that it was lost.
func (c *Conn) onPacketLost(now time.Time, p *sentPacket) {
	c.tracePacketLost(p)
	c.recovery.onLost(p)
	if p.pathProbe {
		c.onProbeLost(now, p.size) // nothing to send again
	} else {
		c.stats.PacketsLost++
		c.requeue(p, false)
		c.onLargeLost(now, p.pn, p.size)
	}
	c.sent.remove(p.pn, c.nextPN)
	c.recycleSentPacket(p)
}

// requeue puts what p carried that is still owed back on the queues.
// front: a probe, which goes before other retransmissions.
func (c *Conn) requeue(p *sentPacket, probe bool) {
	for i := len(p.frags) - 1; i >= 0; i-- {
		f := p.frags[i]
		resend := f.msg.guarantee == Delivery // (None/Order fragments are here only when sent twice)
		if !probe {
			f.inflight--
			if f.redund != 0 && !c.onCarrierLost(f, p) {
				resend = false // the other packet that carried it settles it
			}
		}
		if resend && !f.acked && !f.queued {
			f.queued = true
			if probe {
				c.retransmit.pushFront(f)
			} else {
				c.retransmit.push(f) // losses are found oldest first: order kept
			}
		}
		c.maybeFreeFragment(f)
	}
	for _, r := range p.ctl {
		c.onCtlLost(r)
	}
	if p.hello {
		c.life.onHelloLost()
	}
	c.onCryptoLost(p)
	if p.close {
		c.life.onCloseLost()
	}
	if p.fin {
		c.life.onFinLost()
	}
}

// armPTO sets the probe timer (recovery.probeTimeout) while anything is
// in flight or owed.
func (c *Conn) armPTO() {
	if c.life.ended() {
		return
	}
	if !c.recovery.inFlight() && !c.creditStarved() && c.life.established() {
		c.timers.stop(timerPTO)
		return
	}
	backoff := maxPTOBackoff
	if c.life.closeSent() {
		backoff = closeBackoff
	}
	c.timers.setAfter(timerPTO, c.recovery.lastAckElicitingSent, c.recovery.probeTimeout(backoff))
}

// onProbeTimeout sends up to two probes carrying the oldest unacknowledged
// data (or a PING), without waiting for the congestion window.
func (c *Conn) onProbeTimeout(now time.Time) {
	if c.life.closeGivenUp() {
		// Every copy of our CLOSE went unanswered: the peer is gone (or
		// closed and lingered out). Everything we sent had been acknowledged.
		c.terminate(nil)
		return
	}
	// The oldest packet in flight that is not a path MTU probe: its
	// contents go again, and it tells whether the path may be a black hole.
	// A probe is never resent; its fate is settled by loss detection once
	// anything later is acknowledged.
	oldest, probesOnly := c.recovery.oldestInFlight()
	if probesOnly && !c.creditStarved() && c.life.established() && !c.life.closeSent() {
		// Only probes in flight: they may be too large, which says
		// nothing of the path's health. A PING asks for the
		// acknowledgement that settles them; no backoff.
		c.probesOwed = max(c.probesOwed, 1)
		c.recovery.probesSent(now)
		c.armPTO()
		return
	}
	if c.unreachableProbes != 0 && c.pathValidated() {
		// (On an address not yet validated what may be sent is bounded
		// (core/path.go): silence there proves nothing.)
		if c.unreachableProbes >= unreachablePTOs {
			c.peerGone(ErrUnreachable)
			return
		}
		c.unreachableProbes++
	}
	c.recovery.backOff()
	c.stats.ProbesSent++
	c.probesOwed = 2
	if oldest != nil {
		if c.ptoCount >= pmtuBlackHolePTOs && oldest.size > BaseDatagramSize {
			// Nothing came back for two timeouts, and the oldest packet
			// is one a smaller path would drop: a black hole, maybe, or a
			// stall. A small probe tells them apart (suspectBlackHole).
			c.suspectBlackHole()
		}
		c.requeue(oldest, true)
	}
	// During the handshake, every handshake byte not yet acknowledged goes
	// again, at its level: the oldest packet may be one whose loss says
	// nothing of them (our first HELLO alone), and packets of a level the
	// peer has no keys for yet would not be read.
	c.onCryptoProbe()
	// Whatever the oldest packet was, the peer must hear our CLOSE; if
	// the peer closed too, with the ACK of its CLOSE (which may be what
	// went missing).
	c.life.onCloseLost()
	if c.life.closeOwed() && c.life.peerClosed() {
		c.acks.sendNow()
	}
	// The next probe timer counts from the probes about to be sent.
	c.recovery.probesSent(now)
	c.armPTO()
}

// discardSent forgets every packet in flight (the connection ended).
func (c *Conn) discardSent() { c.recovery.discard(c.forgetSent) }

// forgetSent releases what p, no longer tracked, held of the send queues.
func (c *Conn) forgetSent(p *sentPacket) {
	for _, f := range p.frags {
		f.inflight--
		c.maybeFreeFragment(f)
	}
	c.recycleSentPacket(p)
}
