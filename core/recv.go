package core

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// msgCredit is what a message of n bytes costs in the receive window: the
// flow-control credit of a Delivery message, and the share of the
// unreliable budget of a None/Order one. Beyond its bytes, msgCreditOverhead
// pays for its record (recordBytes) and n/64 for the bookkeeping
// reassembly may need (at most runLimit runs and a chunk entry per
// recvChunk: 32 + n/128 + 32 + n/512 < 64 + n/64 bytes), so that
// everything held for a message fits what it was charged (footprint).
func msgCredit(n int) int { return n + msgCreditOverhead + n/64 }

// receiver is the receiving half: the frames' handling and flow control
// (which message may be read when is the ordering domain's, ordering.go;
// where its bytes are kept, reassembly's, reassembly.go).
type receiver struct {
	yieldedMsg *recvMsg // returned by the last Recv, freed by the next

	pendingDelivery int // bytes held for Delivery messages
	unreliableBytes int // bytes held for None/Order messages
	consumed        uint64
	maxDataSent     uint64
	// recvWindow is the flow-control window: ReceiveWindow, doubled by
	// tuneWindow up to MaxReceiveWindow. It never shrinks, so the credit
	// advertised never goes back.
	recvWindow int
	// recvLimit, when above zero, caps the window in force (SetReceiveLimit).
	recvLimit int
	// tune is the auto-tuning epoch (tuneWindow).
	tune tuneEpoch

	// frameScratch is what handleFrames decodes into, with the ACK ranges'
	// slice it reuses.
	frameScratch *frame
}

func (c *Conn) initReceiver(arenaSize int) {
	c.reasm.arena.size = arenaSize
	c.recvWindow = c.cfg.ReceiveWindow
}

// window is the receive window in force: recvWindow, or the limit
// SetReceiveLimit set when that is lower.
func (c *Conn) window() int {
	if c.recvLimit > 0 && c.recvLimit < c.recvWindow {
		return c.recvLimit
	}
	return c.recvWindow
}

// creditWindow is what the peer may have charged for Delivery messages not
// yet read: the window, or what was advertised before a lower limit was set
// (credit given is never taken back).
func (c *Conn) creditWindow() int {
	return max(c.window(), int(c.maxDataSent-min(c.maxDataSent, c.consumed)))
}

// unreliableLimit is what None/Order messages may hold: a quarter of the
// window, or a single message of up to the window.
func (c *Conn) unreliableLimit() int { return c.window() / 4 }

// SetReceiveLimit caps the receive window at n bytes (0 or less lifts the
// cap): the peer is granted no new credit beyond n bytes of Delivery data
// not yet read, and None/Order messages may hold a quarter of it. Credit
// already advertised is never taken back, so a lower limit applies as the
// application reads; set it before the connection first sends (a
// listener's HELLO carries credit) to bound it from the start. Raising it
// sends the new credit at once. A listener uses it to bound the memory of
// connections not yet accepted.
func (c *Conn) SetReceiveLimit(now time.Time, n int) {
	c.recvLimit = max(n, 0)
	c.shrinkPool()
	// What the application read while limited says nothing of the path:
	// auto-tuning starts a new epoch.
	c.tune.restart(now, c.consumed)
	if c.life.established() {
		c.maybeUpdateWindow()
	}
}

// advertisedMaxData is the flow-control credit we give the peer.
func (c *Conn) advertisedMaxData() uint64 {
	if c.life.closeRequested() {
		// We read nothing more and drop what arrives: let the peer drain
		// its queue, or both sides could wait on each other's credit and
		// neither CLOSE would ever be sent.
		return c.consumed + uint64(c.recvWindow) + 1<<40
	}
	return max(c.maxDataSent, c.consumed+uint64(c.window()))
}

// creditSent records that credit was advertised to the peer (a HELLO or
// an ACK frame carried it): credit given is never taken back, so a lower
// receive limit set later honours it.
func (c *Conn) creditSent(credit uint64) { c.maxDataSent = max(c.maxDataSent, credit) }

// ackCredit is the flow-control credit an ACK frame carries, the window
// tuned first.
func (c *Conn) ackCredit(now time.Time) uint64 {
	c.tuneWindow(now)
	return c.advertisedMaxData()
}

// tuneWindow doubles the flow-control window, up to MaxReceiveWindow, when
// the application read half of it within two smoothed round trips (in the
// manner of quic-go's auto-tuning): the window then holds at least about
// four round trips of what the application reads, enough to keep the peer
// sending while a loss is repaired, and a reader slower than the path
// never grows it. It runs when an ACK is built, which carries the credit.
func (c *Conn) tuneWindow(now time.Time) {
	if c.recvWindow < c.cfg.MaxReceiveWindow && c.tune.grows(now, c.consumed, c.recvWindow, c.rtt.smoothed) {
		c.recvWindow = min(2*c.recvWindow, c.cfg.MaxReceiveWindow)
	}
}

// tuneEpoch is an auto-tuning epoch (the connection's window, or a
// stream's): when it began and what was consumed at its start.
type tuneEpoch struct {
	start    time.Time
	consumed uint64
}

func (e *tuneEpoch) restart(now time.Time, consumed uint64) { e.start, e.consumed = now, consumed }

// grows reports whether a window should double, consumed being what was
// read so far: once more than half the window was read since the epoch
// began (the first call begins it), whether that took less than two
// smoothed round trips; a new epoch then begins either way.
func (e *tuneEpoch) grows(now time.Time, consumed uint64, window int, srtt time.Duration) bool {
	if e.start.IsZero() {
		e.restart(now, consumed)
		return false
	}
	read := consumed - e.consumed
	if read <= uint64(window/2) {
		return false
	}
	fast := float64(now.Sub(e.start)) < 4*float64(read)/float64(window)*float64(srtt)
	e.restart(now, consumed)
	return fast
}

// verdict is what became of a frame, and so of the packet carrying it: a
// packet is acknowledged only if every frame in it was applied, so that
// nothing the peer hears acknowledged is ever dropped.
type verdict uint8

const (
	// applied: the frame took effect (a duplicate, or data the guarantee
	// lets us drop, such as a stale Order message, counts as applied).
	applied verdict = iota
	// refused: not now, for a reason of our own (a graceful CLOSE whose
	// final position lies beyond a gap); the packet is not acknowledged and
	// the peer sends what it carried again.
	refused
	// violated: the peer broke the protocol; the connection ends (violate).
	violated
)

// HandleDatagram processes one received datagram. It never fails: a
// malformed, misdirected, duplicated or unexpected datagram is dropped and
// counted in Stats, a packet refused for now is counted and left
// unacknowledged, and a protocol violation ends the connection with an
// error matching ErrProtocolViolation (the peer is told). b is not retained.
//
// HandleDatagram is for a datagram from the peer's current address; a caller
// that receives from several addresses uses HandleDatagramFrom.
func (c *Conn) HandleDatagram(now time.Time, b []byte) {
	c.handleDatagram(now, c.PeerAddr(), b)
}

// handleDatagram processes one datagram received from from (see
// HandleDatagramFrom).
func (c *Conn) handleDatagram(now time.Time, from netip.AddrPort, b []byte) {
	if c.life.ended() {
		return
	}
	c.traceAt(now)
	c.stats.BytesReceived += uint64(len(b))
	c.onPathDatagram(from, len(b))
	h, body, err := ParseHeader(b)
	if err != nil {
		c.stats.DatagramsDropped++
		return
	}
	switch h.Type {
	case PacketRetry:
		c.handleRetry(now, h, body)
		return
	case PacketReset:
		c.handleReset(h, body)
		return
	}
	largest, had := c.acks.largest()
	var pn uint64
	level := levelInitial
	if h.Type == PacketData {
		var ok bool
		if pn, ok = c.plainPacket(h, body); !ok {
			return
		}
	} else {
		// Opened before anything in it is looked at (protect_packet.go).
		var ok bool
		if body, pn, level, ok = c.openProtected(now, from, h, b); !ok {
			return
		}
	}
	if c.sec != nil && level != levelApp && !c.framesAllowed(level, body) {
		if level == levelInitial {
			c.stats.DroppedUnauthenticated++ // (a plaintext packet may carry only the first flight's frames)
		} else {
			c.violate(now, fmt.Sprintf("a frame a %v packet may not carry", level))
		}
		return
	}
	if c.acks.received(pn) {
		c.stats.DuplicatesDropped++
		if c.paths != nil {
			c.paths.sentFrom(now, from, pn, len(b), true) // (the original of a spoofer's copy)
		}
		return
	}
	if c.sec != nil {
		c.sec.rxLevel = level
		c.onPeerLevel(now, level)
	}
	c.tracePacket(false, pn, len(b), body)
	eliciting, probing, v, ok := c.handleFrames(now, from, body)
	switch {
	case !ok:
		c.stats.DatagramsDropped++
		return
	case c.life.ended():
		return
	case v == refused:
		c.stats.PacketsRefused++
		return
	case v == violated:
		return
	}
	c.stats.PacketsReceived++
	if (c.paths != nil || from != c.PeerAddr()) && (c.sec == nil || level == levelApp) {
		// (On a protected connection only a packet of the traffic keys
		// moves it: path frames travel at levelApp, see path.go.)
		c.onPathPacket(now, from, pn, len(b), !had || pn > largest, probing)
	}
	c.lastRecv = c.timers.offset(now)
	// (Offsets: now less the time an offset stands for, without making
	// that time.)
	quiet := eliciting && (c.lastElicitingRecv == 0 || time.Duration(c.lastRecv-c.lastElicitingRecv) >= c.cfg.HeartbeatPeriod/2) &&
		now.Sub(c.lastAckElicitingSent) >= c.cfg.HeartbeatPeriod/2
	c.acks.onPacket(now, pn, eliciting, c.cfg.MaxAckDelay, &c.timers)
	if eliciting {
		c.lastElicitingRecv = c.lastRecv
		c.armHeartbeat()
	}
	if quiet {
		// Neither side sent anything for half a heartbeat period: this is
		// the peer's heartbeat (or the first packet after a pause). The side
		// that only answers heartbeats never has its own fire, so it
		// gives back its idle memory here.
		c.trimIdle()
	}
	if c.lean {
		c.frameScratch = nil
		if c.bytesInFlight == 0 {
			c.recovery.rate = nil // a heartbeat's, acknowledged
		}
	}
	if !c.timers.armed(timerIdle) {
		c.timers.setAfter(timerIdle, now, c.cfg.IdleTimeout)
	}
}

// plainPacket checks a plaintext data packet's addressing and handshake
// state before its frames are applied (handling what comes before the
// peer's HELLO) and returns its full packet number; ok is false if it was
// dropped (and counted).
func (c *Conn) plainPacket(h Header, body []byte) (pn uint64, ok bool) {
	if !c.plainAccepted() {
		c.stats.DroppedUnauthenticated++
		return 0, false
	}
	var hello HelloFrame
	var helloOK bool
	if h.DstCID != c.localCID || !c.life.peerHelloSeen() {
		hello, helloOK = PeekHello(body)
	}
	if h.DstCID != c.localCID {
		if h.DstCID != 0 || !helloOK || (c.remoteCID != 0 && hello.SrcCID != c.remoteCID) {
			c.stats.DatagramsDropped++
			return 0, false
		}
	}
	if !c.life.peerHelloSeen() {
		if !helloOK {
			c.handleEarly(body)
			return 0, false
		}
		c.life.notePeerInitial(uint64(hello.InitialSeq))
	}
	expected := c.life.peerInitial()
	if largest, had := c.acks.largest(); had {
		expected = largest + 1
	}
	return unwrap32(expected, h.PacketNumber), true
}

// handleEarly looks at a packet that arrived before the peer's HELLO: only
// a listener's refusal matters; anything else is dropped unacknowledged
// (the peer sends it again).
func (c *Conn) handleEarly(body []byte) {
	var f frame // decoded directly: through decodeFrame's table f would escape
	if len(body) == 0 || body[0] != frameClose {
		c.stats.DatagramsDropped++
		return
	}
	if n, err := decodeClose(body, &f); err == nil && n == len(body) {
		switch f.close.code {
		case CloseRefused:
			c.terminate(ErrRefused)
			return
		case CloseHandshakeFailed:
			// A listener refused our mode (or, protected, our handshake).
			c.terminate(peerCloseError(&f.close))
			return
		}
	}
	c.stats.DatagramsDropped++
}

func (c *Conn) handleRetry(now time.Time, h Header, body []byte) {
	if h.DstCID != c.localCID || !c.life.retryAllowed() {
		c.stats.DatagramsDropped++
		return
	}
	cookie, err := parseRetry(body)
	if err != nil || (c.secure() && string(cookie) == string(c.life.cookie())) {
		// (A protected first flight spans datagrams, each answered with a
		// Retry: the copies of the one followed change nothing.)
		c.stats.DatagramsDropped++
		return
	}
	c.life.onRetry(cookie)
	if c.debugOn() {
		c.debug("rudp: Retry received: sending the HELLO again with its cookie",
			slog.Duration("after", now.Sub(c.started())))
	}
	c.onCryptoRetry()
	// The listener kept no state for our first flight: it is neither lost
	// (no congestion signal) nor in flight any more.
	c.discardSent()
	c.ptoCount = 0
	c.timers.stop(timerPTO)
}

// handleFrames applies the frames of a packet that came from from until one
// is not applied. It reports whether the packet was ack-eliciting, whether
// it was a probe (PADDING, PATH_CHALLENGE and PATH_RESPONSE only: it moves
// nothing, see path.go), the verdict on the frame it stopped at (applied if
// none), and false in ok if a frame was malformed.
// The frames before the one it stopped at took effect: each frame's
// handling is idempotent, so applying them again when the peer resends
// them, in other packets, changes nothing.
func (c *Conn) handleFrames(now time.Time, from netip.AddrPort, body []byte) (eliciting, probing bool, v verdict, ok bool) {
	// A field, not a local: decoding through the dispatch table would make
	// a local escape. Allocated on first use and dropped by trimIdle, so an
	// idle connection does not carry it.
	if c.frameScratch == nil {
		c.frameScratch = new(frame)
	}
	f := c.frameScratch
	f.ack.ranges = f.ack.ranges[:0]
	probing = true
	for len(body) > 0 {
		n, err := decodeFrame(body, f)
		if err != nil {
			return eliciting, probing, applied, false
		}
		body = body[n:]
		switch f.typ {
		case framePadding, framePathChallenge, framePathResponse:
		default:
			probing = false
		}
		switch {
		case f.typ == framePadding:
		case f.typ == framePathChallenge:
			c.onPathChallenge(from, &f.path)
		case f.typ == framePathResponse:
			c.onPathResponse(&f.path)
		case f.typ == framePing:
			eliciting = true
		case f.typ == frameAck:
			v = c.handleAck(now, &f.ack)
		case f.typ == frameHello:
			eliciting = true
			c.handleHello(now, &f.hello)
		case f.typ == frameClose:
			eliciting = true
			v = c.handleClose(now, &f.close)
		case f.typ == frameCrypto:
			eliciting = true
			v = c.handleCrypto(now, &f.crypto)
		case f.typ == frameStreamFin:
			eliciting = true
			v = c.handleStreamFin(now, &f.fin)
		case f.typ >= frameStreamOpen && f.typ <= frameStreamLimit:
			eliciting = true
			v = c.handleStreamCtl(now, f.typ, &f.stream)
		default: // MSG
			eliciting = true
			v = c.handleMsg(now, &f.msg)
		}
		if v != applied || c.life.ended() {
			break
		}
	}
	return eliciting, probing, v, true
}

// violate ends the connection because the peer broke the protocol: what
// it sent is discarded, and a CLOSE carrying CloseProtocolViolation and
// reason tells it why (as Abort does). It returns violated, for the frame
// handler to pass on.
func (c *Conn) violate(now time.Time, reason string) verdict {
	if c.life.aborting() {
		return violated // already ending: the first reason stands
	}
	c.stats.ProtocolViolations++
	if c.debugOn() {
		c.debug("rudp: protocol violation by the peer", slog.String("reason", reason))
	}
	c.Abort(now, &violationError{reason})
	c.discardReceived()
	return violated
}

func (c *Conn) handleHello(now time.Time, h *HelloFrame) {
	if !c.life.onPeerHello(h) {
		return // a retransmission: the ACK it elicits is what the peer needs
	}
	c.remoteCID = h.SrcCID
	c.ord.startReceive(uint64(h.InitialSeq))
	c.peerMaxData = max(c.peerMaxData, h.MaxData)
	c.peerMaxAckDelay = time.Duration(min(h.MaxAckDelay, uint64(time.Second/time.Microsecond))) * time.Microsecond
	// (decodeHello keeps it in range: 1..1 GiB.)
	c.peerMaxMessage = uint32(h.MaxMessageSize)
	if size := c.queuedOver(h.MaxMessageSize); size > 0 {
		// Send took it before the peer's limit was known, and no call is
		// left to report it to: sending it would be a violation, dropping
		// it silently a lie. The connection ends, saying why, on both sides.
		c.Abort(now, fmt.Errorf("%w: %d bytes, queued before the handshake; the peer takes at most %d",
			ErrMessageTooLarge, size, h.MaxMessageSize))
	}
	switch {
	case h.Protection != c.protection():
		// No downgrade, either way: the peer is told which mode we have.
		c.failHandshake(now, handshakeError("the peer asks for %v, this side is configured for %v", h.Protection, c.protection()))
	case c.secure():
		c.onSecureHello(now, h) // established once the handshake completes
	default:
		c.establish(now)
	}
}

// establish completes the connection's handshake (the peer's HELLO, and
// on a protected connection the cryptographic handshake).
func (c *Conn) establish(now time.Time) {
	if c.life.establish() {
		if c.debugOn() {
			// (took: since the connection was made; a server's is made by
			// the HELLO that echoed its cookie.)
			c.debug("rudp: handshake complete", slog.Uint64("remote_cid", c.remoteCID),
				slog.Duration("took", now.Sub(c.started())))
		}
		c.traceState(StateEstablished, nil)
		c.timers.stop(timerHandshake)
		if c.unsentBytes > c.fragPayload {
			c.startPathMTU() // written before: more waits than a datagram carries (pmtu.go)
		}
		c.armHeartbeat()
		c.maybeSendClose(now)
	}
}

// queuedOver returns the length of the first message waiting to be sent
// whose length is over limit, or 0.
func (c *Conn) queuedOver(limit uint64) uint64 {
	for _, f := range c.queue.waiting() {
		if f.msg.total > limit {
			return f.msg.total
		}
	}
	return 0
}

// handleClose applies a CLOSE frame. A graceful one takes effect only once
// every Delivery message before its final position has arrived (unless we
// closed ourselves and read nothing more): over a gap it is refused, so
// that the peer sends it again, and the application never reads io.EOF
// while a message sent before it is missing.
func (c *Conn) handleClose(now time.Time, cl *closeFrame) verdict {
	switch cl.code {
	case CloseGraceful:
		if c.life.peerClosed() {
			// A retransmission: our ACK (and courtesy CLOSE) went missing.
			if cl.final != c.life.peerFinal() {
				return c.violate(now, "CLOSE with another final position")
			}
			c.acks.sendNow()
			c.life.onCloseLost()
			return applied
		}
		switch {
		case c.life.peerFinned():
			// Its STREAM_FIN took effect: the gap check was made then.
			if cl.final != c.life.peerFinal() {
				return c.violate(now, "CLOSE with another final position than its STREAM_FIN")
			}
		case !c.life.closeRequested():
			if ok, why := c.ord.checkFinal(cl.final, false, "CLOSE"); why != "" {
				return c.violate(now, why)
			} else if !ok {
				return refused
			}
		}
		// The peer waits on our acknowledgement of its CLOSE: send it now.
		c.acks.sendNow()
		c.life.onPeerClose(cl.final)
		c.traceState(StateDraining, nil)
		c.discardSendQueues() // the peer reads nothing more
		if c.life.closeRequested() {
			// (Our CLOSE acknowledged would have ended us already.)
			if c.life.closeSent() {
				c.lingerClose(now)
			} else {
				c.maybeSendClose(now)
			}
		}
	case CloseRefused:
		c.terminate(ErrRefused)
	default:
		c.terminate(peerCloseError(cl))
	}
	return applied
}

// handleStreamFin applies a STREAM_FIN: the peer's direction of a stream
// has ended. Like a graceful CLOSE it takes effect only once every Delivery
// message before its final position has arrived (over a gap the packet is
// refused, so the peer sends it again, and io.EOF is never read while a
// message sent before it is missing); from then on the peer may send
// nothing more there (a Delivery message at or above the final position is
// a violation), and Recv returns io.EOF once everything before was read.
// We may still send. Only stream 0 exists so far: a STREAM_FIN for another
// stream names one never opened.
func (c *Conn) handleStreamFin(now time.Time, fin *streamFinFrame) verdict {
	if fin.stream != 0 {
		return c.handleStreamFinOn(now, fin)
	}
	if c.life.peerSendEnded() {
		// A retransmission (our ACK went missing), or one that crossed
		// the peer's CLOSE: the final position cannot have moved.
		if fin.final != c.life.peerFinal() {
			return c.violate(now, "STREAM_FIN with another final position")
		}
		return applied
	}
	if !c.life.closeRequested() {
		// (A side that closed reads nothing more: no gap matters.)
		if ok, why := c.ord.checkFinal(fin.final, true, "STREAM_FIN"); why != "" {
			return c.violate(now, why)
		} else if !ok {
			return refused
		}
	}
	c.life.onPeerFin(fin.final)
	// The peer's io.EOF may be what our application waits for to answer:
	// tell the peer at once that it arrived (its Close waits on it too).
	c.acks.sendNow()
	return applied
}

// handleMsg files a MSG frame: a whole message or a fragment. What the
// guarantees let it drop (a duplicate, a stale Order message, a None or
// Order message with no room) it drops, and the frame counts as applied;
// what an honest peer never sends is a violation.
func (c *Conn) handleMsg(now time.Time, f *msgFrame) verdict {
	c.lean = false
	if c.life.aborting() {
		// Ending with an error: nothing more is applied, nor acknowledged.
		return refused
	}
	if c.life.closeRequested() {
		return applied // we read nothing more (and say so: see advertisedMaxData)
	}
	total := len(f.data)
	if f.fragment {
		total = int(min(f.total, uint64(c.cfg.MaxMessageSize)+1))
	}
	if total > c.cfg.MaxMessageSize {
		// Our HELLO told the peer the limit before it could send anything.
		return c.violate(now, "message larger than the MaxMessageSize announced")
	}
	o := &c.ord
	var s *stream
	if f.stream != 0 {
		var v verdict
		if s, v = c.peerStream(now, f.stream); s == nil {
			return v // (a stream that ended: a late duplicate)
		}
		if s.recvErr != nil {
			return applied // the peer reset it: nothing more is read
		}
		o = &s.ord
		if f.guarantee != Delivery && s.peerFin && o.allRead(s.peerFinal) {
			c.stats.StaleDropped++ // (as on stream 0, below)
			return applied
		}
		defer c.drainStopped(s)
	} else if f.guarantee != Delivery && c.peerReadDone() {
		// The peer's direction has ended and all its Delivery data was
		// read: io.EOF may have been read, and nothing comes after it. A
		// None or Order message sent before the end and overtaken is
		// dropped, as its guarantee allows.
		c.stats.StaleDropped++
		return applied
	}
	if f.guarantee == None {
		return c.handleNone(now, o, s, f, total)
	}
	at := o.place(f)
	if f.guarantee == Delivery {
		if o.deliveryRead(at.d) {
			return applied // already read: a duplicate
		}
		if s != nil && s.peerFin && at.d >= o.deliveryIndex(s.peerFinal) {
			return c.violate(now, "Delivery message after the STREAM_FIN's final position")
		}
		if s == nil && c.life.peerSendEnded() && at.d >= o.deliveryIndex(c.life.peerFinal()) {
			if c.life.peerClosed() {
				return c.violate(now, "Delivery message after the CLOSE's final position")
			}
			return c.violate(now, "Delivery message after the STREAM_FIN's final position")
		}
	} else if o.stale(at.group, at.seq, f.inSet) {
		c.stats.StaleDropped++
		return applied
	}
	i, found := o.find(at.seq)
	var m *recvMsg
	if found {
		m = o.pending[i]
		if m.guarantee != f.guarantee || (!m.yielded && m.total != total) {
			return c.violate(now, "fragment inconsistent with its message")
		}
		if m.yielded || m.complete() {
			return applied // a duplicate
		}
	} else {
		cost := msgCredit(total)
		if f.guarantee == Delivery {
			if c.pendingDelivery+cost > c.creditWindow() {
				return c.violate(now, "Delivery data beyond the flow-control credit")
			}
			if s != nil && !s.creditAdmits(cost) {
				return c.violate(now, "Delivery data beyond the stream's flow-control credit")
			}
		} else if !c.admitUnreliable(cost) {
			return applied
		}
		m = c.reasm.newMsg(total, f.fragment, now)
		m.guarantee, m.seq, m.group, m.inSet, m.d, m.base, m.held = f.guarantee, at.seq, at.group, f.inSet, at.d, at.base, int32(cost)
		if s != nil && f.guarantee == Delivery {
			s.peerCharged += uint64(cost)
			m.stream = s
		}
		if f.guarantee == Order {
			m.base = at.d
			c.unreliableBytes += cost
		} else {
			c.pendingDelivery += cost
		}
		c.shrinkPool()
		o.insert(i, m)
	}
	if !c.fill(m, f) {
		if m.guarantee == Delivery {
			// Its acknowledged fragments are not sent again: dropping it
			// would lose them. An honest sender never scatters so much.
			return c.violate(now, "Delivery message in too many pieces")
		}
		c.freeRecvMsg(o.remove(i))
	}
	return applied
}

// handleNone files a None message of o, stream s's ordering domain (s nil:
// stream 0's). One sent twice (redundancy.go) is taken once: the other
// copy, or one too old to tell, is dropped.
func (c *Conn) handleNone(now time.Time, o *ordering, s *stream, f *msgFrame, total int) verdict {
	id := o.noneID(f.seq)
	if f.twice {
		if c.noneWindowOf(s).taken(id) {
			return applied // (as a duplicate Order or Delivery message is)
		}
	}
	var m *recvMsg
	if f.fragment {
		m = o.findNone(id)
	}
	if m != nil {
		if m.total != total {
			return c.violate(now, "fragment inconsistent with its message")
		}
		if m.complete() {
			return applied
		}
	} else {
		cost := msgCredit(total)
		if !c.admitUnreliable(cost) {
			return applied
		}
		if f.twice {
			c.noneWindowOf(s).take(id)
		}
		m = c.reasm.newMsg(total, f.fragment, now)
		m.guarantee, m.seq, m.held = None, id, int32(cost)
		c.unreliableBytes += cost
		c.shrinkPool()
		o.addNone(m)
	}
	if !c.fill(m, f) {
		o.removeNone(m)
		c.freeRecvMsg(m)
	}
	return applied
}

// admitUnreliable reports whether a None/Order message costing n bytes fits
// unreliableLimit: a quarter of the window, or the whole window for a
// message that comes alone.
func (c *Conn) admitUnreliable(n int) bool {
	if c.unreliableBytes+n > c.unreliableLimit() && (c.unreliableBytes > 0 || n > c.window()) {
		c.stats.UnreliableDropped++
		return false
	}
	return true
}

// release returns m's share of the receive buffers beyond keep bytes;
// Delivery credit returned grows the peer's window.
func (c *Conn) release(m *recvMsg, keep int) {
	if s := m.stream; s != nil {
		// Read or dropped: its stream's credit comes back whole, the 256
		// bytes of a record kept for duplicate detection included (they
		// stay on the connection's account): a stream's credit counts
		// what waits to be read, so that a reader that read everything
		// always leaves room for the largest message (§17.6).
		m.stream = nil
		c.streamConsumed(s, uint64(m.held))
	}
	n := int(m.held) - keep
	if n <= 0 {
		return
	}
	m.held = int32(keep)
	if m.guarantee == Delivery {
		c.pendingDelivery -= n
		c.consumed += uint64(n)
		c.maybeUpdateWindow()
	} else {
		c.unreliableBytes -= n
	}
	c.shrinkPool() // (while limited, the credit window shrinks as the application reads)
}

// maybeUpdateWindow sends a window update once the application has read a
// quarter of the window since we last advertised it.
func (c *Conn) maybeUpdateWindow() {
	if c.advertisedMaxData()-c.maxDataSent >= uint64(c.window()/4) {
		c.acks.sendNow()
	}
}

// nextMessage picks the next message the guarantees allow the application
// to read (ordering.next), or ok false.
func (c *Conn) nextMessage() (Message, bool) {
	return c.nextIn(&c.ord, &c.yieldedMsg, c.life.peerSendEnded())
}

// nextIn is nextMessage in the ordering domain o, whose message the
// application holds is *yielded; peerEnded: the peer's direction of it
// ended (incomplete None/Order messages will not complete).
func (c *Conn) nextIn(o *ordering, yielded **recvMsg, peerEnded bool) (Message, bool) {
	m := o.next(c.dropStale)
	if m == nil {
		o.prune(*yielded, c.freeRecvMsg)
		if peerEnded {
			o.removeIf(incompleteUnreliable, c.freeRecvMsg)
		}
		return Message{}, false
	}
	c.stats.MessagesReceived++
	*yielded = m
	if m.guarantee != None {
		o.prune(m, c.freeRecvMsg)
	}
	return Message{Data: m.data, Guarantee: m.guarantee}, true
}

// dropStale frees an Order message overtaken before it could be read.
func (c *Conn) dropStale(m *recvMsg) {
	c.stats.StaleDropped++
	c.freeRecvMsg(m)
}

// releaseYielded frees the message the previous Recv returned.
func (c *Conn) releaseYielded() { c.releaseIn(&c.ord, &c.yieldedMsg) }

// releaseIn frees *yielded, the message the application held of domain o.
func (c *Conn) releaseIn(o *ordering, yielded **recvMsg) {
	m := *yielded
	if m == nil {
		return
	}
	*yielded = nil
	if m.guarantee != None && o.holds(m) {
		// still needed for duplicate detection: keep the entry, drop its data
		c.release(m, msgCreditOverhead)
		c.reasm.freeData(m, c.heldFree())
		return
	}
	c.freeRecvMsg(m)
}

// incompleteUnreliable: a None/Order message still being reassembled.
func incompleteUnreliable(m *recvMsg) bool { return m.guarantee != Delivery && !m.complete() }

// armReassembly schedules the expiry of the oldest incomplete unreliable message.
func (c *Conn) armReassembly() {
	var first time.Time
	c.forEachDomain(func(o *ordering, _ *recvMsg) {
		o.forEach(func(m *recvMsg) {
			if incompleteUnreliable(m) && (first.IsZero() || m.firstAt.Before(first)) {
				first = m.firstAt
			}
		})
	})
	if first.IsZero() {
		c.timers.stop(timerReassembly)
		return
	}
	c.timers.set(timerReassembly, first.Add(c.cfg.ReassemblyTimeout))
}

// expireReassembly drops incomplete None/Order messages that waited too long.
func (c *Conn) expireReassembly(now time.Time) {
	expired := func(m *recvMsg) bool {
		return incompleteUnreliable(m) && !m.firstAt.Add(c.cfg.ReassemblyTimeout).After(now)
	}
	c.forEachDomain(func(o *ordering, _ *recvMsg) {
		o.removeIf(expired, func(m *recvMsg) {
			c.stats.ReassemblyExpired++
			c.freeRecvMsg(m)
		})
	})
	c.armReassembly()
}

// discardReceived frees everything held (the connection ended).
func (c *Conn) discardReceived() {
	c.forEachDomain(func(o *ordering, yielded *recvMsg) { o.clear(yielded, c.freeRecvMsg) })
	// Nothing more is received: what the pools kept for reuse goes too.
	c.reasm.dropPools()
}

// heldLimit bounds the memory a connection holds for its peer beyond its
// fixed records and the receive arena: Delivery messages are charged at
// most creditWindow, None/Order ones at most the window (unreliableLimit,
// or one message alone), each message's footprint stays within its charge,
// and the buffer pool fills only what the charges leave.
func (c *Conn) heldLimit() int { return c.creditWindow() + c.window() }

// heldFree is what heldLimit leaves beside the messages' charges: the room
// for reassembly's pools (reassembly.room).
func (c *Conn) heldFree() int { return c.heldLimit() - c.pendingDelivery - c.unreliableBytes }

// shrinkPool drops free records and pooled buffers that new charges left
// no room for.
func (c *Conn) shrinkPool() { c.reasm.shrink(c.heldFree()) }

// fill puts a frame's data in its message (reassembly.fill) and arms the
// expiry of an incomplete None/Order message. It reports false when the
// message must be dropped.
func (c *Conn) fill(m *recvMsg, f *msgFrame) bool {
	ok, stored := c.reasm.fill(m, f, c.heldFree)
	if ok && stored && !m.complete() && m.guarantee != Delivery && !c.timers.armed(timerReassembly) {
		// (An armed timer is due no later than this message's expiry: it
		// waits for an older one, and expireReassembly re-arms exactly.)
		c.armReassembly()
	}
	return ok
}

// freeRecvMsg frees m, its charge and its memory.
func (c *Conn) freeRecvMsg(m *recvMsg) {
	c.release(m, 0)
	free := c.heldFree()
	c.reasm.freeData(m, free)
	c.reasm.recycle(m, free)
}
