package core

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Conn is one connection's protocol state machine, sans I/O: it never reads
// a clock, touches a socket, starts a goroutine or blocks. Its caller feeds
// it received datagrams (HandleDatagram), asks it for datagrams to send
// (PollTransmit), fires its timers (NextTimeout, HandleTimeout) and moves
// messages in and out (Send, Recv). Every input carries the current time.
//
// Inside, a Conn is its parts, each a component with its own methods and
// a doc comment stating its job: the lifecycle (life), acknowledgements
// (acks), the ordering domain (ord), reassembly (reasm), loss recovery with
// the packets in flight (recovery, sent), the timer slots (timers), the
// send queues (sender) and flow control (receiver). The Conn's own methods
// join them and do nothing else: they hand each frame received to the part
// it concerns, ask each part for its frames when a packet is built
// (pollTransmit), and tell each part what became of the packets it filled
// (onPacketAcked, onPacketLost).
//
// A Conn is not safe for concurrent use: its owner serializes all calls
// (the root package holds one mutex per Conn).
type Conn struct {
	cfg connConfig
	// obs is the logger and the tracer (trace.go), nil when neither is
	// set: one pointer for both, and a nil check on the hot path.
	obs      *observer
	localCID uint64
	// remoteCID is the peer's connection ID, learnt from its HELLO; 0 until then.
	remoteCID uint64

	// life is the handshake and the close (lifecycle.go).
	life lifecycle
	// acks is what we owe the peer (acks.go).
	acks acks
	// ord is the connection's ordering domain (ordering.go).
	ord ordering
	// reasm keeps the received messages' bytes (reassembly.go).
	reasm reassembly

	sender
	receiver
	recovery

	// pmtu is the path MTU search (pmtu.go), allocated when the handshake
	// completes if MaxDatagramSize leaves room above BaseDatagramSize.
	pmtu *pathMTU
	// paths holds the peer's addresses once it has more than one (path.go),
	// allocated when a second one appears.
	paths *pathSet
	// streams holds the streams other than 0 (stream.go), allocated when
	// the first one opens on either side.
	streams *streamTable
	// redund is redundancy for small messages (redundancy.go), allocated
	// when a stream is given it or the peer sends stream 0 a None message
	// twice.
	redund *redundancy
	// sec is the packet protection and the cryptographic handshake
	// (security.go), allocated when the connection is configured for
	// protection; nil on a plaintext connection.
	sec *security
	// pathSeed seeds the path challenges' source (pathSet.rng): drawn from
	// the Endpoint's Rand (or Config.Rand) when the connection is made, so
	// that the core reads no global randomness.
	pathSeed uint64

	timers timerSet
	stats  Stats

	// The peer's liveness: when we last heard from it (the idle timer) and
	// last heard something ack-eliciting (the heartbeat, with
	// recovery.lastAckElicitingSent), as offsets on the timers' clock
	// (timerSet.offset; 0: never): 8 bytes each, not a time.Time's 24.
	lastRecv          int64
	lastElicitingRecv int64
	// (lean and unreachableProbes, the Conn's own flags, are declared in
	// the sender's padding: 8 bytes of the size class.)
}

// NewConn returns a connection that starts its handshake at now.
// localCID must be nonzero and unique among the connections sharing a
// socket: the peer puts it in the header of every packet it sends here.
func NewConn(cfg *Config, localCID uint64, now time.Time) (*Conn, error) {
	return newConn(cfg, localCID, now, false)
}

// newConn is NewConn for a connection a listener accepted (server) or one
// that dialed.
func newConn(cfg *Config, localCID uint64, now time.Time, server bool) (*Conn, error) {
	if localCID == 0 {
		return nil, fieldError("localCID", localCID, "must be nonzero")
	}
	var full Config
	if cfg != nil {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		full = *cfg
	}
	full.fillDefaults()
	c := &Conn{cfg: full.connConfig()}
	c.obs = newObserver(&full, TraceInfo{LocalCID: localCID, Server: server, Start: now})
	c.timers.base = now
	c.localCID = localCID
	if full.Rand != nil {
		c.pathSeed = full.Rand.Uint64()
	}
	c.life.start()
	c.initSecurity(&full)
	c.initSender()
	if full.Redundancy {
		c.redundancyState().zero = true
	}
	c.initReceiver(full.ReceiveArenaSize)
	c.initRecovery(full.NewCongestionController)
	c.lastRecv = c.timers.offset(now)
	c.timers.set(timerHandshake, now.Add(c.cfg.HandshakeTimeout))
	c.timers.set(timerIdle, now.Add(c.cfg.IdleTimeout))
	return c, nil
}

// NewConnectionID draws a random nonzero connection ID from r.
func NewConnectionID(r rand.Source) uint64 {
	for {
		if id := r.Uint64(); id != 0 {
			return id
		}
	}
}

// LocalCID returns this side's connection ID.
func (c *Conn) LocalCID() uint64 { return c.localCID }

// RemoteCID returns the peer's connection ID (0 before its HELLO arrived).
func (c *Conn) RemoteCID() uint64 { return c.remoteCID }

// Established reports whether the handshake has completed on this side.
func (c *Conn) Established() bool { return c.life.established() }

// Closed reports whether the connection has ended; Err says why.
func (c *Conn) Closed() bool { return c.life.ended() }

// Err returns why the connection ended: nil while it is open and after a
// graceful close, ErrIdleTimeout, ErrRefused and so on otherwise.
func (c *Conn) Err() error { return c.life.endedWith() }

// PeerClosed reports whether the peer closed the connection gracefully
// (its CLOSE: it reads nothing more). A peer that only ended its direction
// (CloseWrite) has not closed; see PeerWriteClosed.
func (c *Conn) PeerClosed() bool { return c.life.peerClosed() }

// PeerWriteClosed reports whether the peer's direction has ended, by its
// CloseWrite (STREAM_FIN) or its Close: it sends nothing more, and Recv
// returns io.EOF once everything it sent before was read.
func (c *Conn) PeerWriteClosed() bool { return c.life.peerSendEnded() }

// CloseWrite ends our direction of stream 0 (a half-close, as TCP's
// shutdown(SHUT_WR)): Send fails with ErrClosed from now on, whatever the
// guarantee; what was sent is still delivered, then a STREAM_FIN tells the
// peer, whose Recv returns io.EOF once it has read all of it. We keep
// receiving until the peer ends its own direction or closes. The
// STREAM_FIN goes out as soon as every message queued before it was sent
// (not acknowledged), and is retransmitted until acknowledged. Calling it
// again, or after Close, does nothing; on a connection that has ended (or
// is aborting) it returns that error (ErrClosed after a graceful end).
// Close after CloseWrite closes as ever (its CLOSE carries the same final
// position).
func (c *Conn) CloseWrite(now time.Time) error {
	switch err := c.life.endError(); {
	case err != nil && err != ErrClosed:
		return err
	case c.life.ended():
		return ErrClosed
	}
	c.life.closeWrite()
	return nil
}

// SetCookie sets the cookie this side echoes in its HELLO (a listener hands
// it out in a Retry packet; HandleDatagram takes it from there by itself).
func (c *Conn) SetCookie(cookie []byte) {
	c.life.setCookie(cookie)
}

// Close starts a graceful close: what was sent is still delivered and
// acknowledged, then a CLOSE tells the peer. The connection reports Closed
// once the peer acknowledged it, after a short linger if the peer closed too,
// or once maxCloseSends copies of the CLOSE went unanswered.
func (c *Conn) Close(now time.Time) {
	if !c.life.requestClose() {
		return
	}
	c.traceAt(now)
	c.traceState(StateClosing, nil)
	if c.life.peerClosed() {
		// The peer reads nothing more: nothing to flush.
		c.discardSendQueues()
	}
	c.discardReceived()
	// Tell the peer at once that it may drain (see advertisedMaxData),
	// every stream too (streamCredit).
	c.acks.sendNow()
	c.openStreamCredit()
	c.maybeSendClose(now)
}

// Abort ends the connection at once, telling the peer with a CLOSE carrying
// an error code; queued data is discarded. reason becomes Err. A connection
// already aborting keeps its first reason.
func (c *Conn) Abort(now time.Time, reason error) {
	if !c.life.abort(reason) {
		return
	}
	c.traceAt(now)
	c.traceState(StateClosing, nil)
	c.discardSendQueues()
	c.timers.set(timerClose, now.Add(c.recovery.pto()))
}

// maybeSendClose queues our CLOSE once everything we sent was acknowledged.
func (c *Conn) maybeSendClose(now time.Time) {
	if c.life.closeReady() && (c.life.peerClosed() || c.sendQueuesDrained()) {
		c.life.queueClose()
	}
}

// lingerClose ends the connection closeLingerPTOs PTOs from now (sooner if
// our CLOSE is acknowledged): both sides have sent their CLOSE, and all that
// is left is to acknowledge the peer's retransmissions of its own.
func (c *Conn) lingerClose(now time.Time) {
	end := now.Add(closeLingerPTOs * c.recovery.pto())
	if t := c.timers.get(timerClose); t.IsZero() || end.Before(t) {
		c.timers.set(timerClose, end)
	}
}

// terminate ends the connection with err (nil: gracefully) and frees its
// buffers. A connection that was aborting ends with its abort's reason,
// whatever ended it (the CLOSE acknowledged, the close timer, the idle
// timer, the peer's CLOSE): the first fatal error stands.
func (c *Conn) terminate(err error) {
	if c.life.ended() {
		return
	}
	err = c.life.end(err)
	c.closeHandshake()
	c.discardSendQueues()
	c.discardSent()
	c.discardReceived()
	c.timers.stopAll()
	if c.debugOn() {
		reason := "graceful"
		if err != nil {
			reason = err.Error()
		}
		c.debug("rudp: connection ended", slog.String("reason", reason), slog.Any("err", err),
			slog.Bool("established", c.life.peerHelloSeen()), slog.Uint64("remote_cid", c.remoteCID),
			slog.Uint64("packets_sent", c.stats.PacketsSent), slog.Uint64("packets_received", c.stats.PacketsReceived),
			slog.Uint64("packets_lost", c.stats.PacketsLost))
	}
	c.traceState(StateClosed, err)
}

// NextTimeout returns when HandleTimeout must next be called; the zero time
// means no timer is armed (the connection is closed).
func (c *Conn) NextTimeout() time.Time {
	next := c.timers.next()
	if c.paths != nil && !c.life.ended() {
		if t := c.paths.timeout(); t != 0 && (next == 0 || t < next) {
			next = t
		}
	}
	if t := c.copyTimeout(); t != 0 && !c.life.ended() && (next == 0 || t < next) {
		next = t
	}
	if next == 0 {
		return time.Time{}
	}
	return c.timers.time(next)
}

// HandleTimeout fires every timer due at now. Calling it early is harmless.
func (c *Conn) HandleTimeout(now time.Time) {
	if c.life.ended() {
		return
	}
	c.traceAt(now)
	at := c.timers.offset(now)
	due := func(k timerKind) bool { return c.timers.fire(k, at) }
	if due(timerIdle) && !c.life.closeWait() {
		// (Once the peer's graceful CLOSE took effect and before our own,
		// nothing more is owed by the peer, which may well be gone: what
		// it sent stays readable to io.EOF until the application closes,
		// as in TCP's CLOSE_WAIT. Ending here would discard it.)
		lastRecv := c.timers.time(c.lastRecv)
		if now.Sub(lastRecv) >= c.cfg.IdleTimeout {
			c.terminate(ErrIdleTimeout)
			return
		}
		c.timers.set(timerIdle, lastRecv.Add(c.cfg.IdleTimeout))
	}
	if due(timerHandshake) && c.life.handshaking() {
		c.terminate(ErrHandshakeTimeout)
		return
	}
	if due(timerClose) {
		if !c.pathValidated() && !c.life.aborting() {
			// The linger ends on a validated address only: a spoofer's
			// copy of the peer's CLOSE moved us to its address, where our
			// ACK of it went. Once that address fails (3 PTOs at most) we
			// are back where the peer is, and acknowledge again
			// (TestSim/harsh seed 3936: the peer sent its CLOSE ten times
			// to a side that had lingered out on the spoofer's address).
			c.lingerClose(now)
		} else {
			c.terminate(nil) // (an abort ends with its reason)
			return
		}
	}
	if due(timerLoss) {
		c.detectLoss(now)
	}
	if due(timerPTO) {
		c.onProbeTimeout(now)
	}
	if due(timerAck) {
		c.acks.onTimer()
	}
	due(timerPacing)
	c.onCopyTimer(at)
	if due(timerHeartbeat) && c.heartbeatAt() <= at {
		// (The timer may predate the peer's last PING, which moved the
		// heartbeat on: then it is only re-armed, below.)
		c.pingNeeded = true
		c.trimIdle()
	}
	if due(timerReassembly) {
		c.expireReassembly(now)
	}
	if c.paths != nil {
		c.onPathTimeout(now, at)
	}
	c.armHeartbeat()
	c.traceMetrics() // (after a loss or a probe timeout)
}

// armHeartbeat keeps a PING scheduled a heartbeat period after the last
// ack-eliciting packet we sent. A side that last heard an ack-eliciting
// packet (the peer's PING) waits a quarter period longer, and the side with
// the larger connection ID waits half a period longer than the last packet
// either way: on an idle connection only one side pings, the other
// answers, and both idle timers are kept alive at half the packets.
func (c *Conn) armHeartbeat() {
	if !c.life.established() || c.pingNeeded {
		c.timers.stop(timerHeartbeat)
		return
	}
	c.timers.at[timerHeartbeat] = c.heartbeatAt()
}

// heartbeatAt is when the next PING is due (see armHeartbeat), as a
// deadline offset: it is worked out on every ack-eliciting packet each way,
// in integers (a time.Time's Add costs several times more). The side with
// the larger connection ID answers: it pings only once the other's pings
// stop, so that two sides whose timers fell in step (both sent at once,
// then each heard the other) do not both ping every period forever.
func (c *Conn) heartbeatAt() int64 {
	p := c.cfg.HeartbeatPeriod
	sent := c.lastAckElicitingSent.Sub(c.timers.base)
	// The peer's last ack-eliciting packet came after our last one (recvd
	// is base plus the offset less one; 0: none yet).
	recvd := c.lastElicitingRecv
	heard := recvd != 0 && time.Duration(recvd-1) > sent
	if c.localCID > c.remoteCID {
		if heard {
			return relOffset(time.Duration(recvd-1), p*3/2)
		}
		return relOffset(sent, p*3/2)
	}
	if heard {
		return relOffset(time.Duration(recvd-1), p*5/4)
	}
	return relOffset(sent, p)
}

// trimIdle gives back the memory an idle connection keeps only to go fast
// when busy: the receive arena and the pools of free buffers and records.
// It runs when the heartbeat fires, that is after a heartbeat period with
// nothing sent; an idle connection then costs only its fixed state.
func (c *Conn) trimIdle() {
	c.reasm.trim()
	c.fragFree, c.chunkFree, c.smallChunkFree = nil, nil, nil
	c.sent.trim()
	c.frameScratch = nil
	if c.bytesInFlight == 0 {
		c.recovery.rate = nil
	}
	if c.sec != nil {
		c.sec.opened = nil
	}
	c.lean = true
	c.ord.trim()
	if c.queue.len() == 0 {
		c.queue = fragQueue{}
	}
	if c.retransmit.len() == 0 {
		c.retransmit = fragQueue{}
	}
	c.acks.trim()
}

// slicesClip returns s in an allocation of its own length when it holds
// much more than it uses.
func slicesClip[T any](s []T) []T {
	if cap(s) > 2*len(s)+4 {
		return append([]T(nil), s...)
	}
	return s
}

// Recv returns the next message ready for the application. A zero Message
// and nil error mean nothing is ready yet. Message.Data aliases the
// connection's buffers and stays valid until the next call of Recv. After
// the peer's graceful close or CloseWrite, once every Delivery message it
// sent before was read, Recv returns io.EOF, and nothing else from then on
// (a None or Order message still on its way is dropped); after any other
// end, the error that ended the connection (a local Close: ErrClosed).
func (c *Conn) Recv() (Message, error) {
	c.releaseYielded()
	if err := c.life.endError(); err != nil {
		return Message{}, err
	}
	if m, ok := c.nextMessage(); ok {
		return m, nil
	}
	if c.peerReadDone() {
		// (The STREAM_FIN or CLOSE took effect only once every Delivery
		// message before its final position had arrived: they were all
		// read.)
		return Message{}, io.EOF
	}
	if c.life.ended() {
		return Message{}, io.EOF
	}
	return Message{}, nil
}

// peerReadDone reports whether the peer's direction has ended and every
// Delivery message it sent before was read: what Recv reports as io.EOF.
func (c *Conn) peerReadDone() bool {
	return c.life.peerSendEnded() && c.ord.allRead(c.life.peerFinal())
}

// Message is one whole message as the application sees it.
type Message struct {
	Data      []byte
	Guarantee Guarantee
}

// Stats is a snapshot of a connection's counters and estimates.
type Stats struct {
	RTT              RTTStats
	CongestionWindow int
	BytesInFlight    int
	ReceiveWindow    int // the flow-control window this side grants (Config.ReceiveWindow, grown by auto-tuning)

	PacketsSent, PacketsReceived uint64
	BytesSent, BytesReceived     uint64
	PacketsLost                  uint64 // declared lost by ack or time threshold
	FragmentsRetransmitted       uint64 // Delivery fragments sent again
	ProbesSent                   uint64 // probe timeouts that fired
	// DatagramSize is the largest datagram data is sent in now: what path
	// MTU discovery confirmed the path carries (BaseDatagramSize at first,
	// at most Config.MaxDatagramSize).
	DatagramSize int

	MessagesSent, MessagesReceived uint64
	StaleDropped                   uint64 // Order messages overtaken by newer ones; None/Order arriving after the peer's end was read
	ReassemblyExpired              uint64 // incomplete None/Order messages dropped
	UnreliableDropped              uint64 // None/Order messages dropped for lack of buffer

	DatagramsDropped  uint64 // malformed, checksum, unknown connection, before handshake
	DuplicatesDropped uint64 // packets received twice
	// DroppedUnauthenticated counts, on a protected connection, packets
	// that failed authentication (forged, corrupted, or sealed with keys
	// this side does not have) and plaintext packets after the handshake's
	// first flight: none of them is applied or acknowledged.
	DroppedUnauthenticated uint64
	// DroppedReplayed counts, on a protected connection, packets whose
	// number was already received, or is too old for the replay window.
	DroppedReplayed uint64
	// PacketsRefused counts packets left unacknowledged although valid, for
	// a reason of this side's (a graceful CLOSE over a gap, data arriving
	// while the connection aborts): the peer sends what they carried again.
	PacketsRefused uint64
	// ProtocolViolations counts what the peer sent that it must not (data
	// beyond the limits or the credit we announced, a fragment inconsistent
	// with its message, an ACK of a packet never sent, ...): each ends the
	// connection with ErrProtocolViolation, so it is 0 or 1.
	ProtocolViolations uint64

	UnreachableReports uint64 // ICMP port-unreachable reports about the peer (hints, see HandleUnreachable)

	// Redundancy (SetStreamRedundancy): RedundantBytesSent counts the
	// bytes sent as copies of small messages (each copy's MSG frame, and
	// the whole datagram when it carried nothing else of use),
	// RedundantPacketsSent the packets sent only for copies (the others
	// went with data sent anyway), RedundantUseful the copies that
	// arrived when their original did not (acknowledged, the original's
	// packet declared lost): each saved a retransmission's round trip.
	RedundantBytesSent, RedundantPacketsSent, RedundantUseful uint64
}

// Stats returns the current counters.
func (c *Conn) Stats() Stats {
	s := c.stats
	s.RTT = c.recovery.rttStats()
	s.CongestionWindow = c.cc.Window()
	s.BytesInFlight = c.bytesInFlight
	s.ReceiveWindow = c.recvWindow
	s.DatagramSize = c.datagramSize()
	return s
}
