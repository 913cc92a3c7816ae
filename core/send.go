package core

import (
	"encoding/binary"
	"hash/crc32"
	"time"
)

// msgCreditOverhead is what every Delivery message costs in flow-control
// credit beyond its length (see msgCredit for the whole charge): what the
// receiver's record of a message costs it (recordBytes) and the fixed part
// of its reassembly bookkeeping, so that empty messages are bounded too
// and a peer cannot make a receiver hold more than it was charged.
const msgCreditOverhead = 256

// ackFrameReserve is room kept in every data packet for a small ACK frame.
const ackFrameReserve = 32

// minUnsentBuffer is the least new data Send lets wait unsent (see
// unsentLimit): under a typical 512 KiB L2 cache, and enough that a write
// of a few hundred KiB is still taken at once. (On loopback bulk, 1 MiB
// tripled the cost of copying queued data into datagrams; 384 KiB cost no
// more than 256 KiB.)
const minUnsentBuffer = 384 << 10

// smallChunk is the storage size of a fragment whose data fits in it: small
// messages do not each hold a whole datagram's worth of memory.
const smallChunk = 256

// outFragment is one message, or one piece of a message larger than a
// datagram, waiting to be sent or acknowledged. Delivery fragments live
// until acknowledged; None/Order fragments are sent once.
type outFragment struct {
	msg      msgFrame // header fields; msg.data aliases chunk
	chunk    []byte   // pooled storage for the data
	credit   uint64   // flow-control cost, on the first fragment of a Delivery message
	charged  bool     // credit already taken from the peer's window
	acked    bool
	queued   bool  // in the new or retransmit queue
	redund   uint8 // redundancy state (redundancy.go): 0 unless sent twice
	inflight int32 // sent packets carrying it, not yet acked or lost
	sends    int32
	// joinable: a whole Delivery message queued by WriteStream, to which
	// later WriteStream bytes are added while it waits unsent (joinTail).
	joinable bool
	copyDue  int64  // when its copy is due (a timerSet offset)
	copyPN   uint64 // the packet its copy went in (redund has redundCopySent)
}

// fragQueue is a FIFO of fragments.
type fragQueue = fifo[*outFragment]

// sender is the sending half: queues, flow control (the messages'
// numbering is the ordering domain's: ordering.number).
type sender struct {
	pingNeeded  bool
	flowBlocked bool
	// lean and unreachableProbes are the Conn's, not the sender's:
	// declared here, in the padding before peerMaxMessage, they cost the
	// Conn no bytes.
	//
	// lean: trimIdle ran and no message moved since; records and scratch
	// the heartbeat exchange uses are dropped after use, not kept.
	lean bool
	// unreachableProbes is nonzero while a port-unreachable report about
	// the peer awaits confirmation: 1 from the report, plus one per probe
	// timeout since; any acknowledgement clears it (see HandleUnreachable).
	unreachableProbes uint8
	// peerMaxMessage is the largest message the peer accepts (its HELLO's
	// MaxMessageSize); 0 until the HELLO arrived.
	peerMaxMessage uint32

	queue      fragQueue // new fragments, in the order sent by the application
	retransmit fragQueue // lost Delivery fragments, sent before new ones

	sendBuffered    int // bytes queued or unacknowledged (SendBufferSize bounds it)
	unsentBytes     int // bytes of new fragments not yet sent once (unsentLimit bounds it)
	unackedDelivery int // Delivery fragments not yet acknowledged
	fragPayload     int // data bytes per fragment
	peerMaxData     uint64
	dataSent        uint64 // flow-control credit used
	probesOwed      int
	fragFree        []*outFragment
	chunkFree       [][]byte // full-size chunks (fragPayload)
	smallChunkFree  [][]byte // chunks of smallChunk bytes
	liveFrags       int      // fragments queued or awaiting acknowledgement
	maxFrags        int      // bound on liveFrags: empty messages cost memory too
}

func (c *Conn) initSender() {
	s := &c.sender
	c.ord.startSend(uint64(c.cfg.InitialSequence))
	// Fragments are cut for the datagram size in use (pmtu.go), which
	// starts at the smallest; the bound on their number is for that size.
	s.fragPayload = fragPayloadFor(c.datagramSize())
	s.maxFrags = max(c.cfg.SendBufferSize/smallChunk, c.cfg.MaxMessageSize/s.fragPayload+2, 64)
}

// MaxFragmentPayload is the data one datagram carries at the datagram size
// in use (DatagramSize); a message this size or smaller travels whole, a
// larger one in fragments. It grows as path MTU discovery confirms larger
// datagrams and falls back with the datagram size.
func (c *Conn) MaxFragmentPayload() int { return c.fragPayload }

// MaxMessageSize returns the largest message Send accepts: the Config's
// MaxMessageSize, or the peer's once its HELLO told it, if smaller.
func (c *Conn) MaxMessageSize() int {
	if c.peerMaxMessage != 0 {
		return min(c.cfg.MaxMessageSize, int(c.peerMaxMessage))
	}
	return c.cfg.MaxMessageSize
}

// SendBufferAvailable returns how many more bytes Send would accept now.
// A message of at most that many bytes is accepted (the bound on queued
// fragments, which keeps many tiny messages from growing memory, is counted).
func (c *Conn) SendBufferAvailable() int {
	n := min(c.cfg.SendBufferSize-c.sendBuffered, (c.maxFrags-c.liveFrags)*c.fragPayload)
	if c.unsentBytes > 0 {
		n = min(n, c.unsentLimit()-c.unsentBytes)
	}
	return max(n, 0)
}

// unsentLimit bounds the new data waiting to be sent for the first time:
// two congestion windows, at least minUnsentBuffer (as TCP_NOTSENT_LOWAT
// does). Without it a bulk sender queues the whole send buffer (4 MiB) ahead
// of the window, and every byte has left the CPU caches by the time it is
// copied into a datagram: on loopback that copy was a quarter of the CPU.
// A message is always accepted when nothing is waiting, whatever its size.
func (c *Conn) unsentLimit() int {
	return max(minUnsentBuffer, 2*c.cc.Window())
}

// Send queues one message with guarantee g. The data is copied. It fails
// with ErrSendBufferFull (matching ErrWouldBlock) when the send buffer
// cannot take it now (bytes queued or unacknowledged would pass
// SendBufferSize, or enough is already waiting to be sent: see
// SendBufferAvailable), ErrMessageTooLarge (longer than MaxMessageSize: ours,
// or the peer's once the handshake told it), ErrInvalidGuarantee, ErrClosed
// (after Close or CloseWrite, whatever g) or ErrPeerClosed; a failed Send
// queued nothing.
//
// A message queued before the peer's HELLO arrived that turns out to be
// larger than the peer accepts ends the connection with an error matching
// ErrMessageTooLarge (see handleHello): no call is left to report it to.
func (c *Conn) Send(g Guarantee, p []byte) error { return c.send(&c.ord, nil, g, p, false) }

// WriteStream queues a prefix of p as bytes of stream id's byte stream
// (stream 0 is the connection's own), with guarantee Delivery, and returns
// how many bytes it took. The bytes are added to the stream's last message
// while that message waits unsent and was itself queued by WriteStream, as
// TCP adds a write to a segment that has not left yet; otherwise they start
// a new message of at most MaxFragmentPayload bytes (and MaxMessageSize).
// So a sender ahead of its window sends full datagrams whatever its writes'
// sizes: 64 KiB writes on a path of 64 KiB datagrams no longer cost two
// datagrams each, a full one and one of their last hundred bytes. The
// message boundaries of these bytes mean nothing: they are for a reader of
// the byte stream (stream.Stream's Read). WriteStream fails as SendStream
// does, taking nothing: ErrSendBufferFull (matching ErrWouldBlock) when the
// send buffer cannot take the prefix now. An empty p queues nothing.
func (c *Conn) WriteStream(id uint64, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o, s, q := &c.ord, (*stream)(nil), &c.queue
	if id != 0 {
		var err error
		if s, err = c.stream(id); err != nil {
			return 0, err
		}
		o, q = &s.ord, &s.queue
	}
	limit := min(c.fragPayload, c.MaxMessageSize())
	n := min(len(p), limit)
	if f := c.joinTail(q, 1); f != nil {
		n = min(len(p), limit-len(f.msg.data))
	}
	if err := c.send(o, s, Delivery, p[:n], true); err != nil {
		return 0, err
	}
	return n, nil
}

// joinTail returns the last message of q if n more bytes may be added to
// it (WriteStream): a whole Delivery message queued by WriteStream, not in
// a set, not yet sent nor charged to the peer's credit, with room for them
// within a datagram and the message size limit.
func (c *Conn) joinTail(q *fragQueue, n int) *outFragment {
	if q.len() == 0 {
		return nil
	}
	f := q.items[len(q.items)-1]
	if !f.joinable || f.sends > 0 || f.charged || f.acked || f.msg.inSet || f.msg.fragment ||
		len(f.msg.data)+n > min(c.fragPayload, c.MaxMessageSize()) {
		return nil
	}
	return f
}

// join adds p to f's data (joinTail said it may).
func (c *Conn) join(f *outFragment, p []byte) {
	k := len(f.msg.data)
	if k+len(p) > cap(f.chunk) {
		// A message that started small grows into a chunk of the size in
		// use: copying what it has costs at most smallChunk bytes.
		chunk := c.getChunk(c.fragPayload)
		copy(chunk, f.msg.data)
		c.putChunk(f.chunk)
		f.chunk = chunk
	}
	f.msg.data = f.chunk[:k+len(p)]
	copy(f.msg.data[k:], p)
	f.msg.total = uint64(len(f.msg.data))
	f.credit = uint64(msgCredit(len(f.msg.data)))
}

// send is Send on the ordering domain o: stream 0's (s nil) or stream s's.
// join: p is WriteStream's, added to the last message if joinTail allows.
func (c *Conn) send(o *ordering, s *stream, g Guarantee, p []byte, join bool) error {
	switch {
	case !g.Valid():
		return ErrInvalidGuarantee
	case len(p) > c.cfg.MaxMessageSize:
		return ErrMessageTooLarge
	case c.peerMaxMessage != 0 && len(p) > int(c.peerMaxMessage):
		return errPeerMessageTooLarge
	case c.life.endError() != nil:
		return c.life.endError()
	case c.life.ended(), c.life.closeRequested():
		return ErrClosed
	case s == nil && c.life.writeEnded(): // (stream 0's CloseWrite: other streams go on)
		return ErrClosed
	case c.life.peerClosed():
		return ErrPeerClosed
	case s != nil && s.sendErr != nil:
		return s.sendErr
	}
	// Send buffering is per stream: a stream's full buffer never holds
	// back a Send on another.
	buffered, unsent, q := &c.sendBuffered, &c.unsentBytes, &c.queue
	if s != nil {
		buffered, unsent, q = &s.buffered, &s.unsentBytes, &s.queue
	}
	switch {
	case *buffered+len(p) > c.cfg.SendBufferSize:
		return ErrSendBufferFull
	case *unsent > 0 && *unsent+len(p) > c.unsentLimit():
		return ErrSendBufferFull // enough waits to be sent: keep it in cache
	}
	if *unsent+len(p) > c.fragPayload && c.life.established() {
		c.startPathMTU() // more waits than a datagram carries (pmtu.go)
	}
	c.lean = false
	if join {
		if f := c.joinTail(q, len(p)); f != nil {
			c.join(f, p)
			*buffered += len(p)
			*unsent += len(p)
			return nil
		}
	}
	if c.liveFrags+max(1, (len(p)+c.fragPayload-1)/c.fragPayload) > c.maxFrags {
		return ErrSendBufferFull // many small messages: bounded by count too
	}
	var m msgFrame
	o.number(g, &m)
	if s != nil {
		m.stream = s.id
	}
	c.stats.MessagesSent++
	m.fragment = len(p) > c.fragPayload
	m.total = uint64(len(p))
	twice := !m.fragment && c.queuedRedundant(s, len(p))
	m.twice = twice && g == None
	for off := 0; off == 0 || off < len(p); {
		n := min(len(p)-off, c.fragPayload)
		f := c.newFragment(n)
		f.msg = m
		f.msg.offset = uint64(off)
		f.msg.data = f.chunk[:n]
		copy(f.msg.data, p[off:off+n])
		if off == 0 && g == Delivery {
			f.credit = uint64(msgCredit(len(p)))
		}
		if g == Delivery {
			c.unackedDelivery++
		}
		if twice {
			f.redund = redundWanted
		}
		f.joinable = join && !m.fragment && !twice
		f.queued = true
		q.push(f)
		*buffered += n
		*unsent += n
		off += n
		if len(p) == 0 {
			break
		}
	}
	if t := c.streams; t != nil {
		// (The scheduler takes the streams' queues in turn once there are
		// several: see appendStreams.)
		if s == nil {
			c.syncZeroReady()
		} else {
			t.ready.push(&s.sched)
		}
	}
	return nil
}

// syncZeroReady puts stream 0 in the scheduler if it has new fragments
// and is not there (it had some before the first stream opened).
func (c *Conn) syncZeroReady() {
	if t := c.streams; t != nil && !t.zero.ready() && c.queue.len() > 0 {
		t.ready.push(&t.zero)
	}
}

// BeginSet starts a set: the messages sent until EndSet may be delivered in
// any order among themselves, and nothing sent after the set is delivered
// before every Delivery message of the set.
func (c *Conn) BeginSet() error { return c.ord.beginSet() }

// EndSet ends the set BeginSet started.
func (c *Conn) EndSet() { c.ord.endSet() }

func (c *Conn) newFragment(n int) *outFragment {
	var f *outFragment
	if k := len(c.fragFree); k > 0 {
		f = c.fragFree[k-1]
		c.fragFree = c.fragFree[:k-1]
	} else {
		f = new(outFragment)
	}
	c.liveFrags++
	f.chunk = c.getChunk(n)
	return f
}

// getChunk returns storage for n bytes of a fragment's data, from the pools.
func (c *Conn) getChunk(n int) []byte {
	var b []byte
	switch {
	case n <= smallChunk && len(c.smallChunkFree) > 0:
		k := len(c.smallChunkFree)
		b = c.smallChunkFree[k-1]
		c.smallChunkFree = c.smallChunkFree[:k-1]
	case n <= smallChunk:
		b = make([]byte, smallChunk)
	case n > c.fragPayload:
		// The rest of a fragment cut for a larger datagram size
		// (splitFragment): not of the pooled size.
		b = make([]byte, n)
	case len(c.chunkFree) > 0:
		k := len(c.chunkFree)
		b = c.chunkFree[k-1]
		c.chunkFree = c.chunkFree[:k-1]
	default:
		b = make([]byte, c.fragPayload)
	}
	return b
}

// putChunk returns a fragment's storage to its pool. The pools hold at
// most what the send buffer bounds anyway, so that a steady stream
// allocates nothing.
func (c *Conn) putChunk(b []byte) {
	if cap(b) == smallChunk {
		if len(c.smallChunkFree) < c.maxFrags {
			c.smallChunkFree = append(c.smallChunkFree, b)
		}
	} else if cap(b) == c.fragPayload && len(c.chunkFree) <= c.cfg.SendBufferSize/c.fragPayload {
		c.chunkFree = append(c.chunkFree, b)
	}
}

// freeFragment returns f and its chunk to the pools once nothing refers to it.
func (c *Conn) maybeFreeFragment(f *outFragment) {
	if f.inflight > 0 || f.queued || f.redund&redundOwed != 0 {
		return
	}
	if f.msg.guarantee == Delivery && !f.acked {
		return // still owed to the peer
	}
	c.liveFrags--
	c.putChunk(f.chunk)
	*f = outFragment{}
	if len(c.fragFree) < c.maxFrags {
		c.fragFree = append(c.fragFree, f)
	}
}

// onFragmentAcked releases an acknowledged Delivery fragment.
func (c *Conn) onFragmentAcked(f *outFragment) {
	if f.msg.guarantee == Delivery && !f.acked {
		f.acked = true
		*c.bufferedOf(f) -= len(f.msg.data)
		c.unackedDelivery--
	}
}

func (c *Conn) sendQueuesDrained() bool {
	if c.unackedDelivery != 0 {
		return false
	}
	// Every Delivery fragment is acknowledged, so whatever the retransmit
	// queue still holds (requeued by a probe or a spurious loss, then acked)
	// is done: dropping it here, not lazily when the next packet goes out,
	// lets the CLOSE go now instead of after the next heartbeat.
	for c.retransmit.len() > 0 {
		f := c.retransmit.pop()
		f.queued = false
		c.maybeFreeFragment(f)
	}
	return !c.HasPendingData()
}

// discardSendQueues drops everything not yet sent or acknowledged.
func (c *Conn) discardSendQueues() {
	for _, q := range c.sendQueues() {
		for q.len() > 0 {
			f := q.pop()
			f.queued = false
			f.acked = true
			c.maybeFreeFragment(f)
		}
	}
	if t := c.streams; t != nil {
		t.ready.reset()
		for _, s := range t.list {
			s.buffered, s.unsentBytes = 0, 0
		}
	}
	for _, p := range c.sent.inFlight() {
		if p == nil {
			continue
		}
		for _, f := range p.frags {
			f.acked = true
		}
	}
	c.discardCopies()
	c.sendBuffered = 0
	c.unsentBytes = 0
	c.unackedDelivery = 0
}

// PollTransmit writes the next datagram to send into buf and returns its
// length, or 0 when nothing may be sent now (then NextTimeout says when to
// ask again, or a Send or HandleDatagram may make something ready).
// buf should hold DatagramSize bytes; a shorter one gets nothing. A
// datagram is at most DatagramSize bytes, except a path MTU probe (PING and
// PADDING only), which may be up to Config.MaxDatagramSize and is written
// only into a buffer that holds it (a buffer of Config.MaxDatagramSize
// bytes always does): a caller packing datagrams back to back may pass the
// room left, and the probe waits for a roomier buffer.
//
// PollTransmit is for a caller that sends to one address (a connected
// socket); one that receives from several uses HandleDatagramFrom and
// PollTransmitTo.
func (c *Conn) PollTransmit(now time.Time, buf []byte) int {
	n, _ := c.PollTransmitTo(now, buf)
	return n
}

// pollTransmit is PollTransmit for a datagram of at most maxSize bytes (the
// allowance of an unvalidated address, see path.go). With g (a plaintext
// connection's PollTransmitGather), the packet may end with a MSG frame
// whose data is left in the send buffer: g says where it goes, and the
// length returned counts it.
func (c *Conn) pollTransmit(now time.Time, buf []byte, maxSize int, g *gathering) int {
	if c.life.ended() || len(buf) < c.datagramSize() || maxSize < PacketOverhead+1 {
		return 0
	}
	full, size := buf, min(c.datagramSize(), maxSize)
	probe := c.probesOwed > 0
	smallProbe := probe && c.smallProbeDue()
	if smallProbe {
		size = min(size, BaseDatagramSize) // a PING and an ACK only (below)
	}
	buf = buf[:size]
	// The packet's key level (levelInitial on a plaintext connection)
	// decides its trailer and what it may carry (levelAllows).
	c.maybeStartClient(now)
	level := c.sendLevel(probe)
	limit := len(buf) - trailerLenAt(level)
	wantCrypto := c.cryptoPending(level)
	// Until our HELLO is acknowledged every probe carries it: the peer
	// drops everything else it gets before our HELLO, so a probe without it
	// would be wasted, and two copies per probe timeout make a handshake
	// over a lossy path much less likely to wait for a backed-off timer.
	// So does every packet of the handshake's first flight (a listener
	// routes a packet to no connection ID by its HELLO).
	hello := (c.life.helloWanted(probe) || wantCrypto && !c.life.helloAcked()) &&
		size >= MinHelloDatagram && level == levelInitial
	if hello || c.sec != nil || c.obs != nil {
		// (A HELLO's padding, a packet sealed whole, a tracer reading
		// every frame: in one piece.)
		g = nil
	}
	sendClose := c.life.closeOwed()
	wantData := c.life.established() && !c.life.closeSent() && c.dataSendable()
	wantCtl := c.life.established() && !c.life.closeSent() && c.ctlPending()
	wantFin := c.finDue()
	// Copies of small messages (redundancy.go) whose timer fired.
	wantCopies := c.life.established() && !c.life.closeSent() && c.copiesDue()
	aborting := c.life.abortOwed()
	if aborting {
		wantData, wantCtl, wantCrypto, wantCopies = false, false, false, false
	}
	if c.sec != nil && level != levelApp {
		wantData, wantCtl, wantFin, wantCopies = false, false, false, false
	}
	if smallProbe {
		wantData, wantCtl, wantFin, wantCopies = false, false, false, false
	}
	if c.creditStarved() && !c.timers.armed(timerPTO) {
		// Blocked with nothing in flight: only a probe asks for the window
		// update if the ACK that carried it was lost.
		c.armPTO()
	}
	ackDue := c.acks.due(now, &c.timers)

	// A path MTU probe goes in a packet of its own, after a due ACK and
	// probe timeouts' probes, when the congestion window and the pacer let
	// a packet of the size in use go: gated by its own size, a window-
	// limited bulk sender, whose every acknowledgement frees room for one
	// packet, would never have room for the larger probe.
	if !probe && !ackDue && !hello && !aborting {
		if ps := c.probeWanted(now); ps > 0 && ps <= maxSize && ps <= len(full) && c.probeFits(ps) && !c.probeYields(now, wantData) && c.sendAllowed(now, size) {
			return c.sendPathProbe(now, full, ps)
		}
	}

	// Congestion and pacing gate everything ack-eliciting except probes
	// and an abort's CLOSE: the connection ends one PTO later whether or
	// not it went out, and with a full window (the usual reason to abort a
	// close: the peer stopped taking data) it would wait for
	// acknowledgements that never come, the peer learning of the abort
	// only at its idle timeout.
	eliciting := hello || wantCrypto || sendClose || wantData || wantCtl || wantFin || c.pingNeeded || probe
	copiesOnly := wantCopies && !eliciting // a packet only for copies: all of it counts as redundancy
	eliciting = eliciting || wantCopies
	if eliciting && !probe && !aborting && !c.sendAllowed(now, size) {
		eliciting = false
	}
	if !eliciting && !ackDue {
		return 0
	}

	n := headerLen
	pkt := c.sent.newPacket()
	pkt.pn = c.nextPN // (taken by seal, if the packet goes)
	pkt.sentAt = now
	pkt.level = level

	// HELLO goes first: a listener finds it there (PeekHello).
	if eliciting && hello {
		h := c.ourHello()
		n = c.life.appendHello(buf, n, &h)
		c.creditSent(h.MaxData)
		pkt.hello, pkt.eliciting = true, true
		if lim := c.cfg.MaxIncomingStreams; lim != defaultMaxIncomingStreams {
			// Our stream limit goes with every HELLO, before the peer can
			// open anything; the default is assumed unsaid (§17.3).
			n = len(appendStreamCtl(buf[:n], frameStreamLimit, &streamCtlFrame{value: uint64(lim)}))
		}
		if w := c.cfg.StreamReceiveWindow; w != defaultStreamReceiveWindow {
			// And the credit each stream starts with (§17.6).
			n = len(appendStreamCtl(buf[:n], frameStreamCredit, &streamCtlFrame{value: uint64(w)}))
		}
	}
	ackBatch := 0 // ack-eliciting packets the ACK frame answers
	copied := 0   // bytes of copies (redundancy.go) the packet carries
	var acked bool
	if n, ackBatch, acked = c.acks.appendFrame(buf, n, limit, now, &c.timers, c.ackCredit); acked {
		c.creditSent(c.advertisedMaxData())
	}
	if eliciting {
		if sendClose {
			n = c.life.appendClose(buf, n, c.ord.finalPosition())
			pkt.close, pkt.eliciting = true, true
		}
		if wantCrypto {
			n = c.appendCrypto(level, buf, n, limit, pkt)
		}
		finned := false
		if wantCtl {
			n, finned = c.appendStreamCtls(buf, n, limit, pkt)
		}
		if finned {
			// (A stream's STREAM_FIN went: no MSG frame with it, as below.)
		} else if wantFin {
			// Without MSG frames: the peer refuses the STREAM_FIN over a
			// gap, and a packet refused is not recorded as received, so a
			// copy of it (duplicated by the path) would be applied again:
			// harmless for every frame but a whole None message, which has
			// nothing else to tell its copies apart by.
			n = c.life.appendFin(buf, n, c.ord.finalPosition())
			pkt.fin, pkt.eliciting = true, true
		} else if wantData || wantCopies {
			if c.redund != nil && c.redund.owed.len() > 0 {
				// Before the new fragments, whose copies this packet
				// must not carry.
				n, copied = c.appendCopies(buf, n, limit, pkt)
			}
			if wantData {
				n = c.appendFragments(buf, n, limit, pkt, g)
				c.maybeStartPathMTU()
			}
		}
		if !pkt.ackEliciting() && (c.pingNeeded || probe) {
			buf[n] = framePing
			n++
			pkt.ping, pkt.eliciting = true, true
		}
		if pkt.ackEliciting() {
			c.pingNeeded = false
			if probe {
				c.probesOwed--
			}
			if smallProbe {
				c.pmtu.smallProbe, c.pmtu.smallAcked, c.pmtu.smallPN = false, false, pkt.pn+1
			}
		}
	}
	if n == headerLen {
		c.recycleSentPacket(pkt)
		return 0
	}
	if pkt.hello && n < MinHelloDatagram-trailerLen {
		clear(buf[n : MinHelloDatagram-trailerLen])
		n = MinHelloDatagram - trailerLen
	}
	if g != nil && g.data != nil {
		size = c.sealGathered(buf, n, g)
	} else {
		size = c.sealAt(buf, n, level)
	}
	if pkt.close && c.life.closeIsCourtesy() {
		// The peer closed too: we linger a few PTOs to acknowledge its
		// CLOSE again should our ACK be lost. Our CLOSE, which carries that
		// ACK, is retransmitted meanwhile on our probe timer: the peer's
		// CLOSE comes again only after the peer's probe timeout, which may
		// be longer than our whole linger (a simultaneous close where both
		// went missing then ended only after the peer's ten copies of its
		// CLOSE went unanswered: TestSim/asymloss seed 6971, about 45 s).
		c.lingerClose(now)
	}
	pkt.size = size
	if copiesOnly && pkt.ackEliciting() {
		c.stats.RedundantPacketsSent++
		c.stats.RedundantBytesSent += uint64(size - copied) // (the copies were counted)
	}
	if pkt.ackEliciting() {
		c.onPacketSent(now, pkt)
	} else {
		c.acks.sentAckOnly(ackBatch)
		c.recycleSentPacket(pkt)
	}
	return size
}

// finDue reports whether our STREAM_FIN is to go out now: the lifecycle
// owes it, and nothing queued before it waits to be sent for the first
// time. It goes right behind the last message, in a packet of its own, not
// after the acknowledgements: the peer refuses it while a Delivery message
// before its final position is missing, so it is resent (as lost) until it
// fits.
func (c *Conn) finDue() bool { return c.life.finWanted() && c.queue.len() == 0 }

// sendAllowed reports whether the congestion window and the pacer let an
// ack-eliciting packet of size bytes go now; if only the pacer holds it
// back, the pacing timer is set for when it may.
func (c *Conn) sendAllowed(now time.Time, size int) bool {
	ok, wait := c.recovery.sendAllowed(now, size, c.datagramSize(), !c.cfg.DisablePacing)
	if !wait.IsZero() {
		c.timers.set(timerPacing, wait)
	}
	return ok
}

// seal finishes the packet in buf[:n] for the peer, under the next packet
// number, at the write level, and counts it sent; it returns the
// datagram's length.
func (c *Conn) seal(buf []byte, n int) int { return c.sealAt(buf, n, c.writeLevel()) }

// sealAt is seal at level l: in plaintext with the checksum at
// levelInitial, else protected (protect_packet.go).
func (c *Conn) sealAt(buf []byte, n int, l keyLevel) int {
	pn := c.recovery.takePN()
	c.tracePacket(true, pn, n+trailerLenAt(l), buf[headerLen:n]) // (before sealing: the frames in the clear)
	var size int
	if l == levelInitial {
		putHeader(buf, Header{Type: PacketData, DstCID: c.remoteCID, PacketNumber: uint32(pn)})
		size = sealPacket(buf, n)
	} else {
		var updates uint32
		if l == levelApp {
			updates = c.sec.write[levelApp].updates
		}
		size = c.sec.sealProtected(buf, n, l, c.remoteCID, pn)
		if l == levelApp && c.sec.write[levelApp].updates != updates {
			c.traceKeyUpdate(uint64(c.sec.write[levelApp].updates), false, "local_update")
		}
	}
	c.stats.PacketsSent++
	c.stats.BytesSent += uint64(size)
	return size
}

// sealGathered is sealAt for a plaintext packet that is buf[:g.at], then
// g.data, then buf[g.at:n]: the checksum covers the three in that order
// and goes at buf[n:]. It returns the datagram's length, data included.
func (c *Conn) sealGathered(buf []byte, n int, g *gathering) int {
	pn := c.recovery.takePN()
	putHeader(buf, Header{Type: PacketData, DstCID: c.remoteCID, PacketNumber: uint32(pn)})
	sum := crc32.Update(crc32.Checksum(buf[:g.at], castagnoli), castagnoli, g.data)
	sum = crc32.Update(sum, castagnoli, buf[g.at:n])
	binary.BigEndian.PutUint32(buf[n:n+trailerLen], sum)
	size := n + len(g.data) + trailerLen
	c.stats.PacketsSent++
	c.stats.BytesSent += uint64(size)
	return size
}

// sendPathProbe writes a path MTU probe of size bytes into buf and records
// it in flight.
func (c *Conn) sendPathProbe(now time.Time, buf []byte, size int) int {
	pkt := c.sent.newPacket()
	pkt.pn = c.nextPN // (taken by seal)
	pkt.sentAt = now
	pkt.eliciting, pkt.pathProbe = true, true
	pkt.level = c.writeLevel()
	pkt.size = c.sealAt(buf, appendProbe(buf, size-c.sealOverhead()), pkt.level)
	c.pmtu.onProbeSent()
	c.onPacketSent(now, pkt)
	return pkt.size
}

// appendFragments fills the packet with retransmissions first, then new
// fragments, while they fit and flow control allows (g: see pollTransmit).
func (c *Conn) appendFragments(buf []byte, n, limit int, pkt *sentPacket, g *gathering) int {
	c.syncZeroReady()
	n, st := c.appendQueue(&c.retransmit, false, buf, n, limit, pkt, false, g)
	if st != queueMore {
		return n
	}
	if c.streams == nil || c.streams.ready.len() == 0 {
		n, _ = c.appendQueue(&c.queue, true, buf, n, g.room(limit), pkt, false, g)
		return n
	}
	return c.appendStreams(buf, n, limit, pkt, g)
}

// gathering is what PollTransmitGather asks of a packet and learns from
// it: the data of one Delivery fragment of at least min bytes may be left
// where it is (data), to go in the datagram at at, right after its frame's
// header; whatever follows is written after the header in the buffer.
// The packet is the same as one written whole: only where its bytes are
// differs.
type gathering struct {
	min  int
	at   int
	data []byte
}

// room is the limit of the packet's length in the buffer, limit in the
// datagram, once the gathered data (none yet if g is nil) is left out.
func (g *gathering) room(limit int) int { return limit - g.len() }

// len is the length of the data gathered (0 if g is nil).
func (g *gathering) len() int {
	if g == nil {
		return 0
	}
	return len(g.data)
}

// gathers reports whether f's data may stay in the send buffer (g: see
// pollTransmit). A Delivery fragment keeps its chunk until acknowledged,
// and a fragment sent is never joined (joinTail), so the data does not
// change before the caller sends it; None and Order fragments are freed
// once sent, and their chunks reused.
func (g *gathering) gathers(f *outFragment) bool {
	return g != nil && g.data == nil && f.msg.guarantee == Delivery && len(f.msg.data) >= g.min
}

// What appendQueue stopped at.
type queueStop uint8

const (
	queueMore    queueStop = iota // the queue is empty, or one was asked and taken: the packet may take more
	queueFull                     // the next fragment does not fit the packet
	queueBlocked                  // the next fragment is a new message the peer's credit does not cover
)

// appendQueue appends q's fragments to the packet while they fit and the
// connection's credit allows (one only if one is set), and says what it
// stopped at. fresh: q holds new fragments, not yet sent.
func (c *Conn) appendQueue(q *fragQueue, fresh bool, buf []byte, n, limit int, pkt *sentPacket, one bool, g *gathering) (int, queueStop) {
	for q.len() > 0 {
		f := q.peek()
		if f.acked { // acknowledged, or abandoned (a reset stream)
			q.pop()
			if fresh {
				c.onFirstSend(f)
			}
			f.queued = false
			c.maybeFreeFragment(f)
			continue
		}
		if len(f.msg.data) > c.fragPayload {
			c.splitFragment(q, f)
		}
		if n+msgHeaderLen(&f.msg)+len(f.msg.data) > limit {
			return n, queueFull
		}
		if f.credit > 0 && !f.charged {
			if !c.creditAllows(f) {
				c.flowBlocked = true
				return n, queueBlocked
			}
			c.dataSent += f.credit
			f.charged = true
			if f.msg.stream != 0 {
				c.onStreamCharged(f.msg.stream, f.credit)
			}
		}
		c.flowBlocked = false
		q.pop()
		if fresh {
			c.onFirstSend(f)
		}
		f.queued = false
		if g.gathers(f) {
			n = len(appendMsgHeader(buf[:n], &f.msg))
			g.at, g.data = n, f.msg.data
			limit -= len(f.msg.data) // (what follows is written after it in buf)
		} else {
			n = len(appendMsg(buf[:n], &f.msg))
		}
		pkt.eliciting = true
		f.sends++
		if f.sends > 1 {
			c.stats.FragmentsRetransmitted++
		}
		if f.msg.guarantee == Delivery || f.redund != 0 {
			f.inflight++
			pkt.frags = append(pkt.frags, f)
		}
		if fresh && f.redund == redundWanted {
			c.owe(f, pkt)
		}
		if f.msg.guarantee != Delivery {
			*c.bufferedOf(f) -= len(f.msg.data)
			c.maybeFreeFragment(f)
		}
		if one {
			return n, queueMore
		}
	}
	return n, queueMore
}

// appendStreams appends new fragments of the streams that have some,
// stream 0 among them, in the scheduler's order (sched.go: strict
// priority, then bytes shared by weight), one fragment per turn: a large
// message on one stream delays another stream's message by at most a
// fragment, never by the whole message. A stream whose next message the
// peer's credit does not cover is passed over, not waited for: the rest of
// a message already charged, on another stream, must go, or the peer could
// never read it and give credit back.
func (c *Conn) appendStreams(buf []byte, n, limit int, pkt *sentPacket, g *gathering) int {
	r := &c.streams.ready
	for e := r.peek(); e != nil; e = r.peek() {
		q := c.schedQueue(e)
		before := n + g.len() // (bytes of the datagram: gathered data counts)
		var st queueStop
		n, st = c.appendQueue(q, true, buf, n, g.room(limit), pkt, true, g)
		switch {
		case st == queueFull:
			// This stream's turn stays.
			c.flowBlocked = false
			r.unpass()
			return n
		case n+g.len() > before:
			r.served(e, n+g.len()-before, q.len() > 0)
		case q.len() == 0:
			r.remove(e) // (what it had was abandoned: a reset)
		default: // queueBlocked
			r.pass(e)
		}
	}
	c.flowBlocked = len(r.passed) > 0
	r.unpass()
	return n
}

// schedQueue returns the queue of new fragments of e's stream.
func (c *Conn) schedQueue(e *schedEntry) *fragQueue {
	if e.s == nil {
		return &c.queue
	}
	return &e.s.queue
}

// splitFragment cuts f, at the head of q and cut for a larger datagram size
// than the one in use now (the path fell back), into a piece that fits,
// which stays at the head, and the rest, queued right after it. A whole
// message becomes a fragmented one. The receiver takes pieces at any
// offsets (a retransmission may overlap what it has): only bytes are
// tracked, not the pieces they came in.
func (c *Conn) splitFragment(q *fragQueue, f *outFragment) {
	k := c.fragPayload
	rest := f.msg.data[k:]
	if !f.msg.fragment {
		f.msg.fragment = true
		f.msg.total = uint64(len(f.msg.data))
		f.msg.offset = 0
	}
	t := c.newFragment(len(rest))
	t.msg = f.msg
	t.msg.offset = f.msg.offset + uint64(k)
	t.msg.data = t.chunk[:len(rest)]
	copy(t.msg.data, rest)
	t.sends = f.sends
	t.queued = true
	f.msg.data = f.msg.data[:k]
	if f.msg.guarantee == Delivery {
		c.unackedDelivery++
	}
	q.pop()
	q.pushFront(t)
	q.pushFront(f)
}

// onFirstSend accounts for f leaving the queue of new fragments.
func (c *Conn) onFirstSend(f *outFragment) {
	if f.msg.stream == 0 {
		c.unsentBytes -= len(f.msg.data)
	} else if s := c.streams.find(f.msg.stream); s != nil {
		s.unsentBytes -= len(f.msg.data)
	}
}

// bufferedOf is the count of bytes queued or unacknowledged f is counted
// in: its stream's (stream 0's is the Conn's sendBuffered).
func (c *Conn) bufferedOf(f *outFragment) *int {
	if f.msg.stream != 0 {
		if s := c.streams.find(f.msg.stream); s != nil {
			return &s.buffered
		}
		return new(int) // (the stream ended: nothing counts it any more)
	}
	return &c.sendBuffered
}

// sendQueues returns every queue of fragments: the retransmissions, stream
// 0's new fragments and each stream's.
func (c *Conn) sendQueues() []*fragQueue {
	qs := []*fragQueue{&c.queue, &c.retransmit}
	if c.streams != nil {
		for _, s := range c.streams.list {
			qs = append(qs, &s.queue)
		}
	}
	return qs
}

// dataSendable reports whether a fragment could go out now as far as flow
// control is concerned: a retransmission, or new data within the peer's
// credit. While it is false because of credit, the connection is
// flow-blocked and only the probe timer sends (a PING asking for a window
// update), never a packet per PollTransmit.
func (c *Conn) dataSendable() bool {
	if c.retransmit.len() > 0 {
		return true
	}
	c.syncZeroReady()
	if c.streams != nil && c.streams.ready.len() > 0 {
		// Several queues: any one whose head the credit lets go (the
		// first one looked at, unless the connection is flow-blocked).
		c.flowBlocked = true
		for _, l := range c.streams.ready.levels {
			for _, e := range l.heap {
				if q := c.schedQueue(e); q.len() > 0 && c.creditAllows(q.peek()) {
					c.flowBlocked = false
					return true
				}
			}
		}
		return false
	}
	if c.queue.len() == 0 {
		c.flowBlocked = false
		return false
	}
	c.flowBlocked = !c.creditAllows(c.queue.peek())
	return !c.flowBlocked
}

// creditAllows reports whether the peer's credit lets f go out: the
// connection's, and its stream's (streamflow.go). flowBlocked, set when it
// holds every queue back, asks for probes only where the connection's does
// (creditStarved).
func (c *Conn) creditAllows(f *outFragment) bool {
	return !c.connCreditBlocks(f) && c.streamCreditAllows(f)
}

// HasPendingData reports whether messages are queued but not yet sent.
func (c *Conn) HasPendingData() bool {
	return c.queue.len() > 0 || c.retransmit.len() > 0 || (c.streams != nil && c.streams.ready.len() > 0)
}
