// Package qlog writes a connection's events (core.Tracer) as a qlog trace:
// JSON Text Sequences (RFC 7464: each record is 0x1E, a JSON object and a
// newline) in the qlog main schema's sequential form (qlog_version "0.3",
// qlog_format "JSON-SEQ"), with the transport, recovery, connectivity and
// security events of the QUIC event definitions
// (draft-ietf-quic-qlog-main-schema, draft-ietf-quic-qlog-quic-events), so
// that qlog viewers such as qvis (https://qvis.quictools.info) open it.
// One file holds one connection.
//
// rudp is not QUIC; its events map onto QUIC's as follows. Every packet is
// of packet_type "1RTT" (one carrying a HELLO: "initial"); MSG and
// STREAM_MSG frames are "stream" frames (offset and length are the
// fragment's within its message, with rudp's guarantee and sequence added),
// CLOSE is "connection_close", STREAM_RESET "reset_stream", STREAM_CREDIT
// "max_stream_data" (stream 0: "max_data"), STREAM_LIMIT "max_streams";
// HELLO, STREAM_OPEN and STREAM_FIN, which QUIC lacks, are "unknown" frames
// with raw_frame_type and a rudp_frame name. The peer's address changes
// are rudp:path_updated, an event of rudp's own.
//
// Usage, a file per connection in a directory:
//
//	cfg := &rudp.Config{Tracer: qlog.DirTracer("/tmp/traces")}
//
// The file is written through a buffer and closed when the connection
// ends; a connection that never ends (the process exits first) may leave
// its last events unwritten.
package qlog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rudp-go/rudp/core"
)

// RecordSeparator starts every JSON-SEQ record (RFC 7464).
const RecordSeparator = 0x1e

// Version is the qlog_version written in the header record.
const Version = "0.3"

// FileExt is the extension DirTracer's files get (".sqlog": sequential qlog).
const FileExt = ".sqlog"

// DirTracer returns a Config.Tracer that writes each connection's trace to
// a file of its own in dir: <start>_<local connection ID>_<client|server>.sqlog,
// start being the connection's start as yyyymmddThhmmss.nnnnnnnnn (UTC). A
// connection whose file cannot be created is not traced (the error goes
// to onError if it is not nil).
func DirTracer(dir string, onError func(error)) func(core.TraceInfo) *core.Tracer {
	return func(info core.TraceInfo) *core.Tracer {
		name := fmt.Sprintf("%s_%016x_%s%s", info.Start.UTC().Format("20060102T150405.000000000"),
			info.LocalCID, perspective(info), FileExt)
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			if onError != nil {
				onError(err)
			}
			return nil
		}
		return NewTracer(f, info)
	}
}

func perspective(info core.TraceInfo) string {
	if info.Server {
		return "server"
	}
	return "client"
}

// NewTracer returns a Tracer that writes the connection's trace to w,
// through a buffer, and closes w (if it is an io.Closer) when the
// connection ends. Write errors stop the writing; Err of the returned
// Tracer's writer is not exposed: a trace is best effort.
func NewTracer(w io.Writer, info core.TraceInfo) *core.Tracer {
	t := newWriter(w, info)
	return &core.Tracer{
		PacketSent:     func(e core.PacketEvent) { t.packet("transport:packet_sent", &e) },
		PacketReceived: func(e core.PacketEvent) { t.packet("transport:packet_received", &e) },
		PacketAcked:    t.onAcked,
		PacketLost:     t.lost,
		MetricsUpdated: t.metrics,
		StreamOpened:   func(e core.StreamEvent) { t.stream(&e, "open") },
		StreamClosed:   func(e core.StreamEvent) { t.stream(&e, "closed") },
		PathChanged:    t.path,
		MTUUpdated:     t.mtu,
		KeyUpdated:     t.key,
		StateChanged:   t.state,
	}
}

// writer is one connection's trace being written.
type writer struct {
	w      *bufio.Writer
	closer io.Closer
	err    error
	start  time.Time
	server bool
	b      []byte // the record being built
	// acked holds packet numbers acknowledged at ackedAt, written as one
	// recovery:packets_acked event before the next event.
	acked   []uint64
	ackedAt time.Time
	last    core.MetricsEvent
	first   bool // no metrics written yet
}

func newWriter(w io.Writer, info core.TraceInfo) *writer {
	t := &writer{w: bufio.NewWriterSize(w, 64<<10), start: info.Start, server: info.Server, first: true}
	t.closer, _ = w.(io.Closer)
	b := append(t.b[:0], RecordSeparator)
	b = append(b, `{"qlog_version":"`+Version+`","qlog_format":"JSON-SEQ","title":"rudp connection `...)
	b = strconv.AppendUint(b, info.LocalCID, 16)
	b = append(b, `","trace":{"vantage_point":{"type":"`...)
	b = append(b, perspective(info)...)
	b = append(b, `"},"common_fields":{"group_id":"`...)
	b = strconv.AppendUint(b, info.LocalCID, 16)
	b = append(b, `","time_format":"relative","reference_time":`...)
	b = strconv.AppendFloat(b, float64(info.Start.UnixNano())/1e6, 'f', 3, 64)
	b = append(b, "}}}\n"...)
	t.b = b
	t.flushRecord()
	return t
}

// begin starts an event record named name at time at, flushing the
// acknowledgements held back first.
func (t *writer) begin(name string, at time.Time) {
	if len(t.acked) > 0 {
		t.writeAcked()
	}
	t.beginRecord(name, at)
}

func (t *writer) beginRecord(name string, at time.Time) {
	b := append(t.b[:0], RecordSeparator)
	b = append(b, `{"time":`...)
	b = appendMillis(b, at.Sub(t.start))
	b = append(b, `,"name":"`...)
	b = append(b, name...)
	b = append(b, `","data":{`...)
	t.b = b
}

// end finishes the record and writes it.
func (t *writer) end() {
	t.b = append(t.b, "}}\n"...)
	t.flushRecord()
}

func (t *writer) flushRecord() {
	if t.err != nil {
		return
	}
	_, t.err = t.w.Write(t.b)
}

// appendMillis appends d in milliseconds, to the microsecond.
func appendMillis(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', -1, 64)
}

func (t *writer) field(name string) {
	if c := t.b[len(t.b)-1]; c != '{' && c != '[' {
		t.b = append(t.b, ',')
	}
	t.b = append(t.b, '"')
	t.b = append(t.b, name...)
	t.b = append(t.b, `":`...)
}

func (t *writer) uint(name string, v uint64) {
	t.field(name)
	t.b = strconv.AppendUint(t.b, v, 10)
}

func (t *writer) str(name, v string) {
	t.field(name)
	t.b = strconv.AppendQuote(t.b, v)
}

func (t *writer) millis(name string, d time.Duration) {
	t.field(name)
	t.b = appendMillis(t.b, d)
}

func (t *writer) open(name string, c byte) {
	t.field(name)
	t.b = append(t.b, c)
}

func (t *writer) close(c byte) { t.b = append(t.b, c) }

func (t *writer) packet(name string, e *core.PacketEvent) {
	t.begin(name, e.Time)
	t.open("header", '{')
	typ := "1RTT"
	for _, f := range e.Frames {
		if f.Type == core.FrameHello {
			typ = "initial"
		}
	}
	t.str("packet_type", typ)
	t.uint("packet_number", e.Number)
	t.close('}')
	t.open("raw", '{')
	t.uint("length", uint64(e.Size))
	t.close('}')
	t.open("frames", '[')
	for i := range e.Frames {
		if i > 0 {
			t.b = append(t.b, ',')
		}
		t.b = append(t.b, '{')
		t.frame(&e.Frames[i])
		t.close('}')
	}
	t.close(']')
	t.end()
}

// frame writes f's fields as the QUIC event definitions' frame of the
// nearest meaning (see the package doc).
func (t *writer) frame(f *core.Frame) {
	switch f.Type {
	case core.FramePadding:
		t.str("frame_type", "padding")
		t.open("raw", '{')
		t.uint("length", uint64(f.Length))
		t.close('}')
	case core.FramePing:
		t.str("frame_type", "ping")
	case core.FrameAck:
		t.str("frame_type", "ack")
		t.millis("ack_delay", f.AckDelay)
		t.open("acked_ranges", '[')
		for i := len(f.AckRanges) - 1; i >= 0; i-- { // (oldest first)
			r := f.AckRanges[i]
			if i < len(f.AckRanges)-1 {
				t.b = append(t.b, ',')
			}
			t.b = append(t.b, '[')
			t.b = strconv.AppendUint(t.b, r.Lo, 10)
			t.b = append(t.b, ',')
			t.b = strconv.AppendUint(t.b, r.Hi, 10)
			t.b = append(t.b, ']')
		}
		t.close(']')
		t.uint("rudp_max_data", f.MaxData)
	case core.FrameClose:
		t.str("frame_type", "connection_close")
		t.str("error_space", "transport")
		t.uint("error_code", f.Code)
	case core.FramePathChallenge:
		t.str("frame_type", "path_challenge")
	case core.FramePathResponse:
		t.str("frame_type", "path_response")
	case core.FrameStreamReset:
		t.str("frame_type", "reset_stream")
		t.uint("stream_id", f.Stream)
		t.uint("error_code", f.Code)
	case core.FrameStopSending:
		t.str("frame_type", "stop_sending")
		t.uint("stream_id", f.Stream)
		t.uint("error_code", f.Code)
	case core.FrameStreamCredit:
		if f.Stream == 0 {
			t.str("frame_type", "max_data")
		} else {
			t.str("frame_type", "max_stream_data")
			t.uint("stream_id", f.Stream)
		}
	case core.FrameStreamLimit:
		t.str("frame_type", "max_streams")
		t.str("stream_type", "bidirectional")
	case core.FrameMsg, core.FrameStreamMsg:
		t.str("frame_type", "stream")
		t.uint("stream_id", f.Stream)
		t.uint("offset", f.Offset)
		t.uint("length", uint64(f.DataLen))
		t.str("rudp_guarantee", guaranteeName(f.Guarantee))
		t.uint("rudp_seq", uint64(f.Seq))
		t.uint("rudp_message_length", f.Total)
	default: // HELLO, STREAM_OPEN, STREAM_FIN
		t.str("frame_type", "unknown")
		t.uint("raw_frame_type", uint64(f.Type))
		t.str("rudp_frame", f.Type.String())
		if f.Type == core.FrameStreamFin || f.Type == core.FrameStreamOpen {
			t.uint("stream_id", f.Stream)
		}
	}
}

func guaranteeName(g core.Guarantee) string {
	switch g {
	case core.None:
		return "none"
	case core.Order:
		return "order"
	case core.Delivery:
		return "delivery"
	}
	return "unknown"
}

// onAcked holds the acknowledgement back: the ones of one ACK frame (one
// time) go out as one event.
func (t *writer) onAcked(e core.AckedEvent) {
	if len(t.acked) > 0 && !e.Time.Equal(t.ackedAt) {
		t.writeAcked()
	}
	t.ackedAt = e.Time
	t.acked = append(t.acked, e.Number)
}

func (t *writer) writeAcked() {
	t.beginRecord("recovery:packets_acked", t.ackedAt)
	t.str("packet_number_space", "application_data")
	t.open("packet_numbers", '[')
	for i, pn := range t.acked {
		if i > 0 {
			t.b = append(t.b, ',')
		}
		t.b = strconv.AppendUint(t.b, pn, 10)
	}
	t.close(']')
	t.end()
	t.acked = t.acked[:0]
}

func (t *writer) lost(e core.LostEvent) {
	t.begin("recovery:packet_lost", e.Time)
	t.open("header", '{')
	t.str("packet_type", "1RTT")
	t.uint("packet_number", e.Number)
	t.close('}')
	trigger := "time_threshold"
	if e.Trigger == core.LossReordering {
		trigger = "reordering_threshold"
	}
	t.str("trigger", trigger)
	if e.PathProbe {
		t.str("rudp_packet", "mtu_probe")
	}
	t.end()
}

// metrics writes the fields that changed since the last metrics_updated.
func (t *writer) metrics(e core.MetricsEvent) {
	t.begin("recovery:metrics_updated", e.Time)
	l, all := &t.last, t.first
	if all || e.RTT.Min != l.RTT.Min {
		t.millis("min_rtt", e.RTT.Min)
	}
	if all || e.RTT.Smoothed != l.RTT.Smoothed {
		t.millis("smoothed_rtt", e.RTT.Smoothed)
	}
	if all || e.RTT.Latest != l.RTT.Latest {
		t.millis("latest_rtt", e.RTT.Latest)
	}
	if all || e.RTT.Variance != l.RTT.Variance {
		t.millis("rtt_variance", e.RTT.Variance)
	}
	if all || e.CongestionWindow != l.CongestionWindow {
		t.uint("congestion_window", uint64(e.CongestionWindow))
	}
	if all || e.BytesInFlight != l.BytesInFlight {
		t.uint("bytes_in_flight", uint64(e.BytesInFlight))
	}
	if all || e.PacketsInFlight != l.PacketsInFlight {
		t.uint("packets_in_flight", uint64(e.PacketsInFlight))
	}
	t.last, t.first = e, false
	t.end()
}

func (t *writer) stream(e *core.StreamEvent, state string) {
	t.begin("transport:stream_state_updated", e.Time)
	t.uint("stream_id", e.ID)
	t.str("stream_type", "bidirectional")
	t.str("new", state)
	if e.Local {
		t.str("stream_side", "sending") // (opened here)
	}
	t.end()
}

func (t *writer) path(e core.PathEvent) {
	t.begin("rudp:path_updated", e.Time)
	t.str("old", addrString(e.From))
	t.str("new", addrString(e.To))
	t.field("validated")
	t.b = strconv.AppendBool(t.b, e.Validated)
	t.end()
}

// addrString is a, or "initial" for the zero AddrPort: the address the
// connection started with (see core.PathEvent).
func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return "initial"
	}
	return a.String()
}

func (t *writer) mtu(e core.MTUEvent) {
	t.begin("connectivity:mtu_updated", e.Time)
	t.uint("old", uint64(e.Old))
	t.uint("new", uint64(e.New))
	t.field("done")
	t.b = strconv.AppendBool(t.b, false)
	if e.BlackHole {
		t.str("rudp_trigger", "black_hole")
	}
	t.end()
}

func (t *writer) key(e core.KeyEvent) {
	t.begin("security:key_updated", e.Time)
	kt := "client_1rtt_secret"
	if e.Remote != t.server { // (the server's keys: ours on a server, the peer's on a client)
		kt = "server_1rtt_secret"
	}
	t.str("key_type", kt)
	t.uint("generation", e.Generation)
	if e.Trigger != "" {
		t.str("trigger", e.Trigger)
	}
	t.end()
}

// quicStates maps rudp's states to the QUIC event definitions' names.
var quicStates = map[core.ConnState]string{
	core.StateHandshake:   "handshake_started",
	core.StateEstablished: "handshake_confirmed",
	core.StateClosing:     "closing",
	core.StateDraining:    "draining",
	core.StateClosed:      "closed",
}

func (t *writer) state(e core.StateEvent) {
	t.begin("connectivity:connection_state_updated", e.Time)
	t.str("old", quicStates[e.Old])
	t.str("new", quicStates[e.New])
	t.end()
	if e.New != core.StateClosed {
		return
	}
	t.begin("connectivity:connection_closed", e.Time)
	switch {
	case e.Err == nil:
		t.str("trigger", "clean")
	case errors.Is(e.Err, core.ErrIdleTimeout), errors.Is(e.Err, core.ErrHandshakeTimeout):
		t.str("trigger", "idle_timeout")
		t.str("reason", e.Err.Error())
	default:
		t.str("trigger", "error")
		t.str("reason", e.Err.Error())
	}
	t.end()
	t.finish()
}

// finish flushes the trace and closes its file.
func (t *writer) finish() {
	if t.err == nil {
		t.err = t.w.Flush()
	}
	if t.closer != nil {
		t.closer.Close()
		t.closer = nil
	}
}
