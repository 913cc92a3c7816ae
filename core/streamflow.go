package core

import "time"

// Per-stream flow control (docs/PROTOCOL.md §17.6), after QUIC's
// MAX_STREAM_DATA beside MAX_DATA. Every stream but 0 has a window of its
// own on top of the connection's (section 7): the peer may have charged at
// most the stream's credit for the stream's Delivery messages not yet
// read, so a stream whose reader stopped holds at most its window and the
// other streams keep the rest of the connection's. Stream 0 has only the
// connection's window: a connection that never opens a stream is as fast
// as before. The charge is section 7's (msgCredit), taken on both levels
// at once.
//
// The state lives in each stream (streamFlow) and in the stream table
// (the peer's initial window), never in the Conn: a connection that opens
// no stream pays nothing.

// streamFlow is one stream's flow-control state, both directions.
type streamFlow struct {
	// Sending: peerMaxData is the credit the peer gave the stream, its
	// initial window raised by its STREAM_CREDIT frames; what we charged
	// is the stream's charged.
	peerMaxData uint64

	// Receiving. consumed is the Delivery credit of the stream released
	// (read, dropped or discarded); the peer's charges are peerCharged.
	// window is the stream's window (StreamReceiveWindow, auto-tuned),
	// creditSent the largest credit advertised (the initial window counts
	// as advertised: the peer assumes it), creditAcked the largest the
	// peer acknowledged, credit the state of our STREAM_CREDIT.
	consumed                uint64
	creditSent, creditAcked uint64
	window                  int
	credit                  sendVal

	// The auto-tuning epoch, as the connection's (tuneWindow).
	tune tuneEpoch
}

// startStreamFlow gives a new stream its windows: ours, which the peer
// assumes (ours is announced with our HELLO when not the default), and the
// peer's.
func (c *Conn) startStreamFlow(s *stream) {
	w := c.cfg.StreamReceiveWindow
	s.flow = streamFlow{
		peerMaxData: c.streams.peerWindow,
		window:      w,
		creditSent:  uint64(w),
		creditAcked: uint64(w),
	}
}

// onPeerStreamWindow takes the peer's STREAM_CREDIT of stream 0: the credit
// each stream starts with on its side. It comes with the peer's HELLO,
// before any stream can be opened; a side whose window is the default
// sends nothing (the default is assumed), so no table is made for it.
func (c *Conn) onPeerStreamWindow(v uint64) {
	if c.streams == nil && v == defaultStreamReceiveWindow {
		return
	}
	c.table().peerWindow = v
}

// streamCreditAllows reports whether the credit of f's stream lets f go
// out: the first fragment of a Delivery message is charged to its stream
// as to the connection. This is the only test of a stream's credit on the
// sending side; a stream it holds back is passed over (appendStreams), its
// writers held at its send buffer, and nothing is sent to ask for more: the
// receiver's STREAM_CREDIT is reliable (§17.6).
func (c *Conn) streamCreditAllows(f *outFragment) bool {
	if f.msg.stream == 0 || f.credit == 0 || f.charged {
		return true
	}
	s := c.streams.find(f.msg.stream)
	return s == nil || s.charged+f.credit <= s.flow.peerMaxData
}

// connCreditBlocks reports whether the connection's credit (the peer's
// max data) holds f back.
func (c *Conn) connCreditBlocks(f *outFragment) bool {
	return f.credit > 0 && !f.charged && c.dataSent+f.credit > c.peerMaxData
}

// creditStarved reports whether the sender is flow-blocked by the
// connection's credit: only then do probes ask for the window update (the
// ACK carrying it may be lost). New data held back by streams' own credit
// alone sends nothing: their STREAM_CREDIT frames are resent until
// acknowledged.
func (c *Conn) creditStarved() bool {
	if !c.flowBlocked {
		return false
	}
	if c.streams == nil {
		return true
	}
	if c.queue.len() > 0 && c.connCreditBlocks(c.queue.peek()) {
		return true
	}
	for _, l := range c.streams.ready.levels {
		for _, e := range l.heap {
			if q := c.schedQueue(e); q.len() > 0 && c.connCreditBlocks(q.peek()) {
				return true
			}
		}
	}
	return false
}

// creditAdmits reports whether a new Delivery message charged cost fits
// the credit we advertised on s.
func (s *stream) creditAdmits(cost int) bool {
	return s.peerCharged+uint64(cost) <= s.flow.creditSent
}

// streamCredit is the credit we give the peer on s now: what was released
// plus the window, never less than what was advertised; from our Close on
// practically unlimited, as the connection's (section 7), so that neither
// side's CLOSE waits on the other's stream credit.
func (c *Conn) streamCredit(s *stream) uint64 {
	if c.life.closeRequested() {
		return s.flow.consumed + uint64(s.flow.window) + 1<<40
	}
	return max(s.flow.creditSent, s.flow.consumed+uint64(s.flow.window))
}

// wantsCredit reports whether the peer may still need credit on s: its
// direction has not ended (no STREAM_FIN took effect: every Delivery
// message had arrived) and we still read it.
func (s *stream) wantsCredit() bool {
	return !s.recvDone && !s.peerFin && s.stop == valUnset && s.recvErr == nil
}

// streamConsumed counts n bytes of s's Delivery credit released, and sends
// the stream's new credit once the application read a quarter of the
// window since it was last advertised.
func (c *Conn) streamConsumed(s *stream, n uint64) {
	s.flow.consumed += n
	if s.wantsCredit() && c.streamCredit(s)-s.flow.creditSent >= uint64(s.flow.window/4) {
		c.queueStreamCredit(s)
	}
}

// onStreamDrained is called when the application found nothing to read on
// s. A message is charged whole when its first fragment is sent, so a
// sender whose next message does not fit the credit left is blocked until
// more comes, however little the application read: when what is left is
// below the largest message the peer may send, the new credit goes now,
// without waiting for a quarter window (once everything arrived was read,
// it covers any message: the window holds at least one).
func (c *Conn) onStreamDrained(s *stream) {
	if !s.wantsCredit() || s.flow.credit == valNeeded {
		return
	}
	credit := c.streamCredit(s)
	if credit > s.flow.creditSent && s.flow.creditSent-min(s.flow.creditSent, s.peerCharged) < uint64(msgCredit(c.cfg.MaxMessageSize)) {
		c.queueStreamCredit(s)
	}
}

// queueStreamCredit queues a STREAM_CREDIT for s (carrying the credit of
// when it goes).
func (c *Conn) queueStreamCredit(s *stream) {
	s.flow.credit = valNeeded
	c.queueCtl(s)
}

// openStreamCredit, at our Close, sends every stream the peer may still
// send on its practically unlimited credit (streamCredit).
func (c *Conn) openStreamCredit() {
	if c.streams == nil {
		return
	}
	for _, s := range c.streams.list {
		if !s.recvDone && !s.peerFin && s.recvErr == nil {
			c.queueStreamCredit(s)
		}
	}
}

// appendStreamCredit appends s's STREAM_CREDIT, the window tuned first,
// if it fits before limit.
func (c *Conn) appendStreamCredit(buf []byte, n, limit int, pkt *sentPacket, s *stream) (int, bool) {
	c.tuneStreamWindow(s, pkt.sentAt)
	f := streamCtlFrame{id: s.id, value: c.streamCredit(s)}
	if n+streamCtlLen(frameStreamCredit, &f) > limit {
		return n, false
	}
	n = len(appendStreamCtl(buf[:n], frameStreamCredit, &f))
	s.flow.credit = valSent
	s.flow.creditSent = max(s.flow.creditSent, f.value)
	pkt.ctl = append(pkt.ctl, ctlRef{id: s.id, typ: frameStreamCredit, value: f.value})
	pkt.eliciting = true
	return n, true
}

// streamCreditFate passes the fate of a STREAM_CREDIT carrying value to s:
// a lost one goes again, with the latest credit, unless the peer has as
// much already.
func (c *Conn) streamCreditFate(s *stream, value uint64, acked bool) {
	f := &s.flow
	if acked {
		f.creditAcked = max(f.creditAcked, value)
		if f.credit == valSent && f.creditAcked >= f.creditSent {
			f.credit = valAcked
		}
		return
	}
	if value > f.creditAcked && f.credit != valNeeded && (s.wantsCredit() || c.life.closeRequested()) {
		c.queueStreamCredit(s)
	}
}

// tuneStreamWindow doubles s's window when the application read half of
// it within two smoothed round trips, as tuneWindow does the connection's,
// up to half of MaxReceiveWindow (or StreamReceiveWindow, if larger), and
// makes the connection's window at least twice the stream's (up to
// MaxReceiveWindow), as quic-go does: the connection's own tuning sees only
// what the stream lets through, so without it a fast stream would be held
// at half a window that never grows (at 50 MB/s, 100 ms, 1% loss: 0.33 of
// the bottleneck, where stream 0 keeps 0.93). A fast reader's stream gets
// the window its path needs, and a stream whose reader stops still leaves
// the other streams at least half of the connection's (unless a receive
// limit, SetReceiveLimit, holds the connection's lower).
func (c *Conn) tuneStreamWindow(s *stream, now time.Time) {
	f := &s.flow
	ceiling := max(c.cfg.StreamReceiveWindow, c.cfg.MaxReceiveWindow/2)
	if f.window < ceiling && f.tune.grows(now, f.consumed, f.window, c.rtt.smoothed) {
		f.window = min(2*f.window, ceiling)
		c.recvWindow = max(c.recvWindow, min(2*f.window, c.cfg.MaxReceiveWindow))
	}
}
