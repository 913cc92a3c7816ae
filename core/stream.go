package core

import (
	"cmp"
	"io"
	"slices"
	"time"
)

// Streams (docs/PROTOCOL.md §17). A stream is an ordering domain, a
// flow-control domain and a scheduling class inside one connection. Stream
// 0 is the connection itself: its state lives in the Conn as it always did,
// and it costs no byte more on the wire (its messages are MSG frames). The
// other streams live in a streamTable the Conn points to, allocated when
// the first one is opened on either side, so that a connection that never
// opens one pays one pointer.
//
// Stream IDs: the side whose connection ID is the smaller opens 2, 4, 6, ...,
// the other 1, 3, 5, ...; the n-th stream a side opens (n = 1, 2, ...) is
// 2n or 2n-1. Each side says how many of the peer's streams it takes in
// all (STREAM_LIMIT, cumulative: the streams of the peer's it let end plus
// MaxIncomingStreams); until it says, the default, 100, is assumed.

// sendVal is the state of a frame that must reach the peer once: after
// golang.org/x/net/quic's sentVal.
type sendVal uint8

const (
	valUnset  sendVal = iota // nothing to send
	valNeeded                // to be sent (first time or again)
	valSent                  // in flight
	valAcked                 // the peer has it
)

// need marks v to be sent (again) unless the peer already has it.
func (v *sendVal) need() {
	if *v != valAcked {
		*v = valNeeded
	}
}

// lost marks v to be sent again if it was in flight.
func (v *sendVal) lost() {
	if *v == valSent {
		*v = valNeeded
	}
}

// ctlRef names a stream control frame a sent packet carries, so that its
// acknowledgement or loss reaches the frame's state.
type ctlRef struct {
	id    uint64 // the stream (0 for STREAM_LIMIT)
	value uint64 // a STREAM_CREDIT's credit, a STREAM_LIMIT's limit
	typ   byte   // the frame type
}

// stream is one stream other than 0.
type stream struct {
	// ord is the stream's ordering domain: its numbering, the messages
	// held and the reading rules, as stream 0's c.ord.
	ord ordering
	// yielded is the message the last RecvStream returned, freed by the next.
	yielded *recvMsg

	id uint64
	// guarantee is the stream's default (what Write and Read carry): the
	// opener's choice, carried by its STREAM_OPEN; 0 until that arrived.
	guarantee Guarantee

	open  sendVal // our STREAM_OPEN (streams we open)
	reset sendVal // our STREAM_RESET: we abandoned our direction
	stop  sendVal // our STOP_SENDING: we read nothing more of it

	resetCode, stopCode uint64 // the codes our RESET/STOP_SENDING carry

	// sendErr is what sends fail with once our direction ended: ErrStreamClosed
	// (closed or reset locally), or a *StreamResetError (the peer's
	// STOP_SENDING). recvErr is what reads return once the peer reset.
	sendErr, recvErr error

	// charged is the Delivery credit we charged on this stream so far (the
	// final credit a STREAM_RESET carries); peerCharged what the peer's
	// Delivery messages on it were charged here.
	charged, peerCharged uint64

	queuedCtl bool // on the table's ctl list
	local     bool // we opened it
	// sendDone: our direction ended (our STREAM_RESET acknowledged);
	// recvDone: the peer's did (its STREAM_RESET arrived, or we stopped
	// reading and it answered).
	sendDone, recvDone bool

	fin sendVal // our STREAM_FIN (CloseStreamWrite): it goes once queue is empty

	// queue holds the stream's new fragments (stream 0's are the Conn's
	// queue), scheduled with the other streams' (appendStreams, sched.go);
	// sched is its place there. buffered and unsentBytes are the stream's
	// bytes queued or unacknowledged, and not yet sent: each stream has a
	// send buffer of its own (Config.SendBufferSize).
	queue                 fragQueue
	sched                 schedEntry
	buffered, unsentBytes int

	peerFin   bool   // the peer's STREAM_FIN took effect
	peerFinal uint32 // its final position (the stream's delivery index after its last Delivery message)

	flow streamFlow

	// redundant: its small messages are sent twice (SetStreamRedundancy);
	// noneSeen is the peer's None messages sent twice that were taken
	// (redundancy.go).
	redundant bool
	noneSeen  noneWindow
}

// streamTable is a connection's streams other than 0.
type streamTable struct {
	// list holds the open streams sorted by ID: looked up by binary
	// search, walked in a deterministic order.
	list []*stream

	// The streams we open.
	opened    uint64 // how many so far
	peerLimit uint64 // how many we may open in all: the peer's STREAM_LIMIT

	// The streams the peer opens.
	peerOpened uint64  // the highest n the peer's frames named: every stream up to it is open or ended
	accepted   uint64  // how many AcceptStream returned (in order)
	peerEnded  uint64  // how many ended (both directions) and were forgotten
	limit      uint64  // the STREAM_LIMIT we announce: peerEnded + MaxIncomingStreams
	limitFrame sendVal // our STREAM_LIMIT carrying limit
	limitSent  uint64  // the latest value sent (streamLimitFate)

	ctl []*stream // streams with a control frame to send, in the order they asked

	// ready holds the streams with new fragments to send, by priority
	// and weight (sched.go); zero is stream 0's place there.
	ready scheduler
	zero  schedEntry

	// peerWindow is the credit the peer gives each stream when it opens
	// (its StreamReceiveWindow, §17.6): the default until its HELLO's
	// STREAM_CREDIT of stream 0 said otherwise.
	peerWindow uint64
}

// search returns the index of stream id in the list, or where it would go.
func (t *streamTable) search(id uint64) (int, bool) {
	i, found := slices.BinarySearchFunc(t.list, id, func(s *stream, id uint64) int { return cmp.Compare(s.id, id) })
	return i, found
}

// find returns the open stream id, or nil.
func (t *streamTable) find(id uint64) *stream {
	if i, ok := t.search(id); ok {
		return t.list[i]
	}
	return nil
}

func (t *streamTable) insert(s *stream) {
	i, _ := t.search(s.id)
	t.list = slices.Insert(t.list, i, s)
}

func (t *streamTable) remove(id uint64) {
	if i, ok := t.search(id); ok {
		t.list = slices.Delete(t.list, i, i+1)
	}
}

// evenOpener reports whether this side opens the even stream IDs (its
// connection ID is the smaller).
func (c *Conn) evenOpener() bool { return c.localCID < c.remoteCID }

// streamID is the ID of the n-th stream (n >= 1) the side opening even IDs
// (even) or odd IDs opens.
func streamID(n uint64, even bool) uint64 {
	if even {
		return 2 * n
	}
	return 2*n - 1
}

// streamIndex returns which stream of its opener id is (n >= 1), and
// whether it is one this side opens.
func (c *Conn) streamIndex(id uint64) (n uint64, local bool) {
	even := id%2 == 0
	return (id + 1) / 2, even == c.evenOpener()
}

// streamTable returns the table, allocating it.
func (c *Conn) table() *streamTable {
	if c.streams == nil {
		c.streams = &streamTable{
			peerLimit:  defaultMaxIncomingStreams,
			limit:      uint64(c.cfg.MaxIncomingStreams),
			zero:       schedEntry{weight: 1},
			peerWindow: defaultStreamReceiveWindow,
		}
	}
	return c.streams
}

// OpenStream opens a stream whose default guarantee is g and returns its
// ID. The peer learns of it at once (STREAM_OPEN, carrying g), before any
// of its data, and accepts it in the order opened. It fails with
// ErrStreamLimit (matching ErrWouldBlock) while the peer's limit on open
// streams is reached, or before the handshake completed (the limit is not
// yet known): retry once StreamsAvailable is above zero.
func (c *Conn) OpenStream(g Guarantee) (uint64, error) {
	if !g.Valid() {
		return 0, ErrInvalidGuarantee
	}
	if err := c.sendClosedErr(); err != nil {
		return 0, err
	}
	if c.StreamsAvailable() == 0 {
		return 0, ErrStreamLimit
	}
	t := c.table()
	t.opened++
	s := c.newStream(streamID(t.opened, c.evenOpener()))
	s.guarantee, s.local = g, true
	s.open = valNeeded
	c.queueCtl(s)
	return s.id, nil
}

// StreamsAvailable returns how many more streams OpenStream would open now:
// 0 before the handshake completed and while the peer's limit is reached.
func (c *Conn) StreamsAvailable() int {
	if !c.life.established() || c.localCID == c.remoteCID {
		// (Equal connection IDs, a chance of 2^-64, leave no way to tell
		// whose IDs are whose: no stream is opened.)
		return 0
	}
	if c.streams == nil {
		return defaultMaxIncomingStreams
	}
	return int(c.streams.peerLimit - min(c.streams.peerLimit, c.streams.opened))
}

// AcceptStream returns the next stream the peer opened, in the order it
// opened them, and its default guarantee; ok is false when none is waiting
// (or the next one's STREAM_OPEN has not arrived yet).
func (c *Conn) AcceptStream() (id uint64, g Guarantee, ok bool) {
	t := c.streams
	if t == nil || t.accepted == t.peerOpened {
		return 0, 0, false
	}
	for t.accepted < t.peerOpened {
		id = streamID(t.accepted+1, !c.evenOpener())
		s := t.find(id)
		if s != nil && s.guarantee == 0 {
			return 0, 0, false // its STREAM_OPEN is still on its way
		}
		t.accepted++
		if s != nil {
			return id, s.guarantee, true
		}
		// (It ended before it was accepted: nothing to hand out.)
	}
	return 0, 0, false
}

// sendClosedErr is why nothing more may be sent on the connection, or nil.
func (c *Conn) sendClosedErr() error {
	switch {
	case c.life.endError() != nil:
		return c.life.endError()
	case c.life.ended():
		return ErrClosed
	case c.life.peerClosed():
		return ErrPeerClosed
	}
	return nil
}

// queueCtl puts s on the list of streams with a control frame to send.
func (c *Conn) queueCtl(s *stream) {
	if !s.queuedCtl {
		s.queuedCtl = true
		c.streams.ctl = append(c.streams.ctl, s)
	}
}

// ctlPending reports whether a stream control frame waits to be sent.
func (c *Conn) ctlPending() bool {
	t := c.streams
	if t == nil {
		return false
	}
	if t.limitFrame == valNeeded {
		return true
	}
	for _, s := range t.ctl {
		if s.open == valNeeded || s.reset == valNeeded || s.stop == valNeeded || s.flow.credit == valNeeded || s.finDue() {
			return true
		}
	}
	return false
}

// finDue reports whether s's STREAM_FIN is to go out now: it is owed and
// nothing of the stream waits to be sent the first time (it goes right
// behind the stream's last message). A reset replaces it.
func (s *stream) finDue() bool {
	return s.fin == valNeeded && s.queue.len() == 0 && s.reset == valUnset
}

// appendStreamCtls appends the stream control frames waiting to be sent
// that fit before limit, records them in pkt and returns the new length;
// finned reports a STREAM_FIN among them (the packet then carries no MSG
// frame, as stream 0's: see pollTransmit).
func (c *Conn) appendStreamCtls(buf []byte, n, limit int, pkt *sentPacket) (_ int, finned bool) {
	t := c.streams
	if t.limitFrame == valNeeded {
		f := streamCtlFrame{value: t.limit}
		if n+streamCtlLen(frameStreamLimit, &f) > limit {
			return n, false
		}
		n = len(appendStreamCtl(buf[:n], frameStreamLimit, &f))
		t.limitFrame, t.limitSent = valSent, t.limit
		pkt.ctl = append(pkt.ctl, ctlRef{typ: frameStreamLimit, value: t.limit})
		pkt.eliciting = true
	}
	k := 0
	for ; k < len(t.ctl); k++ {
		s := t.ctl[k]
		if s.finDue() {
			fin := streamFinFrame{stream: s.id, final: s.ord.finalPosition()}
			if n+1+uvarintLen(s.id)+4 > limit {
				c.dropCtlHead(k)
				return n, finned
			}
			n = len(appendStreamFin(buf[:n], &fin))
			s.fin = valSent
			pkt.ctl = append(pkt.ctl, ctlRef{id: s.id, typ: frameStreamFin})
			pkt.eliciting, finned = true, true
		}
		for _, x := range [...]struct {
			v   *sendVal
			typ byte
			f   streamCtlFrame
		}{
			{&s.open, frameStreamOpen, streamCtlFrame{id: s.id, guarantee: s.guarantee}},
			{&s.reset, frameStreamReset, streamCtlFrame{id: s.id, code: s.resetCode, value: s.charged}},
			{&s.stop, frameStopSending, streamCtlFrame{id: s.id, code: s.stopCode}},
		} {
			if *x.v != valNeeded {
				continue
			}
			if n+streamCtlLen(x.typ, &x.f) > limit {
				c.dropCtlHead(k)
				return n, finned
			}
			n = len(appendStreamCtl(buf[:n], x.typ, &x.f))
			*x.v = valSent
			pkt.ctl = append(pkt.ctl, ctlRef{id: s.id, typ: x.typ})
			pkt.eliciting = true
		}
		if s.flow.credit == valNeeded {
			var ok bool
			if n, ok = c.appendStreamCredit(buf, n, limit, pkt, s); !ok {
				c.dropCtlHead(k)
				return n, finned
			}
		}
	}
	c.dropCtlHead(k)
	return n, finned
}

// dropCtlHead removes the first k streams from the ctl list, but those
// whose STREAM_FIN still waits behind their data.
func (c *Conn) dropCtlHead(k int) {
	t := c.streams
	kept := t.ctl[:0]
	for _, s := range t.ctl[:k] {
		if s.fin == valNeeded {
			kept = append(kept, s)
		} else {
			s.queuedCtl = false
		}
	}
	kept = append(kept, t.ctl[k:]...)
	clear(t.ctl[len(kept):])
	t.ctl = kept
}

// onCtlAcked and onCtlLost pass a control frame's fate to its state.
func (c *Conn) onCtlAcked(r ctlRef) { c.ctlFate(r, true) }
func (c *Conn) onCtlLost(r ctlRef)  { c.ctlFate(r, false) }

func (c *Conn) ctlFate(r ctlRef, acked bool) {
	t := c.streams
	if t == nil {
		return
	}
	if r.typ == frameStreamLimit {
		t.streamLimitFate(r.value, acked)
		return
	}
	s := t.find(r.id)
	if s == nil {
		return // the stream ended: nothing is owed for it
	}
	var v *sendVal
	switch r.typ {
	case frameStreamCredit:
		c.streamCreditFate(s, r.value, acked)
		return
	case frameStreamOpen:
		v = &s.open
	case frameStreamReset:
		v = &s.reset
	case frameStopSending:
		v = &s.stop
	case frameStreamFin:
		v = &s.fin
	default:
		return
	}
	if acked {
		*v = valAcked
		c.maybeEndStream(s)
		return
	}
	if *v == valSent {
		*v = valNeeded
		c.queueCtl(s)
	}
}

// streamLimitFate passes the fate of a STREAM_LIMIT carrying value to the
// limit's state. The acknowledgement settles it only if value is the latest
// limit: one of an older limit says nothing of a newer one in flight, which
// must still go again if it is lost. A lost one goes again, with the latest
// limit, if it carried the latest sent and nothing settled it since (a
// newer one queued or in flight replaces an older one lost).
func (t *streamTable) streamLimitFate(value uint64, acked bool) {
	switch {
	case acked && value >= t.limit:
		t.limitFrame = valAcked
	case !acked && value == t.limitSent && t.limitFrame == valSent:
		t.limitFrame = valNeeded
	}
}

// peerStream returns the stream id names in a frame from the peer,
// opening the peer's streams up to it (they are opened in order), or nil
// when it ended and was forgotten (the frame is a late duplicate). A stream
// beyond what we let the peer open, or one of ours never opened, is a
// protocol violation: v says so.
func (c *Conn) peerStream(now time.Time, id uint64) (s *stream, v verdict) {
	n, local := c.streamIndex(id)
	if local {
		t := c.streams
		if t == nil || n > t.opened {
			return nil, c.violate(now, "frame for a stream of ours never opened")
		}
		return t.find(id), applied
	}
	limit := uint64(c.cfg.MaxIncomingStreams)
	if c.streams != nil {
		limit = c.streams.limit
	}
	if n > limit {
		return nil, c.violate(now, "stream beyond the limit announced")
	}
	t := c.table()
	for t.peerOpened < n {
		t.peerOpened++
		c.newStream(streamID(t.peerOpened, !c.evenOpener()))
	}
	return t.find(id), applied
}

// newStream makes stream id and puts it in the table: its ordering
// domain's counters start, as stream 0's, at each side's InitialSeq.
func (c *Conn) newStream(id uint64) *stream {
	s := &stream{id: id}
	s.sched = schedEntry{s: s, weight: 1}
	c.startStreamFlow(s)
	s.ord.startSend(uint64(c.cfg.InitialSequence))
	s.ord.startReceive(c.life.peerInitial())
	c.streams.insert(s)
	_, local := c.streamIndex(id)
	c.traceStream(true, id, local)
	return s
}

// forEachDomain calls fn for every ordering domain, stream 0's first, with
// the message the application holds of it.
func (c *Conn) forEachDomain(fn func(o *ordering, yielded *recvMsg)) {
	fn(&c.ord, c.yieldedMsg)
	if c.streams == nil {
		return
	}
	for _, s := range c.streams.list {
		fn(&s.ord, s.yielded)
	}
}

// onStreamCharged counts credit charged for a message of stream id: the
// final credit its STREAM_RESET would carry.
func (c *Conn) onStreamCharged(id uint64, credit uint64) {
	if s := c.streams.find(id); s != nil {
		s.charged += credit
	}
}

// stream returns the open stream id (not 0), or an error: ErrStreamClosed
// for one that ended (or was never opened).
func (c *Conn) stream(id uint64) (*stream, error) {
	if c.streams != nil {
		if s := c.streams.find(id); s != nil {
			return s, nil
		}
	}
	if err := c.sendClosedErr(); err != nil && c.life.ended() {
		return nil, err
	}
	return nil, ErrStreamClosed
}

// SendStream is Send on stream id (Send itself for 0). It also fails with
// ErrStreamClosed once the stream's sending direction was closed or reset
// locally, and with an error matching ErrStreamReset once the peer asked
// it to stop (STOP_SENDING).
func (c *Conn) SendStream(id uint64, g Guarantee, p []byte) error {
	if id == 0 {
		return c.Send(g, p)
	}
	s, err := c.stream(id)
	if err != nil {
		return err
	}
	return c.send(&s.ord, s, g, p, false)
}

// RecvStream is Recv on stream id (Recv itself for 0): the next message of
// that stream the guarantees let the application read. Message.Data stays
// valid until the next RecvStream of the same stream. It returns io.EOF
// once the peer's direction ended and every message was read, an error
// matching ErrStreamReset after the peer's STREAM_RESET, ErrStreamClosed
// after StopStream, and the connection's errors as Recv does.
func (c *Conn) RecvStream(id uint64) (Message, error) {
	if id == 0 {
		return c.Recv()
	}
	s, err := c.stream(id)
	if err != nil {
		return Message{}, err
	}
	c.releaseIn(&s.ord, &s.yielded)
	switch {
	case c.life.endError() != nil:
		return Message{}, c.life.endError()
	case s.stop != valUnset:
		return Message{}, ErrStreamClosed
	case s.recvErr != nil:
		return Message{}, s.recvErr
	}
	if m, ok := c.nextIn(&s.ord, &s.yielded, c.streamPeerEnded(s)); ok {
		return m, nil
	}
	c.onStreamDrained(s)
	switch {
	case s.peerFin && s.ord.allRead(s.peerFinal):
		// (The STREAM_FIN took effect only once every Delivery message
		// before its final position had arrived: they were all read.)
		s.recvDone = true
		c.maybeEndStream(s)
		return Message{}, io.EOF
	case c.life.peerClosed() || c.life.ended():
		// The peer's CLOSE goes once everything it sent was acknowledged:
		// every message of the stream that was to arrive did.
		return Message{}, io.EOF
	}
	return Message{}, nil
}

// streamPeerEnded reports whether the peer's direction of s has ended:
// its STREAM_FIN or STREAM_RESET, or its CLOSE.
func (c *Conn) streamPeerEnded(s *stream) bool {
	return s.peerFin || s.recvErr != nil || c.life.peerClosed()
}

// CloseStreamWrite ends our direction of stream id (CloseWrite for 0): its
// sends fail with ErrStreamClosed from now on; what was sent is still
// delivered, then a STREAM_FIN tells the peer, whose RecvStream returns
// io.EOF once it read all of it. We keep receiving on the stream.
func (c *Conn) CloseStreamWrite(id uint64) error {
	if id == 0 {
		return c.CloseWrite(time.Time{})
	}
	s, err := c.stream(id)
	if err != nil {
		return err
	}
	if s.sendErr != nil {
		return nil // closed, reset or stopped already
	}
	s.sendErr = ErrStreamClosed
	s.fin = valNeeded
	c.queueCtl(s)
	return nil
}

// handleStreamFinOn applies a STREAM_FIN for a stream other than 0, by the
// rules handleStreamFin applies to stream 0: it takes effect once every
// Delivery message of the stream before its final position arrived
// (refused until then), and nothing may follow it.
func (c *Conn) handleStreamFinOn(now time.Time, fin *streamFinFrame) verdict {
	s, v := c.peerStream(now, fin.stream)
	if s == nil {
		return v
	}
	if s.peerFin {
		if fin.final != s.peerFinal {
			return c.violate(now, "STREAM_FIN with another final position")
		}
		return applied
	}
	if s.recvErr != nil {
		return applied // the peer reset it: its FIN crossed the reset
	}
	if ok, why := s.ord.checkFinal(fin.final, true, "STREAM_FIN"); why != "" {
		return c.violate(now, why)
	} else if !ok {
		return refused
	}
	s.peerFin, s.peerFinal = true, fin.final
	c.acks.sendNow()
	if s.stop != valUnset && s.ord.allRead(s.peerFinal) {
		// We stopped reading: what came was drained, and nothing more comes.
		s.recvDone = true
		c.maybeEndStream(s)
	}
	return applied
}

// BeginSetStream and EndSetStream are BeginSet and EndSet on stream id: a
// set is a group of one stream's messages.
func (c *Conn) BeginSetStream(id uint64) error {
	if id == 0 {
		return c.BeginSet()
	}
	s, err := c.stream(id)
	if err != nil {
		return err
	}
	return s.ord.beginSet()
}

// EndSetStream ends the set BeginSetStream started on stream id.
func (c *Conn) EndSetStream(id uint64) {
	if id == 0 {
		c.EndSet()
	} else if s, _ := c.stream(id); s != nil {
		s.ord.endSet()
	}
}

// ResetStream abandons our direction of stream id: what it has queued or
// in flight is dropped (never sent again), its sends fail with
// ErrStreamClosed, and the peer's reads of it fail with an error carrying
// code (STREAM_RESET).
func (c *Conn) ResetStream(id uint64, code uint64) error {
	s, err := c.stream(id)
	if err != nil || id == 0 {
		if id == 0 {
			return fieldError("id", id, "stream 0 is the connection: Abort or Close it")
		}
		return err
	}
	c.resetStream(s, ErrStreamClosed, code)
	return nil
}

// StopStream tells the peer that we read nothing more of stream id
// (STOP_SENDING carrying code): what it holds is dropped, what arrives
// later is dropped as it arrives (its credit given back), and the peer
// resets its direction.
func (c *Conn) StopStream(id uint64, code uint64) error {
	s, err := c.stream(id)
	if err != nil || id == 0 {
		if id == 0 {
			return fieldError("id", id, "stream 0 is the connection: Close it")
		}
		return err
	}
	if s.stop != valUnset || s.recvDone {
		return nil
	}
	s.stopCode = code
	s.stop = valNeeded
	c.queueCtl(s)
	c.drainStopped(s)
	return nil
}

// drainStopped reads and drops what stream s holds once we stopped
// reading it, so that its credit returns to the peer.
func (c *Conn) drainStopped(s *stream) {
	if s.stop == valUnset {
		return
	}
	// Read, not merely freed: a Delivery message marked read is
	// recognised when it comes again, and never charged twice.
	for {
		c.releaseIn(&s.ord, &s.yielded)
		if _, ok := c.nextIn(&s.ord, &s.yielded, c.streamPeerEnded(s)); !ok {
			break
		}
	}
	if s.peerFin && !s.recvDone && s.ord.allRead(s.peerFinal) {
		// (Its STREAM_FIN came before we stopped: nothing more comes.)
		s.recvDone = true
		c.maybeEndStream(s)
	}
}

// handleStreamCtl applies a stream control frame.
func (c *Conn) handleStreamCtl(now time.Time, typ byte, f *streamCtlFrame) verdict {
	if typ == frameStreamLimit {
		c.onPeerStreamLimit(f.value)
		return applied
	}
	if f.id == 0 {
		// STREAM_CREDIT of stream 0: the credit each stream of the peer's
		// receiving starts with (§17.6).
		c.onPeerStreamWindow(f.value)
		return applied
	}
	s, v := c.peerStream(now, f.id)
	if s == nil {
		return v
	}
	switch typ {
	case frameStreamCredit:
		s.flow.peerMaxData = max(s.flow.peerMaxData, f.value)
	case frameStreamOpen:
		if s.local {
			return c.violate(now, "STREAM_OPEN of a stream of ours")
		}
		if s.guarantee != 0 && s.guarantee != f.guarantee {
			return c.violate(now, "STREAM_OPEN with another guarantee")
		}
		s.guarantee = f.guarantee
	case frameStopSending:
		if !s.sendDone {
			c.resetStream(s, &StreamResetError{Stream: s.id, Code: f.code}, f.code)
		}
	case frameStreamReset:
		return c.handlePeerReset(now, s, f)
	}
	return applied
}

// handlePeerReset applies the peer's STREAM_RESET: it abandoned its
// direction of s. What s holds is dropped, and the credit the peer charged
// for messages that never arrived is given back (§17.5).
func (c *Conn) handlePeerReset(now time.Time, s *stream, f *streamCtlFrame) verdict {
	if s.recvDone {
		return applied // a retransmission
	}
	if f.value < s.peerCharged {
		return c.violate(now, "STREAM_RESET below the credit charged")
	}
	if f.value > s.flow.creditSent {
		// (An honest sender charged at most the stream's credit, 17.6.)
		return c.violate(now, "STREAM_RESET beyond the stream's credit")
	}
	c.releaseIn(&s.ord, &s.yielded)
	s.ord.clear(nil, c.freeRecvMsg)
	c.consumed += f.value - s.peerCharged
	s.flow.consumed += f.value - s.peerCharged
	s.peerCharged = f.value
	c.maybeUpdateWindow()
	s.peerFin = false
	if s.recvErr == nil {
		s.recvErr = &StreamResetError{Stream: s.id, Code: f.code}
	}
	s.recvDone = true
	c.maybeEndStream(s)
	return applied
}

// onPeerStreamLimit takes the peer's STREAM_LIMIT: the streams we may open
// in all. The first one replaces the default assumed until then (a side
// whose limit is not the default sends it with its HELLO, before we may
// open anything); later ones only raise it (they may arrive out of order).
func (c *Conn) onPeerStreamLimit(v uint64) {
	if c.streams == nil {
		if v == defaultMaxIncomingStreams {
			return
		}
		c.table()
		c.streams.peerLimit = v
		return
	}
	c.streams.peerLimit = max(c.streams.peerLimit, v)
}

// resetStream abandons our direction of s: what it still has queued or in
// flight is dropped, sends fail with err, and a STREAM_RESET carrying code
// tells the peer.
func (c *Conn) resetStream(s *stream, err error, code uint64) {
	if s.sendErr != nil && s.reset != valUnset {
		return
	}
	if s.sendErr == nil {
		s.sendErr = err
	}
	c.abandonStreamFragments(s.id)
	s.resetCode = code
	s.reset = valNeeded
	c.queueCtl(s)
}

// abandonStreamFragments drops what stream id has queued or in flight: none
// of it is sent (again).
func (c *Conn) abandonStreamFragments(id uint64) {
	for _, q := range []*fragQueue{&c.retransmit, &c.streams.find(id).queue} {
		for _, f := range q.items[q.head:] {
			if f.msg.stream == id {
				c.abandonFragment(f)
			}
		}
	}
	for _, p := range c.sent.inFlight() {
		if p == nil {
			continue
		}
		for _, f := range p.frags {
			if f.msg.stream == id {
				c.abandonFragment(f)
			}
		}
	}
	if r := c.redund; r != nil {
		for _, f := range r.owed.waiting() {
			if f.msg.stream == id {
				c.abandonFragment(f) // (its copy is not sent)
			}
		}
	}
}

// abandonFragment drops f as if the peer had acknowledged it: it is freed
// once no queue or packet holds it.
func (c *Conn) abandonFragment(f *outFragment) {
	if f.acked {
		return
	}
	if f.msg.guarantee == Delivery {
		c.onFragmentAcked(f)
		return
	}
	// (A None/Order fragment is queued until sent once; its bytes are
	// counted until then. One sent twice is held for its copy after.)
	f.acked = true
	if f.sends == 0 {
		*c.bufferedOf(f) -= len(f.msg.data)
	}
}

// maybeEndStream forgets s once both its directions have ended, giving
// its place back if the peer opened it.
func (c *Conn) maybeEndStream(s *stream) {
	if s.reset == valAcked || s.fin == valAcked {
		s.sendDone = true
	}
	if !s.sendDone || !s.recvDone || s.open == valNeeded || s.open == valSent {
		return
	}
	t := c.streams
	if t.find(s.id) != s {
		return
	}
	c.releaseIn(&s.ord, &s.yielded)
	s.ord.clear(nil, c.freeRecvMsg)
	for s.queue.len() > 0 { // (abandoned by a reset: nothing is sent)
		f := s.queue.pop()
		f.queued = false
		c.maybeFreeFragment(f)
	}
	t.ready.remove(&s.sched)
	t.remove(s.id)
	c.traceStream(false, s.id, s.local)
	if !s.local {
		t.peerEnded++
		t.limit++
		t.limitFrame = valNeeded
	}
}
