package traceplot_test

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/traceplot"
	"github.com/rudp-go/rudp/qlog"
)

// TestExtract writes a small trace through the qlog writer (a packet
// lost, its data sent again and acknowledged) and checks the series.
func TestExtract(t *testing.T) {
	var buf bytes.Buffer
	start := time.Unix(1700000000, 0)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	tr := qlog.NewTracer(&buf, core.TraceInfo{LocalCID: 1, Start: start})
	data := func(seq uint32) []core.Frame {
		return []core.Frame{{Type: core.FrameMsg, Guarantee: core.Delivery, Seq: seq, DataLen: 1000, Total: 1000}}
	}
	tr.PacketSent(core.PacketEvent{Time: at(0), Number: 1, Size: 1100, Frames: data(1)})
	tr.PacketSent(core.PacketEvent{Time: at(1), Number: 2, Size: 1100, Frames: data(2)})
	tr.MetricsUpdated(core.MetricsEvent{Time: at(1), CongestionWindow: 12000, BytesInFlight: 2200,
		RTT: core.RTTStats{Smoothed: 20 * time.Millisecond, Latest: 20 * time.Millisecond, Min: 20 * time.Millisecond}})
	tr.PacketAcked(core.AckedEvent{Time: at(20), Number: 2})
	tr.PacketLost(core.LostEvent{Time: at(20), Number: 1, Trigger: core.LossTime})
	tr.PacketLost(core.LostEvent{Time: at(20), Number: 3, PathProbe: true})
	tr.PacketSent(core.PacketEvent{Time: at(21), Number: 4, Size: 1100, Frames: data(1)})
	tr.MetricsUpdated(core.MetricsEvent{Time: at(21), CongestionWindow: 6000, BytesInFlight: 1100,
		RTT: core.RTTStats{Smoothed: 20 * time.Millisecond, Latest: 20 * time.Millisecond, Min: 20 * time.Millisecond}})
	tr.PacketAcked(core.AckedEvent{Time: at(41), Number: 4})
	tr.PacketAcked(core.AckedEvent{Time: at(42), Number: 4}) // (a second report adds nothing)
	tr.StateChanged(core.StateEvent{Time: at(50), Old: core.StateEstablished, New: core.StateClosed})

	trace, err := qlog.Decode(&buf)
	require.NoError(t, err)
	s, err := traceplot.Extract(trace, 5)
	require.NoError(t, err)
	require.Equal(t, 3, s.PacketsSent)
	require.Equal(t, 1, s.PacketsLost, "the path MTU probe's loss is not counted")
	require.Equal(t, []float64{20}, s.Lost)
	require.Equal(t, 1, s.Retransmitted)
	require.Equal(t, []float64{21}, s.Retransmits)
	require.Equal(t, int64(2000), s.DataBytes, "each piece of data once")
	require.Equal(t, 50.0, s.Duration)
	require.Len(t, s.Goodput, 5)
	// 1000 bytes acknowledged in [20, 30) ms and 1000 in [40, 50) ms:
	// 8000 bits in 10 ms each, 0.8 Mbit/s.
	require.InDeltaSlice(t, []float64{0, 0, 0.8, 0, 0.8}, values(s.Goodput), 1e-9)
	require.Equal(t, []traceplot.Point{{T: 1, V: 12000}, {T: 21, V: 6000}}, s.Window)
	require.Equal(t, []traceplot.Point{{T: 1, V: 20}}, s.SmoothedRTT, "written when it changes only")

	var svg bytes.Buffer
	require.NoError(t, traceplot.WriteSVG(&svg, s, traceplot.Options{Title: `a <title> & "quotes"`}))
	checkSVG(t, svg.Bytes(), 1, 1)
}

func values(pts []traceplot.Point) []float64 {
	var out []float64
	for _, p := range pts {
		out = append(out, p.V)
	}
	return out
}

// checkSVG checks that svg is well-formed XML with an svg root, and that
// it marks lost losses and retrans retransmissions (one tick each).
func checkSVG(t *testing.T, svg []byte, lost, retrans int) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	root := ""
	marks := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		switch e := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = e.Name.Local
			}
			attr := func(name string) string {
				for _, a := range e.Attr {
					if a.Name.Local == name {
						return a.Value
					}
				}
				return ""
			}
			if e.Name.Local == "path" {
				marks[attr("class")] += strings.Count(attr("d"), "M")
			}
		}
	}
	require.Equal(t, "svg", root)
	require.Equal(t, lost, marks["lost"], "loss markers")
	require.Equal(t, retrans, marks["retransmitted"], "retransmission markers")
	require.False(t, strings.Contains(string(svg), "<script"), "self-contained: no script")
}

func TestExtractRejects(t *testing.T) {
	trace := &qlog.Trace{Events: []qlog.Event{{Time: 1, Name: "transport:packet_sent", Data: []byte(`{"frames":"no"}`)}}}
	_, err := traceplot.Extract(trace, 10)
	require.ErrorContains(t, err, "event 0")
	trace.Events[0] = qlog.Event{Time: 1, Name: "recovery:metrics_updated", Data: []byte(`{"congestion_window":"x"}`)}
	_, err = traceplot.Extract(trace, 10)
	require.Error(t, err)
	// An empty trace draws empty panels.
	s, err := traceplot.Extract(&qlog.Trace{}, 10)
	require.NoError(t, err)
	var svg bytes.Buffer
	require.NoError(t, traceplot.WriteSVG(&svg, s, traceplot.Options{}))
	checkSVG(t, svg.Bytes(), 0, 0)
}
