package core

// lifecycle is the connection's life from its handshake to its end
// (PROTOCOL.md §8): the state it is in and why it ended, our HELLO and the
// peer's (with the cookie a Retry gave us), and the close in both
// directions, graceful or an abort. Its job, and nothing more: say where
// the connection stands (established, ended, the error every later call
// gets, closeWait), append our HELLO and CLOSE when they are owed
// (appendHello, appendClose), and take what becomes of them (acknowledged,
// lost) and what the peer's HELLO, Retry and CLOSE say. What an end
// discards (queues, packets in flight, received data) is the Conn's
// business (Conn.terminate).
type lifecycle struct {
	state   connState
	err     error // why the connection ended; nil for a graceful end
	hs      handshakeState
	closing closeState
}

type connState uint8

const (
	stateHandshake   connState = iota // HELLO sent, peer's not yet received
	stateEstablished                  // both directions open
	stateClosed                       // terminal: err says why
)

// handshakeState tracks our HELLO and the peer's.
type handshakeState struct {
	// (The small fields first: they share one word with the cookie's tail.)
	helloNeeded bool // our HELLO must go out (first time or again)
	helloAcked  bool
	peerHello   bool
	cookieLen   uint8 // at most MaxCookieLen
	retries     uint8 // Retry packets accepted (at most maxRetries)
	// peerMaxDatagram is the largest UDP payload the peer accepts (its
	// HELLO's MaxDatagramSize); 0 until the HELLO arrived.
	peerMaxDatagram uint16
	// cookie is what a Retry gave us (cookieLen bytes of it), which our
	// HELLO echoes: nil before a Retry, and once the handshake completed
	// and our HELLO was acknowledged (dropCookie), so that only a dial in
	// progress carries it.
	cookie      *[MaxCookieLen]byte
	peerInitial uint64 // the peer's InitialSequence
}

// closeState tracks a graceful close in both directions, and the
// half-close of stream 0 (STREAM_FIN) in each.
type closeState struct {
	requested  bool // local Close called
	needed     bool // our CLOSE frame must go out (first time or again)
	sent       bool
	acked      bool
	peerClosed bool  // the peer's graceful CLOSE arrived, every Delivery message before its final position with it
	sends      uint8 // graceful CLOSE frames sent (bounded by maxCloseSends)
	// writeClosed: local CloseWrite (or Close) called: our direction has
	// ended, Send fails. finNeeded: our STREAM_FIN must go out (first time
	// or again); finAcked: the peer acknowledged it. (These and peerFin
	// sit in what was closeState's padding: they cost the Conn no bytes.)
	writeClosed bool
	finNeeded   bool
	// peerFinal is the low 32 bits of the delivery index after the peer's
	// last Delivery message, from its STREAM_FIN or graceful CLOSE (valid
	// once peerFin or peerClosed).
	peerFinal uint32
	finAcked  bool
	// peerFin: the peer's STREAM_FIN for stream 0 took effect (every
	// Delivery message before its final position had arrived): the peer
	// sends nothing more, we read to io.EOF, and we may still send.
	peerFin bool
	// abortReason: a local Abort (CLOSE carries CloseError) or a protocol
	// violation by the peer (a *violationError: CloseProtocolViolation).
	abortReason error
}

// The graceful close's bounds. Our CLOSE is retransmitted on the probe timer,
// backing off at most closeBackoff doublings, until the peer acknowledges it
// or maxCloseSends copies went unanswered: bounding the count rather than the
// time keeps the chance that a live peer never hears it negligible (10%
// loss: 1e-10) while a vanished peer costs about 35 PTOs, not an idle timeout.
// Once both sides have sent their CLOSE, each lingers closeLingerPTOs PTOs
// so that a retransmitted CLOSE of the peer's is still acknowledged.
const (
	maxCloseSends   = 10
	closeBackoff    = 2
	closeLingerPTOs = 3
)

// maxRetries is how many Retry packets a client follows before giving up
// on cookies.
const maxRetries = 4

// start begins the handshake: our first HELLO is owed.
func (l *lifecycle) start() { l.hs.helloNeeded = true }

// endedWith is why the connection ended: nil while it is open and after a
// graceful end.
func (l *lifecycle) endedWith() error { return l.err }

// established reports whether the handshake completed (and nothing ended
// the connection since).
func (l *lifecycle) established() bool { return l.state == stateEstablished }

// ended reports whether the connection ended.
func (l *lifecycle) ended() bool { return l.state == stateClosed }

// endError is the error every Send and Recv returns once the connection is
// ending: the error that ended it, an abort's reason, or ErrClosed after
// our own Close; nil while it is open (and after a graceful end the Close
// of which was the peer's: then Recv reads to io.EOF).
func (l *lifecycle) endError() error {
	switch {
	case l.state == stateClosed && l.err != nil:
		return l.err
	case l.closing.abortReason != nil:
		return l.closing.abortReason
	case l.closing.requested:
		return ErrClosed
	}
	return nil
}

// closeWait reports whether the peer's graceful CLOSE took effect and ours
// has not gone out (TCP's CLOSE_WAIT): everything the peer sent is here and
// stays readable to io.EOF, and the peer may well be gone, so that neither
// silence nor a sign of its absence (the idle timer, a stateless reset, a
// port unreachable) ends the connection; our own close does.
func (l *lifecycle) closeWait() bool { return l.closing.peerClosed && !l.closing.sent }

// end makes the connection ended with err (nil: gracefully), unless it was
// aborting: then with the abort's reason, whatever ended it (the first
// fatal error stands). It returns the error it ended with.
func (l *lifecycle) end(err error) error {
	if l.closing.abortReason != nil {
		err = l.closing.abortReason
	}
	l.state = stateClosed
	l.err = err
	return err
}

// setCookie sets the cookie our HELLO echoes.
func (l *lifecycle) setCookie(cookie []byte) {
	if l.hs.cookie == nil {
		l.hs.cookie = new([MaxCookieLen]byte)
	}
	l.hs.cookieLen = uint8(copy(l.hs.cookie[:], cookie))
}

// dropCookie forgets the cookie once nothing can echo it again: the
// handshake completed (a protected one compares it with the listener's
// transport parameters before) and our HELLO was acknowledged (it is not
// sent again).
func (l *lifecycle) dropCookie() {
	if l.state == stateEstablished && l.hs.helloAcked {
		l.hs.cookie, l.hs.cookieLen = nil, 0
	}
}

// helloWanted reports whether our HELLO goes in the next packet: the first
// time, again after a loss or a Retry, and in every probe until the peer
// acknowledged it (the peer drops everything else it gets before it).
func (l *lifecycle) helloWanted(probe bool) bool {
	return l.hs.helloNeeded || (probe && !l.hs.helloAcked)
}

// appendHello appends our HELLO h, with our cookie, to buf[:n].
func (l *lifecycle) appendHello(buf []byte, n int, h *HelloFrame) int {
	h.Cookie = l.cookie()
	l.hs.helloNeeded = false
	return len(appendHello(buf[:n], h))
}

// cookie is the cookie our HELLO echoes (empty before a Retry).
func (l *lifecycle) cookie() []byte {
	if l.hs.cookie == nil {
		return nil
	}
	return l.hs.cookie[:l.hs.cookieLen]
}

// helloAcked reports whether the peer acknowledged our HELLO.
func (l *lifecycle) helloAcked() bool { return l.hs.helloAcked }

// onHelloAcked: a packet carrying our HELLO was acknowledged.
func (l *lifecycle) onHelloAcked() {
	l.hs.helloAcked, l.hs.helloNeeded = true, false
	l.dropCookie()
}

// onHelloLost: a packet carrying our HELLO was lost (or probed again).
func (l *lifecycle) onHelloLost() {
	if !l.hs.helloAcked {
		l.hs.helloNeeded = true
	}
}

// retryAllowed reports whether a Retry may still be followed: before the
// peer's HELLO, at most maxRetries of them.
func (l *lifecycle) retryAllowed() bool { return !l.hs.peerHello && l.hs.retries < maxRetries }

// onRetry takes the cookie of a Retry that retryAllowed let us follow: our
// HELLO goes again, echoing it.
func (l *lifecycle) onRetry(cookie []byte) {
	l.hs.retries++
	l.setCookie(cookie)
	l.hs.helloNeeded = true
}

// peerHelloSeen reports whether the peer's HELLO arrived.
func (l *lifecycle) peerHelloSeen() bool { return l.hs.peerHello }

// onPeerHello takes the peer's HELLO; false for a retransmission.
func (l *lifecycle) onPeerHello(h *HelloFrame) bool {
	if l.hs.peerHello {
		return false
	}
	l.hs.peerHello = true
	l.hs.peerInitial = uint64(h.InitialSeq)
	// (decodeHello keeps it in range: 1200..65535.)
	l.hs.peerMaxDatagram = uint16(h.MaxDatagramSize)
	return true
}

// establish completes the handshake; false if it had completed (or the
// connection ended).
func (l *lifecycle) establish() bool {
	if l.state != stateHandshake {
		return false
	}
	l.state = stateEstablished
	l.dropCookie()
	return true
}

// requestClose records a local Close; false if the connection ended or a
// Close was made already.
func (l *lifecycle) requestClose() bool {
	if l.state == stateClosed || l.closing.requested {
		return false
	}
	l.closing.requested = true
	l.closing.writeClosed = true
	return true
}

// closeWrite records a local CloseWrite: our direction of stream 0 ends,
// and our STREAM_FIN is owed (unless the peer closed: it reads nothing
// more); false if it ended already (CloseWrite or Close).
func (l *lifecycle) closeWrite() bool {
	if l.closing.writeClosed || l.closing.requested {
		return false
	}
	l.closing.writeClosed = true
	l.closing.finNeeded = !l.closing.peerClosed
	return true
}

// writeEnded reports whether our direction has ended (CloseWrite or
// Close): sends fail with ErrClosed.
func (l *lifecycle) writeEnded() bool { return l.closing.writeClosed }

// finWanted reports whether our STREAM_FIN is owed and may go now, but for
// what is queued before it: the connection is established, not aborting,
// and no CLOSE was sent or is owed (it carries the same final position).
func (l *lifecycle) finWanted() bool {
	return l.closing.finNeeded && l.state == stateEstablished && !l.closing.sent &&
		!l.closing.needed && l.closing.abortReason == nil
}

// appendFin appends our STREAM_FIN for stream 0, with final, the final
// position (the delivery index after our last Delivery message: Send fails
// from CloseWrite on, so it no longer moves), to buf[:n].
func (l *lifecycle) appendFin(buf []byte, n int, final uint32) int {
	l.closing.finNeeded = false
	return len(appendStreamFin(buf[:n], &streamFinFrame{stream: 0, final: final}))
}

// onFinAcked: the peer acknowledged our STREAM_FIN.
func (l *lifecycle) onFinAcked() { l.closing.finAcked = true }

// onFinLost: a packet carrying our STREAM_FIN was lost, or a probe must
// carry it: it goes again unless acknowledged, or the peer closed (it reads
// nothing more).
func (l *lifecycle) onFinLost() {
	if !l.closing.finAcked && !l.closing.peerClosed {
		l.closing.finNeeded = true
	}
}

// finAcked reports whether the peer acknowledged our STREAM_FIN.
func (l *lifecycle) finAcked() bool { return l.closing.finAcked }

// peerSendEnded reports whether the peer's direction ended: its STREAM_FIN
// or its graceful CLOSE took effect (peerFinal is valid).
func (l *lifecycle) peerSendEnded() bool { return l.closing.peerFin || l.closing.peerClosed }

// peerFinned reports whether the peer's STREAM_FIN took effect.
func (l *lifecycle) peerFinned() bool { return l.closing.peerFin }

// onPeerFin: the peer's STREAM_FIN with final position final took effect.
func (l *lifecycle) onPeerFin(final uint32) {
	l.closing.peerFinal = final
	l.closing.peerFin = true
}

// abort records a local abort (or the peer's violation) for reason, its
// CLOSE owed at once; false if the connection ended or aborts already (the
// first reason stands).
func (l *lifecycle) abort(reason error) bool {
	if l.state == stateClosed || l.closing.abortReason != nil {
		return false
	}
	l.closing.requested = true
	l.closing.abortReason = reason
	l.closing.needed = true
	return true
}

// aborting reports whether the connection ends with an error of its own
// (Abort, a violation by the peer) and is not yet ended.
func (l *lifecycle) aborting() bool { return l.closing.abortReason != nil }

// closeReady reports whether our graceful CLOSE waits only for what we sent
// to be acknowledged (or the peer to have closed): Close was called, and the
// CLOSE is neither owed nor sent.
func (l *lifecycle) closeReady() bool {
	return l.closing.requested && !l.closing.sent && !l.closing.needed && l.state == stateEstablished
}

// queueClose makes our CLOSE owed.
func (l *lifecycle) queueClose() { l.closing.needed = true }

// closeOwed reports whether our CLOSE goes in the next packet.
func (l *lifecycle) closeOwed() bool { return l.closing.needed }

// abortOwed reports whether an abort's CLOSE goes in the next packet (it
// goes alone, ahead of congestion control: see pollTransmit).
func (l *lifecycle) abortOwed() bool { return l.closing.needed && l.closing.abortReason != nil }

// closeSent reports whether our CLOSE went out (data no longer does).
func (l *lifecycle) closeSent() bool { return l.closing.sent }

// appendClose appends our CLOSE to buf[:n]: graceful, with final, the
// final position (the delivery index after our last Delivery message:
// Send fails from Close on, so it no longer moves), or carrying why we
// aborted.
func (l *lifecycle) appendClose(buf []byte, n int, final uint32) int {
	l.closing.needed = false
	l.closing.sent = true
	l.closing.sends++
	switch r := l.closing.abortReason.(type) {
	case nil:
		return len(appendClose(buf[:n], CloseGraceful, final, ""))
	case *violationError:
		return len(appendClose(buf[:n], CloseProtocolViolation, 0, r.reason))
	case handshakeFailure:
		return len(appendClose(buf[:n], CloseHandshakeFailed, 0, r.reason()))
	default:
		return len(appendClose(buf[:n], CloseError, 0, r.Error()))
	}
}

// closeIsCourtesy reports whether our graceful CLOSE answers the peer's:
// it is not waited for (the peer may be gone); we linger instead, sending
// it again, with the ACK of the peer's, on the probe timer meanwhile.
func (l *lifecycle) closeIsCourtesy() bool {
	return l.closing.peerClosed && l.closing.abortReason == nil
}

// onCloseAcked: the peer acknowledged our CLOSE: the connection ends.
func (l *lifecycle) onCloseAcked() { l.closing.acked = true }

// closeAcked reports whether the peer acknowledged our CLOSE.
func (l *lifecycle) closeAcked() bool { return l.closing.acked }

// onCloseLost: a packet carrying our CLOSE was lost, or a probe must carry
// it: it goes again unless acknowledged.
func (l *lifecycle) onCloseLost() {
	if l.closing.sent && !l.closing.acked {
		l.closing.needed = true
	}
}

// closeGivenUp reports whether every copy of our graceful CLOSE went
// unanswered (maxCloseSends): the peer is gone, or closed and lingered out.
func (l *lifecycle) closeGivenUp() bool {
	return l.closing.sent && l.closing.sends >= maxCloseSends && l.closing.abortReason == nil
}

// peerCloseError is what the peer's CLOSE with an error code ends the
// connection with: the code's error, with the peer's reason.
func peerCloseError(cl *closeFrame) error {
	switch {
	case cl.code == CloseProtocolViolation:
		return &closeError{code: ErrPeerProtocolViolation, reason: string(cl.reason)}
	case cl.code == CloseHandshakeFailed:
		return &closeError{code: ErrHandshakeFailed, reason: string(cl.reason), said: "the peer said"}
	case len(cl.reason) == 0:
		return ErrAborted
	}
	return &closeError{code: ErrAborted, reason: string(cl.reason)}
}

// handshaking reports whether the handshake is under way.
func (l *lifecycle) handshaking() bool { return l.state == stateHandshake }

// closeRequested reports whether we closed (Close or an abort): we read
// nothing more.
func (l *lifecycle) closeRequested() bool { return l.closing.requested }

// peerClosed reports whether the peer's graceful CLOSE took effect.
func (l *lifecycle) peerClosed() bool { return l.closing.peerClosed }

// peerFinal is the final position of the peer's STREAM_FIN or graceful
// CLOSE (valid once peerSendEnded).
func (l *lifecycle) peerFinal() uint32 { return l.closing.peerFinal }

// onPeerClose: the peer's graceful CLOSE with final position final took
// effect.
func (l *lifecycle) onPeerClose(final uint32) {
	l.closing.peerFinal = final
	l.closing.peerClosed = true
	l.closing.finNeeded = false // (it reads nothing more)
}

// peerInitial is the peer's InitialSequence: its packet numbers start there.
func (l *lifecycle) peerInitial() uint64 { return l.hs.peerInitial }

// notePeerInitial records the peer's InitialSequence from a HELLO seen in
// a packet before it is applied (its packet number unwraps against it).
func (l *lifecycle) notePeerInitial(initial uint64) { l.hs.peerInitial = initial }

// peerMaxDatagram is the largest UDP payload the peer accepts, from its
// HELLO; 0 until the HELLO arrived.
func (l *lifecycle) peerMaxDatagram() int { return int(l.hs.peerMaxDatagram) }
