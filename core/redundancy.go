package core

import "time"

// Redundancy for small messages (PROTOCOL.md §18): a stream that has it
// sends each message of at most MaxRedundantMessage bytes twice, the copy
// in a later packet a fraction of an RTT after the original, so that the
// loss of one packet costs no round trip. Its job, and nothing more: which
// streams have it (SetStreamRedundancy), which fragments owe a copy and
// when it is due (owe, appendCopies, timeout), what became of the two
// packets (onCarrierAcked, onCarrierLost, the counters Stats reports) and,
// receiving, which None messages sent twice were already taken
// (noneWindow).
//
// A copy is a packet's worth of data like any other for congestion
// control: counted in flight and in the window, and a copy-only packet
// dropped by the path is a loss like any other. What a copy never does is
// make its message be sent again: a fragment carried by two packets is
// settled by the acknowledgement of either (Delivery: acknowledged; the
// other packet's loss then requeues nothing), and is sent again only once
// both were declared lost.
//
// Copies, not parity (an XOR across k packets, issue 12's alternative): a
// latency-critical exchange (a ping-pong, a keystroke and its echo) has
// usually one small message in flight, with nothing to XOR it with, and
// parity rebuilds a loss only once the k-th packet arrived, on traffic that
// may never come; a copy works alone and is taken by the rules that already
// drop duplicates. It costs the message once more instead of 1/k, which the
// counters report. In the simulator (TestSimRedundancyPingPong) copies kept
// a 64-byte ping-pong's p99 through 2% loss each way at 1.12x the loss-free
// p99 (2.06x without).

// MaxRedundantMessage is the largest message a stream with redundancy
// sends twice; larger ones are sent once, as on any stream. Redundancy is
// for small, latency-critical messages (game state, keystrokes, RPC
// requests): doubling bulk data would double its cost for nothing a
// retransmission does not do.
const MaxRedundantMessage = 256

// minCopyDelay is the least time between a message and its copy: a burst
// of loss on the path (a queue overflowing) takes both packets if they
// leave back to back.
const minCopyDelay = time.Millisecond

// noneWindowSpan is how many None ids before the newest one sent twice a
// receiver remembers (noneWindow).
const noneWindowSpan = 64

// redundancy is a connection's redundancy state, allocated on demand: when
// a stream is given redundancy, or when the peer's first None message sent
// twice arrives on stream 0. A connection that never uses it pays a nil
// pointer.
type redundancy struct {
	// zero: stream 0 sends with redundancy (Config.Redundancy,
	// SetStreamRedundancy(0, ...)).
	zero bool
	// due: the copy timer fired for the oldest copy owed; every copy owed
	// goes in the next packet the window and the pacer let go.
	due bool
	// timerAt is the copy timer's deadline (a timerSet offset; 0: not
	// armed): when the oldest copy owed is due.
	timerAt int64
	// owed holds the fragments whose copy is still to be sent, in the
	// order their originals were sent (their due times nondecreasing but
	// for the RTT estimate's changes).
	owed fifo[*outFragment]
	// zeroSeen is stream 0's record of None messages sent twice; other
	// streams keep theirs (stream.noneSeen).
	zeroSeen noneWindow
}

// Per-fragment redundancy state (outFragment.redund).
const (
	redundWanted    uint8 = 1 << iota // queued to be sent twice (it was small, on a stream with redundancy)
	redundOwed                        // in redundancy.owed: the copy is still to be sent
	redundCopySent                    // the copy went, in packet copyPN
	redundOrigDone                    // the original's packet was acknowledged: no copy is needed
	redundOrigLost                    // the original's packet was declared lost
	redundCopyAcked                   // the copy's packet was acknowledged
)

// SetStreamRedundancy turns redundancy on or off for stream id (0 is the
// connection's own stream): from now on, each message Send or SendStream
// queues on it of at most MaxRedundantMessage bytes is sent twice, the copy
// a fraction of an RTT after the original (max(1 ms, smoothed RTT/8)), or in
// the next packet that leaves before then. It costs the copies' bytes
// (Stats.RedundantBytesSent) and keeps the loss of one packet from costing
// a round trip. Nothing travels to the peer, which drops the second of the
// two it receives whatever the guarantee. Messages already queued keep what
// they were queued with. It fails for a stream that is not open.
func (c *Conn) SetStreamRedundancy(id uint64, on bool) error {
	var s *stream
	if id != 0 {
		var err error
		if s, err = c.stream(id); err != nil {
			return err
		}
	}
	if !on && c.redund == nil {
		return nil
	}
	r := c.redundancyState()
	if s == nil {
		r.zero = on
	} else {
		s.redundant = on
	}
	return nil
}

// redundancyState returns the connection's redundancy state, allocating it.
func (c *Conn) redundancyState() *redundancy {
	if c.redund == nil {
		c.redund = new(redundancy)
	}
	return c.redund
}

// queuedRedundant reports whether a message of n bytes Send queues on s
// (nil: stream 0) is to be sent twice.
func (c *Conn) queuedRedundant(s *stream, n int) bool {
	if n > MaxRedundantMessage || c.redund == nil && s == nil {
		return false
	}
	if s != nil {
		return s.redundant
	}
	return c.redund.zero
}

// owe records that f, sent for the first time in pkt, owes a copy.
func (c *Conn) owe(f *outFragment, pkt *sentPacket) {
	r := c.redundancyState()
	f.redund |= redundOwed
	f.copyDue = c.timers.offset(pkt.sentAt.Add(max(minCopyDelay, c.rtt.smoothed/8)))
	r.owed.push(f)
	if r.timerAt == 0 && !r.due {
		r.timerAt = f.copyDue
	}
}

// copiesDue reports whether the copies owed are to go now (the copy timer
// fired for one still needed).
func (c *Conn) copiesDue() bool {
	r := c.redund
	if r == nil || !r.due {
		return false
	}
	c.dropSettledCopies()
	if r.owed.len() == 0 {
		r.due = false
	}
	return r.due
}

// copyTimeout is the copy timer's deadline (a timerSet offset; 0: none).
func (c *Conn) copyTimeout() int64 {
	if r := c.redund; r != nil {
		return r.timerAt
	}
	return 0
}

// onCopyTimer fires the copy timer if it is due at the offset at: the
// copies owed go with the next packet if the oldest still needed is due,
// else the timer waits for that one.
func (c *Conn) onCopyTimer(at int64) {
	r := c.redund
	if r == nil || r.timerAt == 0 || r.timerAt > at {
		return
	}
	r.timerAt = 0
	c.dropSettledCopies()
	switch {
	case r.owed.len() == 0:
	case r.owed.peek().copyDue <= at:
		r.due = true
	default:
		r.timerAt = r.owed.peek().copyDue
	}
}

// copyNeeded reports whether f, owing a copy, still needs it: not
// acknowledged or abandoned, its original's packet not acknowledged, and
// not queued to be sent again (its original was lost first: the
// retransmission takes the copy's place).
func copyNeeded(f *outFragment) bool {
	return !f.acked && !f.queued && f.redund&redundOrigDone == 0
}

// dropSettledCopies takes from the front of the owed copies those no
// longer needed.
func (c *Conn) dropSettledCopies() {
	r := c.redund
	if r == nil {
		return
	}
	for r.owed.len() > 0 && !copyNeeded(r.owed.peek()) {
		c.settleOwed(r.owed.pop())
	}
}

// settleOwed takes f out of the owed copies.
func (c *Conn) settleOwed(f *outFragment) {
	f.redund &^= redundOwed
	c.maybeFreeFragment(f)
}

// appendCopies appends to the packet the copies owed, every one that fits
// (each original went in an earlier packet: the fragments pkt itself
// carries are owed only once it is built), and returns the new length and
// the copies' bytes.
func (c *Conn) appendCopies(buf []byte, n, limit int, pkt *sentPacket) (_, copied int) {
	r := c.redund
	for r.owed.len() > 0 {
		f := r.owed.peek()
		if !copyNeeded(f) {
			c.settleOwed(r.owed.pop())
			continue
		}
		size := msgHeaderLen(&f.msg) + len(f.msg.data)
		if n+size > limit {
			break
		}
		r.owed.pop()
		n = len(appendMsg(buf[:n], &f.msg))
		f.redund = f.redund&^redundOwed | redundCopySent
		f.copyPN = pkt.pn
		f.inflight++
		pkt.frags = append(pkt.frags, f)
		pkt.eliciting = true
		copied += size
	}
	c.stats.RedundantBytesSent += uint64(copied)
	if r.owed.len() == 0 {
		r.due, r.timerAt = false, 0
	}
	return n, copied
}

// onCarrierAcked: pkt, carrying f (sent with redundancy), was acknowledged.
func (c *Conn) onCarrierAcked(f *outFragment, pkt *sentPacket) {
	if f.redund&redundCopySent != 0 && f.copyPN == pkt.pn {
		f.redund |= redundCopyAcked
		if f.redund&redundOrigLost != 0 {
			c.stats.RedundantUseful++
		}
		return
	}
	f.redund |= redundOrigDone
}

// onCarrierLost: pkt, carrying f (sent with redundancy), was declared lost.
// It reports whether f is to be sent again: only if the other packet that
// carried it, if any, was lost too (or its copy was never sent).
func (c *Conn) onCarrierLost(f *outFragment, pkt *sentPacket) (resend bool) {
	if f.redund&redundCopySent != 0 && f.copyPN == pkt.pn {
		return f.inflight == 0 && f.redund&redundOrigDone == 0
	}
	f.redund |= redundOrigLost
	if f.redund&redundCopyAcked != 0 {
		c.stats.RedundantUseful++
	}
	return f.inflight == 0 && f.redund&redundCopyAcked == 0
}

// noneWindow is a receiver's record of the None messages of one stream
// that were sent twice (their MSG frame's twice flag): a bit per id, for
// the noneWindowSpan ids below next. The second copy of one is dropped;
// one older than the window is dropped too, as None's guarantee allows,
// since whether it was taken can no longer be told.
type noneWindow struct {
	next uint64 // the newest id recorded + 1
	bits uint64 // bit i: id next-1-i was taken
}

// taken reports whether the None message id (unwrapped) was taken, or is
// too old to tell.
func (w *noneWindow) taken(id uint64) bool {
	switch {
	case id >= w.next:
		return false
	case w.next-id > noneWindowSpan:
		return true
	}
	return w.bits&(1<<(w.next-1-id)) != 0
}

// take records id as taken (taken(id) was false).
func (w *noneWindow) take(id uint64) {
	if id >= w.next {
		if shift := id + 1 - w.next; shift >= noneWindowSpan {
			w.bits = 0
		} else {
			w.bits <<= shift
		}
		w.next = id + 1
	}
	w.bits |= 1 << (w.next - 1 - id)
}

// noneWindowOf returns the record of None messages sent twice of stream
// s (nil: stream 0), allocating the connection's redundancy state for
// stream 0's.
func (c *Conn) noneWindowOf(s *stream) *noneWindow {
	if s != nil {
		return &s.noneSeen
	}
	return &c.redundancyState().zeroSeen
}

// discardCopies drops every copy owed (the send queues were discarded).
func (c *Conn) discardCopies() {
	if r := c.redund; r != nil {
		for r.owed.len() > 0 {
			f := r.owed.pop()
			f.acked = true
			c.settleOwed(f)
		}
		r.due, r.timerAt = false, 0
	}
}
