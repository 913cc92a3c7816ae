package core

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// DebugState describes a Conn's internal send and close state, for
// simulation failure reports.
func DebugState(c *Conn) string {
	var timers [numTimers]time.Time
	for k := range timers {
		timers[k] = c.timers.get(timerKind(k))
	}
	return fmt.Sprintf("queue %d retransmit %d unackedDelivery %d sendBuffered %d liveFrags %d inflight %d/%d flowBlocked %v dataSent %d peerMaxData %d probesOwed %d ptoCount %d closing %+v pending %d none %d timers %v",
		c.queue.len(), c.retransmit.len(), c.unackedDelivery, c.sendBuffered, c.liveFrags, c.elicitingInFlight, c.bytesInFlight,
		c.flowBlocked, c.dataSent, c.peerMaxData, c.probesOwed, c.ptoCount, c.life.closing, len(c.ord.pending), len(c.ord.noneMsgs), timers) + debugStreams(c)
}

// debugStreams describes the streams' queues and credit.
func debugStreams(c *Conn) string {
	if c.streams == nil {
		return ""
	}
	var b strings.Builder
	for _, s := range c.streams.list {
		fmt.Fprintf(&b, "; stream %d: queue %d ready %v charged %d/%d peerCharged %d consumed %d creditSent %d acked %d window %d credit %v pending %d stop %v recvDone %v peerFin %v",
			s.id, s.queue.len(), s.sched.ready(), s.charged, s.flow.peerMaxData, s.peerCharged, s.flow.consumed, s.flow.creditSent, s.flow.creditAcked, s.flow.window, s.flow.credit, len(s.ord.pending), s.stop, s.recvDone, s.peerFin)
	}
	return b.String()
}

// UnackedDelivery appends to buf, in increasing order, the delivery indexes
// (unwrapped, as DeliveryReceived takes them) of the Delivery messages c
// sent that have a fragment not yet acknowledged, and returns them with the
// index the next Delivery message will get. Every index below next that is
// not listed was acknowledged whole.
func UnackedDelivery(c *Conn, buf []uint64) (unacked []uint64, next uint64) {
	unacked = buf[:0]
	add := func(f *outFragment) {
		if f.msg.guarantee == Delivery && !f.acked {
			unacked = append(unacked, unwrap32(c.ord.nextDelivery, f.msg.d))
		}
	}
	for _, q := range []*fragQueue{&c.queue, &c.retransmit} {
		for _, f := range q.waiting() {
			add(f)
		}
	}
	for _, p := range c.sent.inFlight() {
		if p != nil {
			for _, f := range p.frags {
				add(f)
			}
		}
	}
	slices.Sort(unacked)
	return slices.Compact(unacked), c.ord.nextDelivery
}

// DeliveryReceived appends to buf, in increasing order, the delivery indexes
// of the Delivery messages c received whole and holds (read or not) at or
// above its first unread index, which it returns too: every index below
// that was read.
func DeliveryReceived(c *Conn, buf []uint64) (held []uint64, firstUnread uint64) {
	held = buf[:0]
	for _, m := range c.ord.pending {
		if m.guarantee == Delivery && m.d >= c.ord.dContig && (m.yielded || m.complete()) {
			held = append(held, m.d)
		}
	}
	return held, c.ord.dContig
}

// Aborting reports whether c is ending with an error (its own abort or a
// protocol violation) although not yet Closed.
func Aborting(c *Conn) bool { return c.life.aborting() }

// FirstUnread returns c's first unread delivery index (every one below was read).
func FirstUnread(c *Conn) uint64 { return c.ord.dContig }

// DebugPathMTU describes a Conn's path MTU search.
func DebugPathMTU(c *Conn) string {
	if c.pmtu == nil {
		return "no search"
	}
	return fmt.Sprintf("%+v", *c.pmtu)
}

// CheckHeldMemory checks the receive side's memory rule: every message
// held for the peer stays within what it was charged (footprint ≤ held),
// Delivery charges within the credit window, None/Order charges within the
// window, and charges plus the buffer pool within heldLimit. Beyond that
// a connection holds only its fixed records and the receive arena.
func CheckHeldMemory(c *Conn) error {
	held, delivery, unreliable := 0, 0, 0
	visit := func(m *recvMsg) error {
		if fp := m.footprint(); fp > int(m.held) {
			return fmt.Errorf("message %d (%v, %d of %d bytes): footprint %d over its charge %d", m.seq, m.guarantee, m.filled, m.total, fp, m.held)
		}
		if len(m.runs) > runLimit(m.total) {
			return fmt.Errorf("message %d: %d runs, over %d", m.seq, len(m.runs), runLimit(m.total))
		}
		held += m.footprint()
		if m.guarantee == Delivery {
			delivery += int(m.held)
		} else {
			unreliable += int(m.held)
		}
		return nil
	}
	var err error
	c.forEachDomain(func(o *ordering, yielded *recvMsg) {
		for _, m := range o.pending {
			if err == nil {
				err = visit(m)
			}
		}
		for _, m := range o.noneMsgs {
			if err == nil {
				err = visit(m)
			}
		}
		if m := yielded; m != nil && err == nil && !slices.Contains(o.pending, m) && !slices.Contains(o.noneMsgs, m) {
			err = visit(m)
		}
	})
	if err != nil {
		return err
	}
	switch {
	case delivery != c.pendingDelivery || unreliable != c.unreliableBytes:
		return fmt.Errorf("charges: Delivery %d (counted %d), None/Order %d (counted %d)", delivery, c.pendingDelivery, unreliable, c.unreliableBytes)
	case delivery > c.creditWindow():
		return fmt.Errorf("Delivery charges %d over the credit window %d", delivery, c.creditWindow())
	case unreliable > c.window():
		return fmt.Errorf("None/Order charges %d over the window %d", unreliable, c.window())
	}
	pooled := c.reasm.pooled()
	switch {
	case delivery+unreliable+pooled > c.heldLimit():
		return fmt.Errorf("charges %d plus pooled %d over the limit %d", delivery+unreliable, pooled, c.heldLimit())
	case held+pooled > c.heldLimit():
		return fmt.Errorf("held %d plus pooled %d over the limit %d", held, pooled, c.heldLimit())
	}
	return nil
}

// HeldBytes returns what c holds of its peer's messages (their buffers'
// footprint) and in its pools of free records and buffers: what
// CheckHeldMemory bounds by heldLimit.
func HeldBytes(c *Conn) int {
	held := 0
	for _, m := range c.ord.pending {
		held += m.footprint()
	}
	for _, m := range c.ord.noneMsgs {
		held += m.footprint()
	}
	if m := c.yieldedMsg; m != nil && !slices.Contains(c.ord.pending, m) && !slices.Contains(c.ord.noneMsgs, m) {
		held += m.footprint()
	}
	return held + c.reasm.pooled()
}

// LargestReceived returns the highest packet number c accepted (false:
// none yet).
func LargestReceived(c *Conn) (uint64, bool) { return c.acks.largest() }

// Probing reports whether datagram b is a probe: its frames are PADDING,
// PATH_CHALLENGE and PATH_RESPONSE only, which move a connection nowhere
// (core/path.go).
func Probing(b []byte) bool {
	_, body, err := ParseHeader(b)
	return err == nil && probingBody(body)
}

// probingBody is Probing of a packet's frames.
func probingBody(body []byte) bool {
	types, ok := bodyFrameTypes(body)
	if !ok {
		return false
	}
	for _, t := range types {
		switch t {
		case framePadding, framePathChallenge, framePathResponse:
		default:
			return false
		}
	}
	return true
}

// CarriesClose reports whether datagram b carries a CLOSE frame.
func CarriesClose(b []byte) bool {
	types, _ := frameTypes(b)
	return slices.Contains(types, frameClose)
}

// frameTypes returns the types of datagram b's frames (false: b does not
// parse).
func frameTypes(b []byte) ([]byte, bool) {
	_, body, err := ParseHeader(b)
	if err != nil {
		return nil, false
	}
	return bodyFrameTypes(body)
}

// bodyFrameTypes returns the types of a packet's frames.
func bodyFrameTypes(body []byte) ([]byte, bool) {
	var types []byte
	var f frame
	for len(body) > 0 {
		n, err := decodeFrame(body, &f)
		if err != nil {
			return types, false
		}
		body = body[n:]
		types = append(types, f.typ)
	}
	return types, true
}

// CheckStreamCredit checks per-stream flow control (§17.6) on every stream
// but 0. Receiving: the Delivery charges held for the stream's messages
// are exactly what the peer was charged on it less what was released, and
// never more than the credit advertised for it (so within its window).
// Sending: what we charged on it stays within the credit the peer gave.
func CheckStreamCredit(c *Conn) error {
	if c.streams == nil {
		return nil
	}
	for _, s := range c.streams.list {
		held := uint64(0)
		var err error
		visit := func(m *recvMsg) {
			if m.guarantee != Delivery || err != nil {
				return
			}
			switch {
			case m.stream == nil && m.yielded:
				return // read: kept for duplicate detection, on the connection's account only
			case m.stream != s:
				err = fmt.Errorf("stream %d: message %d not charged to it", s.id, m.seq)
				return
			}
			held += uint64(m.held)
		}
		for _, m := range s.ord.pending {
			visit(m)
		}
		if m := s.yielded; m != nil && !slices.Contains(s.ord.pending, m) {
			visit(m)
		}
		f := &s.flow
		switch {
		case err != nil:
			return err
		case s.peerCharged-f.consumed != held:
			return fmt.Errorf("stream %d: holds %d bytes of Delivery charges, counted %d (charged %d, released %d)", s.id, held, s.peerCharged-f.consumed, s.peerCharged, f.consumed)
		case s.peerCharged > f.creditSent:
			return fmt.Errorf("stream %d: the peer charged %d, over the %d advertised", s.id, s.peerCharged, f.creditSent)
		case held > uint64(f.window) && !c.life.closeRequested():
			return fmt.Errorf("stream %d: holds %d, over its window %d", s.id, held, f.window)
		case s.charged > f.peerMaxData:
			return fmt.Errorf("stream %d: charged %d, over the peer's credit %d", s.id, s.charged, f.peerMaxData)
		}
	}
	return nil
}

// IgnoreStreamCredit makes c a hostile sender on stream id: it takes the
// peer's credit for the stream to be practically unlimited.
func IgnoreStreamCredit(c *Conn, id uint64) {
	if s := c.streams.find(id); s != nil {
		s.flow.peerMaxData = 1 << 62
	}
}

// CheckSendAccounting is the send side's accounting invariant, exact on
// every step: the bytes and ack-eliciting packets counted in flight are
// those of the packets recorded in flight; each fragment's count of
// packets carrying it is the number of packets in flight that list it;
// a fragment sent twice (redundancy.go) owes its copy exactly while it is
// on the list of copies owed, and the list is never left with neither its
// timer armed nor its copies due.
func CheckSendAccounting(c *Conn) error {
	bytes, packets := 0, 0
	carriers := map[*outFragment]int32{}
	for _, p := range c.sent.inFlight() {
		if p == nil {
			continue
		}
		bytes += p.size
		packets++
		for _, f := range p.frags {
			carriers[f]++
		}
	}
	if bytes != c.bytesInFlight || packets != c.elicitingInFlight {
		return fmt.Errorf("in flight: %d bytes in %d packets recorded, %d bytes in %d packets counted", bytes, packets, c.bytesInFlight, c.elicitingInFlight)
	}
	for f, n := range carriers {
		if f.inflight != n {
			return fmt.Errorf("a fragment (stream %d seq %d %v) is carried by %d packets in flight, counted %d", f.msg.stream, f.msg.seq, f.msg.guarantee, n, f.inflight)
		}
	}
	r := c.redund
	if r == nil {
		return nil
	}
	owed := map[*outFragment]bool{}
	for _, f := range r.owed.waiting() {
		if f.redund&redundOwed == 0 || f.redund&redundCopySent != 0 || owed[f] {
			return fmt.Errorf("a fragment on the copies owed has state %#x (listed twice: %v)", f.redund, owed[f])
		}
		owed[f] = true
	}
	if r.owed.len() > 0 && !r.due && r.timerAt == 0 {
		return fmt.Errorf("%d copies owed, with neither the copy timer armed nor the copies due", r.owed.len())
	}
	return nil
}

// CheckedCongestion wraps cc so that every call into it ends with a check
// of the controller's own bounds (BBR's: checkBounds); report gets the
// first bound broken, once. The wrapper is a RateObserver and a
// PacingRater whether cc is or not (a PacingRate of 0 and ignored samples
// are what the connection does without them).
func CheckedCongestion(cc CongestionController, report func(error)) CongestionController {
	return &checkedCC{cc: cc, report: report}
}

type checkedCC struct {
	cc     CongestionController
	report func(error)
	failed bool
}

// check checks the bounds after the call named after (with its rate
// sample, if any: formatted only when a bound broke).
func (w *checkedCC) check(after string, rs *RateSample) {
	b, ok := w.cc.(*BBR)
	if !ok || w.failed {
		return
	}
	if err := b.checkBounds(); err != nil {
		w.failed = true
		if rs != nil {
			after = fmt.Sprintf("%s(%+v)", after, *rs)
		}
		w.report(fmt.Errorf("after %s: %w", after, err))
	}
}

func (w *checkedCC) OnPacketSent(now time.Time, bytes int) {
	w.cc.OnPacketSent(now, bytes)
	w.check("OnPacketSent", nil)
}

func (w *checkedCC) OnPacketAcked(now time.Time, bytes int, sentAt time.Time, rtt *RTTStats) {
	w.cc.OnPacketAcked(now, bytes, sentAt, rtt)
	w.check("OnPacketAcked", nil)
}

func (w *checkedCC) OnPacketsLost(now time.Time, bytes int, largestLostSentAt time.Time, persistent bool) {
	w.cc.OnPacketsLost(now, bytes, largestLostSentAt, persistent)
	w.check("OnPacketsLost", nil)
}

func (w *checkedCC) Window() int { return w.cc.Window() }

func (w *checkedCC) OnRateSample(now time.Time, rs *RateSample) {
	if o, ok := w.cc.(RateObserver); ok {
		o.OnRateSample(now, rs)
		w.check("OnRateSample", rs)
	}
}

func (w *checkedCC) PacingRate() float64 {
	if p, ok := w.cc.(PacingRater); ok {
		return p.PacingRate()
	}
	return 0
}

// checkBounds reports the first of BBR's bounds its state breaks: the
// window never below its floor, never above the in-flight cap loss set
// (inflightHi), never above PROBE_RTT's half BDP in PROBE_RTT, never above
// cwndGain BDPs (plus the allowance for held-back ACKs) once the pipe is
// full; once it is full, a pacing rate of at most the gain times the
// bandwidth estimate.
func (b *BBR) checkBounds() error {
	bw := b.btlBw.get()
	switch {
	case b.cwnd < min(b.minCwnd(), initialWindow(b.mss)):
		// (The initial window of very large datagrams, two of them, is
		// below the floor of four until the first sample applies it.)
		return fmt.Errorf("BBR cwnd %d below its floor %d", b.cwnd, b.minCwnd())
	case b.inflightHi > 0 && b.cwnd > max(b.inflightHi, b.minCwnd()):
		return fmt.Errorf("BBR cwnd %d above inflightHi %d", b.cwnd, b.inflightHi)
	case b.mode == bbrProbeRTT && b.cwnd > b.probeRTTCwnd():
		return fmt.Errorf("BBR cwnd %d in PROBE_RTT above %d", b.cwnd, b.probeRTTCwnd())
	case b.filledPipe && bw > 0 && b.minRTT > 0 && b.cwnd > max(b.inflight(b.cwndGain)+3*b.mss, b.minCwnd(), b.priorCwnd):
		return fmt.Errorf("BBR cwnd %d above %g BDP (bw %.0f B/s, min RTT %v) + 3 datagrams", b.cwnd, b.cwndGain, bw, b.minRTT)
	case b.filledPipe && bw > 0 && b.pacingRate > b.pacingGain*bw:
		return fmt.Errorf("BBR pacing rate %.0f B/s above gain %g x bw %.0f B/s", b.pacingRate, b.pacingGain, bw)
	}
	return nil
}

// UnsentBytes is the data c has queued and not yet sent once, every stream
// together.
func UnsentBytes(c *Conn) int {
	n := c.unsentBytes
	if c.streams != nil {
		for _, s := range c.streams.list {
			n += s.unsentBytes
		}
	}
	return n
}

// FragPayload is the data one fragment carries at c's datagram size now.
func FragPayload(c *Conn) int { return c.fragPayload }
