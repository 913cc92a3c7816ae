package core

import (
	"time"
)

// Loss detection and acknowledgement, in the manner of RFC 9002.
const (
	packetThreshold = 3 // a packet this many below an acked one is lost
	maxPTOBackoff   = 8 // probe timeouts double at most this many times
)

// sentPacket is what we remember of an ack-eliciting packet in flight.
type sentPacket struct {
	pn        uint64
	sentAt    time.Time
	size      int
	eliciting bool
	hello     bool
	close     bool
	fin       bool // our STREAM_FIN for stream 0
	ping      bool
	// pathProbe: a path MTU probe (pmtu.go); its loss is neither
	// congestion nor lost data.
	pathProbe bool
	// appLimited: sent with the window far from full; its acknowledgement
	// says nothing about the path's capacity and must not grow the window.
	appLimited bool
	// The connection's delivery-rate state when it was sent: bytes
	// acknowledged so far, when that count last grew, and when the packet
	// most recently acknowledged by then was sent.
	delivered   uint64
	deliveredAt time.Time
	firstSentAt time.Time
	frags       []*outFragment // Delivery fragments it carries
}

func (p *sentPacket) ackEliciting() bool { return p.eliciting }

// recovery is the loss-recovery half: sent packets, RTT, congestion.
type recovery struct {
	nextPN uint64
	// sentRing holds in-flight packets indexed by pn-sentBase; acked and
	// lost ones are nil, and sentBase advances past them.
	sentRing             []*sentPacket
	sentHead             int
	sentBase             uint64
	sentFree             []*sentPacket
	largestAcked         uint64
	bytesInFlight        int
	elicitingInFlight    int
	lastAckElicitingSent time.Time
	lastElicitingRecv    time.Time
	ptoCount             int
	rtt                  rttEstimator
	cc                   CongestionController
	pacer                pacer
	pacingRater          PacingRater  // cc, if it sets the pacing rate
	rateObserver         RateObserver // cc, if it takes delivery-rate samples
	rate                 deliveryRate
	// lossBursts counts runs of consecutive packet numbers declared lost
	// (handshake packets aside); lastLostPN is the newest of them.
	lossBursts uint64
	lastLostPN uint64

	lastRecv time.Time
	// (The flags together, in one word.)
	anyAcked bool
	// lean: trimIdle ran and no message moved since; records and scratch
	// the heartbeat exchange uses are dropped after use, not kept.
	lean bool
	// unreachableProbes is nonzero while a port-unreachable report about
	// the peer awaits confirmation: 1 from the report, plus one per probe
	// timeout since; any acknowledgement clears it (see HandleUnreachable).
	unreachableProbes uint8
}

func (c *Conn) initRecovery(newCC func(maxDatagramSize int) CongestionController) {
	r := &c.recovery
	r.nextPN = uint64(c.cfg.InitialSequence)
	r.sentBase = r.nextPN
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
	delivered   uint64    // bytes acknowledged
	deliveredAt time.Time // when delivered last grew
	firstSentAt time.Time // send time of the packet most recently acknowledged
	// the sample being built from one ACK frame
	sample      RateSample
	sampling    bool      // the ACK acknowledged something: newest* are set
	newestSent  time.Time // the newest acknowledged packet's send time
	newestFirst time.Time
	newestAt    time.Time // newest.deliveredAt
}

func (c *Conn) newSentPacket() *sentPacket {
	if k := len(c.sentFree); k > 0 {
		p := c.sentFree[k-1]
		c.sentFree = c.sentFree[:k-1]
		return p
	}
	return &sentPacket{}
}

func (c *Conn) recycleSentPacket(p *sentPacket) {
	frags := p.frags[:0]
	*p = sentPacket{frags: frags}
	if len(c.sentFree) < c.maxFrags && !c.lean {
		c.sentFree = append(c.sentFree, p)
	}
}

// onPacketSent records an ack-eliciting packet as in flight.
func (c *Conn) onPacketSent(now time.Time, p *sentPacket) {
	// sentRing is contiguous in pn from sentBase; fill skipped numbers
	// (ack-only packets) with nil.
	for c.sentBase+uint64(len(c.sentRing)-c.sentHead) < p.pn {
		c.sentRing = append(c.sentRing, nil)
	}
	c.sentRing = append(c.sentRing, p)
	p.appLimited = 2*(c.bytesInFlight+p.size) < c.cc.Window() && !c.HasPendingData()
	if c.bytesInFlight == 0 {
		// Nothing in flight: the next interval starts now, not at the
		// last acknowledgement before an idle period.
		c.rate.firstSentAt, c.rate.deliveredAt = now, now
	}
	p.delivered, p.deliveredAt, p.firstSentAt = c.rate.delivered, c.rate.deliveredAt, c.rate.firstSentAt
	c.bytesInFlight += p.size
	c.elicitingInFlight++
	c.lastAckElicitingSent = now
	c.cc.OnPacketSent(now, p.size)
	c.armPTO()
	c.armHeartbeat()
}

// sentAt returns the in-flight packet numbered pn, or nil.
func (c *Conn) sentPacketAt(pn uint64) *sentPacket {
	if pn < c.sentBase {
		return nil
	}
	i := c.sentHead + int(pn-c.sentBase)
	if i >= len(c.sentRing) {
		return nil
	}
	return c.sentRing[i]
}

// removeSent drops pn from the ring and advances the base past the holes.
func (c *Conn) removeSent(pn uint64) {
	c.sentRing[c.sentHead+int(pn-c.sentBase)] = nil
	for c.sentHead < len(c.sentRing) && c.sentRing[c.sentHead] == nil {
		c.sentHead++
		c.sentBase++
	}
	if c.sentHead == len(c.sentRing) {
		c.sentRing, c.sentHead = c.sentRing[:0], 0
		c.sentBase = c.nextPN
	} else if c.sentHead > 256 && c.sentHead*2 > len(c.sentRing) {
		n := copy(c.sentRing, c.sentRing[c.sentHead:])
		clear(c.sentRing[n:])
		c.sentRing, c.sentHead = c.sentRing[:n], 0
	}
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
	var ackedBytes int
	c.rate.sampling = false
	progress := false
	for _, rg := range a.ranges {
		if rg.hi > largest {
			break
		}
		hi := largest - rg.lo
		lo := largest - rg.hi
		if hi < c.sentBase {
			break // ranges go down; everything below is settled
		}
		lo = max(lo, c.sentBase)
		for pn := lo; pn <= hi; pn++ {
			p := c.sentPacketAt(pn)
			if p == nil {
				continue
			}
			if pn == largest {
				delay := time.Duration(min(a.delay, uint64(c.peerMaxAckDelay/time.Microsecond))) * time.Microsecond
				if !c.life.established() {
					delay = 0
				}
				c.rtt.update(now.Sub(p.sentAt), delay)
			}
			ackedBytes += p.size
			if !p.ping || len(p.frags) > 0 || p.hello || p.close {
				progress = true
			}
			c.onPacketAcked(now, p)
		}
	}
	if !c.anyAcked || largest > c.largestAcked {
		c.largestAcked = largest
		c.anyAcked = true
	}
	if ackedBytes > 0 {
		c.unreachableProbes = 0 // the peer is there: the report was wrong or stale
	}
	if progress {
		// Only acknowledged content resets the backoff: a flow-blocked
		// sender whose PING probes are answered keeps backing off.
		c.ptoCount = 0
	}
	lostBytes := c.detectLoss(now)
	if c.rateObserver != nil && ackedBytes > 0 && c.rate.sampling {
		c.rateSample(now, ackedBytes, lostBytes)
		c.rateObserver.OnRateSample(now, &c.rate.sample)
	}
	c.armPTO()
	c.maybeSendClose(now)
	return applied
}

func (c *Conn) onPacketAcked(now time.Time, p *sentPacket) {
	c.bytesInFlight -= p.size
	c.elicitingInFlight--
	c.rate.delivered += uint64(p.size)
	c.rate.deliveredAt = now
	// The sample follows the newest packet acknowledged: most delivered
	// when it was sent, the later send on a tie (ranges are walked newest
	// range first, lowest number first within each).
	if !c.rate.sampling || p.delivered > c.rate.sample.PriorDelivered ||
		(p.delivered == c.rate.sample.PriorDelivered && !p.sentAt.Before(c.rate.newestSent)) {
		// The packet is recycled below: keep what the sample needs.
		c.rate.sampling = true
		c.rate.sample.PriorDelivered = p.delivered
		c.rate.sample.AppLimited = p.appLimited
		c.rate.newestSent, c.rate.newestFirst, c.rate.newestAt = p.sentAt, p.firstSentAt, p.deliveredAt
		c.rate.firstSentAt = p.sentAt
	}
	if !p.appLimited {
		// The estimate goes to the controller through stats.RTT, which
		// Stats fills afresh on its copy: a field, so no allocation per
		// ack, and no second 32-byte field for it in every Conn.
		c.stats.RTT = c.rttStats()
		c.cc.OnPacketAcked(now, p.size, p.sentAt, &c.stats.RTT)
	}
	for _, f := range p.frags {
		f.inflight--
		c.onFragmentAcked(f)
		c.maybeFreeFragment(f)
	}
	if p.hello {
		c.life.onHelloAcked()
	}
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
	c.removeSent(p.pn)
	c.recycleSentPacket(p)
	if c.life.closeAcked() {
		c.terminate(nil) // (an abort ends with its reason)
	}
}

// rateSample completes the delivery-rate sample of the ACK just processed.
func (c *Conn) rateSample(now time.Time, acked, lost int) {
	r := &c.rate
	s := &r.sample
	s.TotalDelivered = r.delivered
	s.Delivered = int(r.delivered - s.PriorDelivered)
	s.RTT = now.Sub(r.newestSent)
	s.NewlyAcked, s.NewlyLost = acked, lost
	s.LossBursts = c.lossBursts
	s.BytesInFlight = c.bytesInFlight
	// The interval is the longer of the send and ack phases, so that
	// neither bursty sending nor compressed acknowledgements inflate it.
	s.Interval = max(r.newestSent.Sub(r.newestFirst), now.Sub(r.newestAt))
	if s.Interval < c.rtt.min {
		s.Interval = 0
	}
	r.sampling = false
}

// detectLoss declares lost the packets below the largest acknowledged that
// are packetThreshold older or were sent a loss delay ago, and arms the
// loss timer for the rest (RFC 9002 section 6.1). It returns the bytes it
// declared lost (handshake packets aside).
func (c *Conn) detectLoss(now time.Time) int {
	c.timers.stop(timerLoss)
	if !c.anyAcked || c.life.ended() {
		return 0
	}
	delay := c.rtt.lossDelay()
	var lostBytes int
	var largestLostAt time.Time
	var earliest time.Time
	for pn := c.sentBase; pn < c.largestAcked && pn < c.nextPN; pn++ {
		p := c.sentPacketAt(pn)
		if p == nil {
			continue
		}
		if c.largestAcked-pn >= packetThreshold || !p.sentAt.Add(delay).After(now) {
			// A handshake loss says nothing about the path's capacity yet,
			// and a path MTU probe's loss only that it was too large.
			if !p.hello && !p.pathProbe {
				lostBytes += p.size
				if c.lossBursts == 0 || pn != c.lastLostPN+1 {
					c.lossBursts++
				}
				c.lastLostPN = pn
				if p.sentAt.After(largestLostAt) {
					largestLostAt = p.sentAt
				}
			}
			c.onPacketLost(now, p)
			continue
		}
		if at := p.sentAt.Add(delay); earliest.IsZero() || at.Before(earliest) {
			earliest = at
		}
	}
	if lostBytes > 0 {
		c.cc.OnPacketsLost(now, lostBytes, largestLostAt, false)
	}
	if !earliest.IsZero() {
		c.timers.set(timerLoss, earliest)
	}
	return lostBytes
}

func (c *Conn) onPacketLost(now time.Time, p *sentPacket) {
	c.bytesInFlight -= p.size
	c.elicitingInFlight--
	if p.pathProbe {
		c.onProbeLost(now, p.size) // nothing to send again
	} else {
		c.stats.PacketsLost++
		c.requeue(p, false)
		c.onLargeLost(now, p.pn, p.size)
	}
	c.removeSent(p.pn)
	c.recycleSentPacket(p)
}

// requeue puts what p carried that is still owed back on the queues.
// front: a probe, which goes before other retransmissions.
func (c *Conn) requeue(p *sentPacket, probe bool) {
	for i := len(p.frags) - 1; i >= 0; i-- {
		f := p.frags[i]
		if !probe {
			f.inflight--
		}
		if !f.acked && !f.queued {
			f.queued = true
			if probe {
				c.retransmit.pushFront(f)
			} else {
				c.retransmit.push(f) // losses are found oldest first: order kept
			}
		}
		c.maybeFreeFragment(f)
	}
	if p.hello {
		c.life.onHelloLost()
	}
	if p.close {
		c.life.onCloseLost()
	}
	if p.fin {
		c.life.onFinLost()
	}
}

// armPTO sets the probe timer: a PTO after the last ack-eliciting packet,
// doubled per consecutive timeout, while anything is in flight or owed.
func (c *Conn) armPTO() {
	if c.life.ended() {
		return
	}
	if c.elicitingInFlight == 0 && !c.flowBlocked && c.life.established() {
		c.timers.stop(timerPTO)
		return
	}
	backoff := maxPTOBackoff
	if c.life.closeSent() {
		backoff = closeBackoff
	}
	pto := c.rtt.pto(c.ptoAckDelay()) << min(c.ptoCount, backoff)
	c.timers.set(timerPTO, c.lastAckElicitingSent.Add(pto))
}

// ptoAckDelay is the acknowledgement delay the probe timeout allows for.
// The peer acknowledges every second ack-eliciting packet at once, so with
// two or more in flight an acknowledgement is not held back for its max ack
// delay unless one was lost, and then a probe (two packets, which the peer
// acknowledges at once) costs less than waiting: RFC 9002 always adds the
// max ack delay, which on a LAN or loopback path (RTT tens of µs, default
// delay 1 ms) made every lost acknowledgement of a window-limited flight a
// stall of over a millisecond. A lone packet in flight still waits for it.
func (c *Conn) ptoAckDelay() time.Duration {
	if c.elicitingInFlight >= 2 {
		return 0
	}
	return c.peerMaxAckDelay
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
	var oldest *sentPacket
	probesOnly := false
	for pn := c.sentBase; pn < c.nextPN; pn++ {
		if p := c.sentPacketAt(pn); p != nil {
			if p.pathProbe {
				probesOnly = true
				continue
			}
			oldest, probesOnly = p, false
			break
		}
	}
	if probesOnly && !c.flowBlocked && c.life.established() && !c.life.closeSent() {
		// Only probes in flight: they may be too large, which says
		// nothing of the path's health. A PING asks for the
		// acknowledgement that settles them; no backoff.
		c.probesOwed = max(c.probesOwed, 1)
		c.lastAckElicitingSent = now
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
	c.ptoCount++
	c.stats.ProbesSent++
	c.probesOwed = 2
	if oldest != nil {
		if c.ptoCount >= pmtuBlackHolePTOs && oldest.size > BaseDatagramSize {
			// Nothing came back for two timeouts, and the oldest packet
			// is one a smaller path would drop: a black hole, maybe. Its
			// data goes again in datagrams of the base size.
			c.maybeBlackHole(now)
		}
		c.requeue(oldest, true)
	}
	// Whatever the oldest packet was, the peer must hear our CLOSE; if
	// the peer closed too, with the ACK of its CLOSE (which may be what
	// went missing).
	c.life.onCloseLost()
	if c.life.closeOwed() && c.life.peerClosed() {
		c.acks.sendNow()
	}
	// The next probe timer counts from the probes about to be sent.
	c.lastAckElicitingSent = now
	c.armPTO()
}

// discardSent forgets every packet in flight (the connection ended).
func (c *Conn) discardSent() {
	for i := c.sentHead; i < len(c.sentRing); i++ {
		if p := c.sentRing[i]; p != nil {
			for _, f := range p.frags {
				f.inflight--
				c.maybeFreeFragment(f)
			}
			c.recycleSentPacket(p)
		}
	}
	c.sentRing, c.sentHead = c.sentRing[:0], 0
	c.sentBase = c.nextPN
	c.bytesInFlight = 0
	c.elicitingInFlight = 0
}
