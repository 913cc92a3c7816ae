package core

import (
	"log/slog"
	"net/netip"
	"time"
)

// Tracer receives one connection's events as they happen: packets sent,
// received, acknowledged and lost (with their frames summarised), RTT and
// congestion-window updates, streams opened and closed, path and MTU
// changes, key updates, state changes and the close. Config.Tracer makes
// one per connection (see TraceInfo); the qlog package writes them as a
// qlog file.
//
// Every field may be nil: an event whose field is nil costs a nil check.
// The callbacks run synchronously inside the Conn's calls, under whatever
// serializes them (the root package's connection mutex): they must not
// call back into the Conn and should not block. Slices in an event
// (PacketEvent.Frames, Frame.AckRanges) alias the connection's scratch
// space and are valid only during the call.
//
// Times are the now of the input that caused the event (HandleDatagram,
// PollTransmit, HandleTimeout, ...). An event caused by a call that takes
// no time (OpenStream, a stream's end by Recv) carries the time of the
// connection's latest input.
//
// Events are added to Tracer as fields, so a Tracer written for one
// version keeps compiling with the next (the shape of quic-go's
// logging.ConnectionTracer). A Tracer is read by one connection at a time;
// the same one may serve several connections only if its functions are
// safe for concurrent use.
type Tracer struct {
	// PacketSent: a packet went out (PollTransmit's datagram).
	PacketSent func(PacketEvent)
	// PacketReceived: a packet of the connection passed the header and
	// duplicate checks and its frames are about to be applied.
	PacketReceived func(PacketEvent)
	// PacketAcked: a packet of ours was acknowledged.
	PacketAcked func(AckedEvent)
	// PacketLost: a packet of ours was declared lost.
	PacketLost func(LostEvent)
	// MetricsUpdated: the RTT estimate, the congestion window or the bytes
	// in flight changed (reported after an ACK, a loss or a send; at most
	// once per input for each).
	MetricsUpdated func(MetricsEvent)
	// StreamOpened and StreamClosed: a stream other than 0 began (opened
	// here or announced by the peer) and ended (both directions done and
	// its place freed).
	StreamOpened func(StreamEvent)
	StreamClosed func(StreamEvent)
	// PathChanged: the peer's address changed or its validation ended.
	PathChanged func(PathEvent)
	// MTUUpdated: the datagram size in use changed (path MTU discovery).
	MTUUpdated func(MTUEvent)
	// KeyUpdated: packet protection installed or updated keys (issue 11's
	// security layer reports through Conn.traceKeyUpdate).
	KeyUpdated func(KeyEvent)
	// StateChanged: the connection moved to another state; the last one
	// is StateClosed, whose event carries the error it ended with.
	StateChanged func(StateEvent)
}

// TraceInfo describes the connection a Config.Tracer constructor is asked
// to trace.
type TraceInfo struct {
	LocalCID uint64
	// Server: the connection was accepted by an Endpoint (a listener's);
	// otherwise it dialed.
	Server bool
	// Start is when the connection was made: the time origin of its events.
	Start time.Time
}

// PacketEvent is a packet sent or received.
type PacketEvent struct {
	Time   time.Time
	Number uint64 // the full packet number (unwrapped)
	Size   int    // the datagram's length
	Frames []Frame
}

// FrameType names a frame in a PacketEvent. Its values are the wire's
// frame type bytes, with the flag nibble of a MSG or STREAM_MSG frame
// cleared (docs/PROTOCOL.md).
type FrameType uint8

// The frame types a trace reports.
const (
	FramePadding       FrameType = framePadding
	FramePing          FrameType = framePing
	FrameAck           FrameType = frameAck
	FrameHello         FrameType = frameHello
	FrameClose         FrameType = frameClose
	FramePathChallenge FrameType = framePathChallenge
	FramePathResponse  FrameType = framePathResponse
	FrameStreamFin     FrameType = frameStreamFin
	FrameStreamOpen    FrameType = frameStreamOpen
	FrameStreamReset   FrameType = frameStreamReset
	FrameStopSending   FrameType = frameStopSending
	FrameStreamCredit  FrameType = frameStreamCredit
	FrameStreamLimit   FrameType = frameStreamLimit
	FrameMsg           FrameType = frameMsg
	FrameStreamMsg     FrameType = frameStreamMsg
)

var frameTypeNames = map[FrameType]string{
	FramePadding: "padding", FramePing: "ping", FrameAck: "ack", FrameHello: "hello",
	FrameClose: "close", FramePathChallenge: "path_challenge", FramePathResponse: "path_response",
	FrameStreamFin: "stream_fin", FrameStreamOpen: "stream_open", FrameStreamReset: "stream_reset",
	FrameStopSending: "stop_sending", FrameStreamCredit: "stream_credit", FrameStreamLimit: "stream_limit",
	FrameMsg: "msg", FrameStreamMsg: "stream_msg",
}

// String returns the frame's name in the trace's words ("msg", "ack", ...).
func (t FrameType) String() string {
	if s, ok := frameTypeNames[t]; ok {
		return s
	}
	return "unknown"
}

// Frame summarises one frame of a traced packet. Which fields are set
// depends on Type.
type Frame struct {
	Type FrameType
	// Length: the bytes of the frame on the wire (PADDING: the run of
	// padding bytes, which is counted as one frame).
	Length int
	// MSG, STREAM_MSG: the message's stream, guarantee and sequence, the
	// fragment's offset and data length, and the whole message's length.
	// Stream also for STREAM_FIN and the stream control frames.
	Stream    uint64
	Guarantee Guarantee
	Seq       uint32
	Offset    uint64
	DataLen   int
	Total     uint64
	// ACK: the acknowledged packet numbers (full, unwrapped), newest range
	// first, the delay the peer reported and the credit it carries.
	AckRanges []AckRange
	AckDelay  time.Duration
	MaxData   uint64
	// CLOSE, STREAM_RESET, STOP_SENDING: the code.
	Code uint64
}

// AckRange is a run of acknowledged packet numbers, Lo to Hi inclusive.
type AckRange struct{ Lo, Hi uint64 }

// AckedEvent is a packet of ours acknowledged.
type AckedEvent struct {
	Time   time.Time
	Number uint64
}

// LossTrigger says why a packet was declared lost (RFC 9002 §6.1).
type LossTrigger uint8

// Loss triggers.
const (
	LossReordering LossTrigger = iota + 1 // packetThreshold newer packets were acknowledged
	LossTime                              // it was sent a loss delay before a newer one was acknowledged
)

// LostEvent is a packet of ours declared lost.
type LostEvent struct {
	Time    time.Time
	Number  uint64
	Size    int
	Trigger LossTrigger
	// PathProbe: a path MTU probe, whose loss is neither congestion nor
	// lost data (Stats.PacketsLost does not count it).
	PathProbe bool
}

// MetricsEvent is the recovery state after a change.
type MetricsEvent struct {
	Time             time.Time
	RTT              RTTStats
	CongestionWindow int
	BytesInFlight    int
	PacketsInFlight  int
}

// StreamEvent is a stream opened or closed.
type StreamEvent struct {
	Time  time.Time
	ID    uint64
	Local bool // opened by this side
}

// PathEvent is a change of the peer's address or of its validation: a
// move to a new address (To, not validated yet), a move back to a
// validated one, or To's validation (From == To, Validated). The zero
// AddrPort stands for the address the connection started with, as in
// HandleDatagramFrom.
type PathEvent struct {
	Time      time.Time
	From, To  netip.AddrPort
	Validated bool // To is validated (a challenge was answered from it, or it is the handshake's)
}

// MTUEvent is a change of the datagram size in use.
type MTUEvent struct {
	Time      time.Time
	Old, New  int
	BlackHole bool // the path stopped carrying Old
}

// KeyEvent is a key installed or updated by packet protection.
type KeyEvent struct {
	Time       time.Time
	Generation uint64 // key phase generation: 0 for the handshake's first keys
	Remote     bool   // the peer's keys (what we open with); else ours
	Trigger    string // "tls", "psk", "local_update", "remote_update"
}

// ConnState is a connection's state in a StateEvent.
type ConnState uint8

// Connection states.
const (
	StateHandshake   ConnState = iota + 1 // HELLO sent, the peer's not yet received
	StateEstablished                      // both HELLOs acknowledged or received
	StateClosing                          // a local Close or Abort began
	StateDraining                         // the peer's CLOSE arrived
	StateClosed                           // ended; StateEvent.Err says why (nil: gracefully)
)

var connStateNames = [...]string{"", "handshake", "established", "closing", "draining", "closed"}

// String returns the state's name ("established", ...).
func (s ConnState) String() string {
	if int(s) < len(connStateNames) && s != 0 {
		return connStateNames[s]
	}
	return "unknown"
}

// StateEvent is a change of the connection's state.
type StateEvent struct {
	Time time.Time
	Old  ConnState
	New  ConnState
	Err  error // StateClosed: why (nil: a graceful end)
}

// observer holds what a connection reports to: its logger and its tracer,
// behind one pointer that is nil when neither is set (a Conn has no bytes
// to spare: core/size_test.go). Its methods are safe on a nil observer.
type observer struct {
	log *slog.Logger // nil: silent
	tr  *Tracer      // nil: not traced
	// now is the time of the latest input, for events caused by calls that
	// take none.
	now   time.Time
	state ConnState
	// The metrics last reported, to report changes only.
	metrics MetricsEvent
	// Scratch for PacketEvent.Frames and their ACK ranges.
	frames []Frame
	ranges []AckRange
	f      frame
}

// newObserver returns the observer of a connection made with cfg, nil if
// cfg sets neither a logger nor a tracer.
func newObserver(cfg *Config, info TraceInfo) *observer {
	var tr *Tracer
	if cfg.Tracer != nil {
		tr = cfg.Tracer(info)
	}
	log := cfg.Logger
	if log == discardLogger {
		log = nil
	}
	if log == nil && tr == nil {
		return nil
	}
	return &observer{log: log, tr: tr, now: info.Start, state: StateHandshake}
}

// Debug logs at debug level (see Config.Logger).
func (o *observer) Debug(msg string, args ...any) {
	if o == nil || o.log == nil {
		return
	}
	o.log.Debug(msg, args...)
}

// tracer returns the connection's tracer, nil if it has none or it has
// closed (StateClosed is the last event: the work that follows an end in
// the same call, as an ACK's tail, is not reported).
func (c *Conn) tracer() *Tracer {
	if c.obs == nil || c.obs.state == StateClosed {
		return nil
	}
	return c.obs.tr
}

// traceAt notes the time of an input (see Tracer).
func (c *Conn) traceAt(now time.Time) {
	if c.obs != nil {
		c.obs.now = now
	}
}

// The per-packet trace calls are a nil check inlined where they are
// called, and a call only when traced: unset, tracing costs no call.

// tracePacket reports a packet sent (sent) or received, numbered pn, of
// size bytes, whose frames are body.
func (c *Conn) tracePacket(sent bool, pn uint64, size int, body []byte) {
	if c.obs != nil {
		c.tracePacketSlow(sent, pn, size, body)
	}
}

// tracePacketSlow is tracePacket on a connection with an observer. The
// reference packet number unwraps the 32-bit largest of an ACK frame.
func (c *Conn) tracePacketSlow(sent bool, pn uint64, size int, body []byte) {
	t := c.tracer()
	if t == nil {
		return
	}
	fn := t.PacketReceived
	ref := c.nextPN // an ACK received acknowledges what we sent
	if sent {
		fn = t.PacketSent
		ref, _ = c.acks.largest()
	}
	if fn == nil {
		return
	}
	o := c.obs
	o.frames, o.ranges = summarizeFrames(body, ref, &o.f, o.frames[:0], o.ranges[:0])
	fn(PacketEvent{Time: o.now, Number: pn, Size: size, Frames: o.frames})
}

// summarizeFrames appends a Frame for each frame of body to frames (the ACK
// ranges to ranges, which the ACK frames' AckRanges alias) and returns
// both. Decoding stops at a malformed frame; a run of PADDING is one frame.
// ref is a packet number near the largest an ACK acknowledges.
func summarizeFrames(body []byte, ref uint64, f *frame, frames []Frame, ranges []AckRange) ([]Frame, []AckRange) {
	f.ack.ranges = f.ack.ranges[:0]
	for len(body) > 0 {
		n, err := decodeFrame(body, f)
		if err != nil {
			break
		}
		body = body[n:]
		fr := Frame{Type: FrameType(f.typ), Length: n}
		switch {
		case f.typ == frameAck:
			largest := unwrap32(ref, f.ack.largest)
			start := len(ranges)
			for _, r := range f.ack.ranges {
				if r.hi > largest {
					break // (a hostile range below 0)
				}
				ranges = append(ranges, AckRange{Lo: largest - r.hi, Hi: largest - r.lo})
			}
			fr.AckRanges = ranges[start:len(ranges):len(ranges)]
			fr.AckDelay = time.Duration(min(f.ack.delay, uint64(time.Hour/time.Microsecond))) * time.Microsecond
			fr.MaxData = f.ack.maxData
		case f.typ == frameClose:
			fr.Code = f.close.code
		case f.typ == frameStreamFin:
			fr.Stream = f.fin.stream
		case f.typ >= frameStreamOpen && f.typ <= frameStreamLimit:
			fr.Stream, fr.Code, fr.Guarantee = f.stream.id, f.stream.code, f.stream.guarantee
		case f.typ&0xf0 == frameMsg || f.typ&0xf0 == frameStreamMsg:
			m := &f.msg
			fr.Type = FrameType(f.typ & 0xf0)
			fr.Stream, fr.Guarantee, fr.Seq = m.stream, m.guarantee, m.seq
			fr.Offset, fr.DataLen, fr.Total = m.offset, len(m.data), m.total
			if !m.fragment {
				fr.Total = uint64(len(m.data))
			}
		}
		frames = append(frames, fr)
	}
	// The ranges may have moved when ranges grew: point the ACK frames'
	// AckRanges at the final array.
	k := 0
	for i := range frames {
		if frames[i].Type == FrameAck {
			n := len(frames[i].AckRanges)
			frames[i].AckRanges = ranges[k : k+n : k+n]
			k += n
		}
	}
	return frames, ranges
}

// tracePacketAcked reports packet p acknowledged.
func (c *Conn) tracePacketAcked(p *sentPacket) {
	if c.obs != nil {
		c.tracePacketAckedSlow(p)
	}
}

func (c *Conn) tracePacketAckedSlow(p *sentPacket) {
	if t := c.tracer(); t != nil && t.PacketAcked != nil {
		t.PacketAcked(AckedEvent{Time: c.obs.now, Number: p.pn})
	}
}

// tracePacketLost reports packet p declared lost.
func (c *Conn) tracePacketLost(p *sentPacket) {
	if c.obs != nil {
		c.tracePacketLostSlow(p)
	}
}

func (c *Conn) tracePacketLostSlow(p *sentPacket) {
	t := c.tracer()
	if t == nil || t.PacketLost == nil {
		return
	}
	trigger := LossTime
	if c.largestAcked-p.pn >= packetThreshold {
		trigger = LossReordering
	}
	t.PacketLost(LostEvent{Time: c.obs.now, Number: p.pn, Size: p.size, Trigger: trigger, PathProbe: p.pathProbe})
}

// traceMetrics reports the recovery state if it changed since last reported.
func (c *Conn) traceMetrics() {
	if c.obs != nil {
		c.traceMetricsSlow()
	}
}

func (c *Conn) traceMetricsSlow() {
	t := c.tracer()
	if t == nil || t.MetricsUpdated == nil {
		return
	}
	o := c.obs
	m := MetricsEvent{
		RTT:              c.recovery.rttStats(),
		CongestionWindow: c.cc.Window(),
		BytesInFlight:    c.bytesInFlight,
		PacketsInFlight:  c.elicitingInFlight,
	}
	if m == o.metrics {
		return
	}
	o.metrics = m
	m.Time = o.now
	t.MetricsUpdated(m)
}

// traceStream reports stream id opened (open) or closed.
func (c *Conn) traceStream(open bool, id uint64, local bool) {
	t := c.tracer()
	if t == nil {
		return
	}
	fn := t.StreamClosed
	if open {
		fn = t.StreamOpened
	}
	if fn != nil {
		fn(StreamEvent{Time: c.obs.now, ID: id, Local: local})
	}
}

// tracePath reports a change of the peer's address (or of its validation).
func (c *Conn) tracePath(from, to netip.AddrPort, validated bool) {
	if t := c.tracer(); t != nil && t.PathChanged != nil {
		t.PathChanged(PathEvent{Time: c.obs.now, From: from, To: to, Validated: validated})
	}
}

// traceMTU reports the datagram size changed from old to size (a fall
// back, to a smaller size, is a black hole's).
func (c *Conn) traceMTU(old, size int) {
	if t := c.tracer(); t != nil && t.MTUUpdated != nil && old != size {
		t.MTUUpdated(MTUEvent{Time: c.obs.now, Old: old, New: size, BlackHole: size < old})
	}
}

// traceKeyUpdate reports keys installed or updated: the hook packet
// protection (security.go, issue 11) calls.
func (c *Conn) traceKeyUpdate(generation uint64, remote bool, trigger string) {
	if t := c.tracer(); t != nil && t.KeyUpdated != nil {
		t.KeyUpdated(KeyEvent{Time: c.obs.now, Generation: generation, Remote: remote, Trigger: trigger})
	}
}

// traceState reports the connection's move to s (err: why it closed).
func (c *Conn) traceState(s ConnState, err error) {
	o := c.obs
	if o == nil || o.state == s || o.state == StateClosed {
		return
	}
	old := o.state
	o.state = s
	if o.tr != nil && o.tr.StateChanged != nil {
		o.tr.StateChanged(StateEvent{Time: o.now, Old: old, New: s, Err: err})
	}
}
