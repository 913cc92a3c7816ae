package qlog_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
	"github.com/rudp-go/rudp/internal/traceplot"
	"github.com/rudp-go/rudp/qlog"
)

// bulkNode is a core.Conn with its application: it sends toSend bytes of
// Delivery messages as fast as the connection takes them, reads whatever
// arrives and closes once everything was sent (the sender), or once the
// peer's close was read (the receiver).
type bulkNode struct {
	*core.Conn
	msg    []byte
	toSend int
	got    int
	closed bool
}

func (n *bulkNode) HandleDatagram(now time.Time, b []byte) {
	n.Conn.HandleDatagram(now, b)
	for {
		m, err := n.Recv()
		if err == io.EOF && !n.closed {
			n.closed = true
			n.Close(now)
		}
		if err != nil || m.Data == nil {
			return
		}
		n.got += len(m.Data)
	}
}

func (n *bulkNode) PollTransmit(now time.Time, buf []byte) int {
	for n.toSend > 0 && n.Established() {
		k := min(len(n.msg), n.toSend)
		if err := n.Send(core.Delivery, n.msg[:k]); err != nil {
			break
		}
		n.toSend -= k
	}
	if n.msg != nil && n.toSend == 0 && !n.closed && !n.HasPendingData() && n.Established() {
		n.closed = true
		n.Close(now)
	}
	return n.Conn.PollTransmit(now, buf)
}

// lossyBulk runs a transfer of size bytes from a traced client to a
// server over a 10 ms, 10 MB/s link losing loss of the datagrams each way,
// and returns the client's trace and Stats.
func lossyBulk(t *testing.T, seed uint64, size int, loss float64) ([]byte, core.Stats) {
	t.Helper()
	var buf bytes.Buffer
	traced := 0
	cfg := &core.Config{Tracer: func(info core.TraceInfo) *core.Tracer {
		traced++
		require.False(t, info.Server)
		require.Equal(t, uint64(0xA), info.LocalCID)
		return qlog.NewTracer(&buf, info)
	}}
	ca, err := core.NewConn(cfg, 0xA, sim.Epoch)
	require.NoError(t, err)
	cb, err := core.NewConn(nil, 0xB, sim.Epoch)
	require.NoError(t, err)
	a := &bulkNode{Conn: ca, msg: make([]byte, 16<<10), toSend: size}
	b := &bulkNode{Conn: cb}
	net := sim.New(seed)
	ia, ib := net.AddNode(a), net.AddNode(b)
	link := sim.LinkConfig{Latency: 10 * time.Millisecond, Loss: loss, Bandwidth: 10 << 20}
	require.NoError(t, net.Connect(ia, ib, link))
	require.NoError(t, net.RunUntil(func() bool { return ca.Closed() && cb.Closed() }, 5*time.Minute), "seed %d", seed)
	require.Equal(t, size, b.got)
	require.NoError(t, ca.Err())
	require.Equal(t, 1, traced)
	return buf.Bytes(), ca.Stats()
}

func TestQlogLossyBulkTransfer(t *testing.T) {
	trace, st := lossyBulk(t, 1, 4<<20, 0.02)
	require.NotZero(t, st.PacketsLost, "a lossy transfer loses packets")
	events := checkSchema(t, trace)

	count := map[string]int{}
	lost := 0
	for _, e := range events {
		count[e.Name]++
		if e.Name == "recovery:packet_lost" && !strings.Contains(string(e.Data), "mtu_probe") {
			lost++
		}
	}
	require.Equal(t, int(st.PacketsLost), lost, "packet_lost events (path MTU probes aside) against Stats.PacketsLost")
	require.Equal(t, int(st.PacketsSent), count["transport:packet_sent"], "packet_sent events against Stats.PacketsSent")
	require.NotZero(t, count["recovery:metrics_updated"])
	require.NotZero(t, count["recovery:packets_acked"])
	require.NotZero(t, count["transport:packet_received"])
	require.Equal(t, 1, count["connectivity:connection_closed"])
	require.NotZero(t, count["connectivity:mtu_updated"], "the path MTU search raised the datagram size")
	last := events[len(events)-1]
	require.Equal(t, "connectivity:connection_closed", last.Name)
	require.JSONEq(t, `{"trigger":"clean"}`, string(last.Data))

	// The plot shows the losses where the Stats say they were: as many
	// markers as Stats.PacketsLost, at the loss events' times.
	tr, err := qlog.Decode(bytes.NewReader(trace))
	require.NoError(t, err)
	s, err := traceplot.Extract(tr, 100)
	require.NoError(t, err)
	require.Equal(t, int(st.PacketsLost), s.PacketsLost)
	var lostAt []float64
	for _, e := range events {
		if e.Name == "recovery:packet_lost" && !strings.Contains(string(e.Data), "mtu_probe") {
			lostAt = append(lostAt, e.Time)
		}
	}
	require.Equal(t, lostAt, s.Lost)
	require.Equal(t, int64(4<<20), s.DataBytes, "goodput counts every byte sent once")
	require.NotZero(t, s.Retransmitted)
	var svg bytes.Buffer
	require.NoError(t, traceplot.WriteSVG(&svg, s, traceplot.Options{}))
	_, marks, ok := strings.Cut(svg.String(), `<path class="lost"`)
	require.True(t, ok, "no loss markers")
	marks, _, _ = strings.Cut(marks, "/>")
	require.Equal(t, int(st.PacketsLost), strings.Count(marks, "M"), "one loss marker per packet lost")
}

// checkSchema checks trace against the required fields of the qlog main
// schema (draft-ietf-quic-qlog-main-schema: the JSON-SEQ file's header
// with qlog_version, qlog_format and a trace with its vantage point; each
// event with time, name and data) and of the QUIC event definitions
// (draft-ietf-quic-qlog-quic-events) for the events rudp writes. It
// returns the events.
func checkSchema(t *testing.T, trace []byte) []qlog.Event {
	t.Helper()
	// RFC 7464: every record is RS, JSON text, LF.
	require.Equal(t, byte(qlog.RecordSeparator), trace[0], "a JSON-SEQ file starts with a record separator")
	for i, rec := range bytes.Split(trace[1:], []byte{qlog.RecordSeparator}) {
		require.True(t, bytes.HasSuffix(rec, []byte("\n")), "record %d ends with LF", i)
		require.True(t, json.Valid(rec), "record %d is JSON: %q", i, rec)
	}
	tr, err := qlog.Decode(bytes.NewReader(trace))
	require.NoError(t, err)
	h := tr.Header
	require.Equal(t, "0.3", h.Version)
	require.Equal(t, "JSON-SEQ", h.Format)
	require.Contains(t, []string{"client", "server"}, h.Trace.VantagePoint.Type)
	require.Equal(t, "relative", h.Trace.CommonFields.TimeFormat)
	require.Positive(t, h.Trace.CommonFields.ReferenceTime)

	prev := 0.0
	for i, e := range tr.Events {
		where := fmt.Sprintf("event %d (%s)", i, e.Name)
		require.GreaterOrEqual(t, e.Time, prev, "%s: time goes backwards", where)
		prev = e.Time
		cat, name, ok := strings.Cut(e.Name, ":")
		require.True(t, ok && cat != "" && name != "", "%s: name is category:event", where)
		var d map[string]any
		require.NoError(t, json.Unmarshal(e.Data, &d), where)
		need := func(path ...string) any {
			var v any = d
			for _, p := range path {
				m, ok := v.(map[string]any)
				require.True(t, ok, "%s: %v is not an object", where, path)
				v, ok = m[p]
				require.True(t, ok, "%s: missing %s", where, strings.Join(path, "."))
			}
			return v
		}
		number := func(path ...string) float64 {
			f, ok := need(path...).(float64)
			require.True(t, ok && f >= 0 && f == math.Trunc(f) || ok && strings.HasSuffix(path[len(path)-1], "rtt") || ok && path[len(path)-1] == "rtt_variance",
				"%s: %s is not a count", where, strings.Join(path, "."))
			return f
		}
		switch e.Name {
		case "transport:packet_sent", "transport:packet_received":
			require.Contains(t, []any{"initial", "1RTT"}, need("header", "packet_type"), where)
			number("header", "packet_number")
			require.Positive(t, number("raw", "length"), where)
			frames, ok := need("frames").([]any)
			require.True(t, ok && len(frames) > 0, "%s: frames", where)
			for _, f := range frames {
				fm := f.(map[string]any)
				ft, ok := fm["frame_type"].(string)
				require.True(t, ok, "%s: frame without frame_type", where)
				switch ft {
				case "stream":
					for _, k := range []string{"stream_id", "offset", "length"} {
						require.Contains(t, fm, k, where)
					}
				case "ack":
					ranges, ok := fm["acked_ranges"].([]any)
					require.True(t, ok && len(ranges) > 0, "%s: ack without acked_ranges", where)
					for _, r := range ranges {
						pair := r.([]any)
						require.Len(t, pair, 2)
						require.LessOrEqual(t, pair[0].(float64), pair[1].(float64), where)
					}
				case "unknown":
					require.Contains(t, fm, "raw_frame_type", where)
				case "connection_close":
					require.Contains(t, fm, "error_space", where)
					require.Contains(t, fm, "error_code", where)
				}
			}
		case "recovery:packet_lost":
			number("header", "packet_number")
			require.Contains(t, []any{"reordering_threshold", "time_threshold", "pto_expired"}, need("trigger"), where)
		case "recovery:packets_acked":
			pns, ok := need("packet_numbers").([]any)
			require.True(t, ok && len(pns) > 0, where)
		case "recovery:metrics_updated":
			require.NotEmpty(t, d, "%s: no metric", where)
			for k := range d {
				require.Contains(t, []string{"min_rtt", "smoothed_rtt", "latest_rtt", "rtt_variance",
					"congestion_window", "bytes_in_flight", "packets_in_flight"}, k, where)
				number(k)
			}
		case "connectivity:connection_state_updated":
			require.Contains(t, []any{"handshake_started", "handshake_confirmed", "closing", "draining", "closed"}, need("new"), where)
		case "connectivity:connection_closed":
			need("trigger")
		case "connectivity:mtu_updated":
			require.Positive(t, number("new"), where)
		case "transport:stream_state_updated":
			number("stream_id")
			need("new")
		case "security:key_updated":
			need("key_type")
		case "rudp:path_updated":
			need("new")
		default:
			t.Fatalf("%s: an event the schema check does not know", where)
		}
	}
	return tr.Events
}

// TestQlogAllEvents drives every event kind through a Tracer from
// NewTracer and checks the result against the schema.
func TestQlogAllEvents(t *testing.T) {
	var buf bytes.Buffer
	start := time.Unix(1700000000, 0)
	tr := qlog.NewTracer(&buf, core.TraceInfo{LocalCID: 7, Server: true, Start: start})
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	tr.StateChanged(core.StateEvent{Time: at(0), Old: core.StateHandshake, New: core.StateEstablished})
	tr.PacketSent(core.PacketEvent{Time: at(1), Number: 5, Size: 1200, Frames: []core.Frame{
		{Type: core.FrameHello, Length: 40}, {Type: core.FramePadding, Length: 1000},
		{Type: core.FrameAck, AckRanges: []core.AckRange{{Lo: 9, Hi: 10}, {Lo: 1, Hi: 3}}, AckDelay: 250 * time.Microsecond},
		{Type: core.FrameMsg, Guarantee: core.Delivery, Seq: 3, Offset: 100, DataLen: 50, Total: 500},
		{Type: core.FrameStreamMsg, Stream: 4, Guarantee: core.None}, {Type: core.FramePing},
		{Type: core.FrameClose, Code: 2}, {Type: core.FramePathChallenge}, {Type: core.FramePathResponse},
		{Type: core.FrameStreamFin, Stream: 4}, {Type: core.FrameStreamOpen, Stream: 4},
		{Type: core.FrameStreamReset, Stream: 4, Code: 9}, {Type: core.FrameStopSending, Stream: 4},
		{Type: core.FrameStreamCredit}, {Type: core.FrameStreamCredit, Stream: 4}, {Type: core.FrameStreamLimit},
	}})
	tr.PacketAcked(core.AckedEvent{Time: at(2), Number: 5})
	tr.PacketAcked(core.AckedEvent{Time: at(2), Number: 6})
	tr.PacketLost(core.LostEvent{Time: at(3), Number: 4, Trigger: core.LossReordering})
	tr.PacketLost(core.LostEvent{Time: at(3), Number: 3, PathProbe: true})
	tr.MetricsUpdated(core.MetricsEvent{Time: at(3), CongestionWindow: 10000})
	tr.MetricsUpdated(core.MetricsEvent{Time: at(4), CongestionWindow: 9000})
	tr.StreamOpened(core.StreamEvent{Time: at(4), ID: 4, Local: true})
	tr.StreamClosed(core.StreamEvent{Time: at(5), ID: 4})
	tr.MTUUpdated(core.MTUEvent{Time: at(5), Old: 1200, New: 1452})
	tr.PathChanged(core.PathEvent{Time: at(5), To: netip.MustParseAddrPort("192.0.2.1:4000")})
	tr.KeyUpdated(core.KeyEvent{Time: at(5), Generation: 1, Trigger: "local_update"})
	tr.StateChanged(core.StateEvent{Time: at(6), Old: core.StateEstablished, New: core.StateClosed, Err: errors.New(`bad "thing"`)})
	events := checkSchema(t, buf.Bytes())
	require.Len(t, events, 14)
	require.JSONEq(t, `{"old":"initial","new":"192.0.2.1:4000","validated":false}`, string(events[10].Data))
	require.Equal(t, "recovery:packets_acked", events[2].Name)
	require.JSONEq(t, `{"packet_number_space":"application_data","packet_numbers":[5,6]}`, string(events[2].Data))
	require.JSONEq(t, `{"congestion_window":9000}`, string(events[6].Data), "only what changed")
	require.JSONEq(t, `{"trigger":"error","reason":"bad \"thing\""}`, string(events[13].Data))
}

func TestDecodeRejects(t *testing.T) {
	good := "\x1e{\"qlog_version\":\"0.3\",\"qlog_format\":\"JSON-SEQ\"}\n\x1e{\"time\":1,\"name\":\"a:b\",\"data\":{}}\n"
	tr, err := qlog.Decode(strings.NewReader(good))
	require.NoError(t, err)
	require.Len(t, tr.Events, 1)
	// A trace cut off in its last record reads up to it.
	tr, err = qlog.Decode(strings.NewReader(good + "\x1e{\"time\":2,\"na"))
	require.NoError(t, err)
	require.Len(t, tr.Events, 1)
	for name, in := range map[string]string{
		"empty":       "",
		"no format":   "\x1e{\"qlog_version\":\"0.3\"}\n",
		"bad record":  good + "\x1e{nope}\n\x1e{\"time\":1,\"name\":\"a:b\",\"data\":{}}\n",
		"no data":     good + "\x1e{\"time\":1,\"name\":\"a:b\"}\n\x1e{}\n",
		"not json":    "{\"qlog_version\":\"0.3\"}",
		"wrong types": good + "\x1e{\"time\":\"x\",\"name\":\"a:b\",\"data\":{}}\n\x1e{}\n",
	} {
		_, err := qlog.Decode(strings.NewReader(in))
		require.Error(t, err, name)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("\x1e{\"qlog_version\":\"0.3\",\"qlog_format\":\"JSON-SEQ\"}\n\x1e{\"time\":1,\"name\":\"a:b\",\"data\":{}}\n"))
	f.Add([]byte("\x1e\x1e\x1e"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := qlog.Decode(bytes.NewReader(b))
		if err == nil && tr.Header.Format != "JSON-SEQ" {
			t.Fatal("accepted a header without qlog_format JSON-SEQ")
		}
	})
}
