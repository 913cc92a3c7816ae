// Package traceplot draws a connection's qlog trace (package qlog) as a
// self-contained SVG: goodput, congestion window and bytes in flight, and
// RTT over time, with the packets lost and the data retransmitted marked.
//
// The SVG is written by hand with the standard library, not with a
// plotting module: the picture needs three panels of lines and markers,
// which is a few hundred lines of text output, while the well-kept Go
// plotting module (gonum.org/v1/plot) would add a dependency tree (fonts,
// image codecs) outside the project's allowed set (the standard library
// and golang.org/x), for features not used. The output has no scripts, no
// external fonts or styles: it opens in any browser and renders on
// GitHub.
package traceplot

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/rudp-go/rudp/qlog"
)

// Point is a value at a time (milliseconds since the trace's start).
type Point struct{ T, V float64 }

// Series is what a trace shows over time, extracted by Extract.
type Series struct {
	Title         string
	Perspective   string    // "client" or "server"
	Duration      float64   // ms, the last event's time
	Goodput       []Point   // Mbit/s of new data acknowledged (sender) or received (receiver), per bin
	Window        []Point   // congestion window, bytes
	InFlight      []Point   // bytes in flight
	SmoothedRTT   []Point   // ms
	LatestRTT     []Point   // ms
	MinRTT        []Point   // ms
	Lost          []float64 // times of packets declared lost (path MTU probes aside)
	Retransmits   []float64 // times of packets sent carrying data sent before
	PacketsSent   int
	PacketsLost   int
	Retransmitted int   // packets carrying data sent before
	DataBytes     int64 // new data bytes, as Goodput counts them
}

type frameJSON struct {
	FrameType string `json:"frame_type"`
	StreamID  uint64 `json:"stream_id"`
	Offset    uint64 `json:"offset"`
	Length    int64  `json:"length"`
	Seq       uint64 `json:"rudp_seq"`
}

type packetJSON struct {
	Header struct {
		PacketNumber uint64 `json:"packet_number"`
	} `json:"header"`
	Raw struct {
		Length int `json:"length"`
	} `json:"raw"`
	Frames []frameJSON `json:"frames"`
	Rudp   string      `json:"rudp_packet"`
	// packets_acked
	PacketNumbers []uint64 `json:"packet_numbers"`
}

type metricsJSON struct {
	MinRTT   *float64 `json:"min_rtt"`
	Smoothed *float64 `json:"smoothed_rtt"`
	Latest   *float64 `json:"latest_rtt"`
	Window   *float64 `json:"congestion_window"`
	InFlight *float64 `json:"bytes_in_flight"`
}

// fragKey names a piece of data: a fragment of one message of a stream.
type fragKey struct {
	stream, seq, offset uint64
}

// piece is data a packet carried.
type piece struct {
	k fragKey
	n int64
}

// Extract computes the series of a trace. Goodput counts the data of
// stream frames: on a side that sent data, the first acknowledgement of
// each piece; on a side that only received, its first arrival. bins is the
// number of goodput intervals over the trace (at least 1).
func Extract(tr *qlog.Trace, bins int) (*Series, error) {
	s := &Series{Title: tr.Header.Title, Perspective: tr.Header.Trace.VantagePoint.Type}
	bins = max(bins, 1)
	sentData := map[uint64][]piece{} // packet number -> the data it carried
	seen := map[fragKey]bool{}       // data sent (or received) before
	delivered := map[fragKey]bool{}  // data acknowledged
	type amount struct {
		t float64
		n int64
	}
	var acked, received []amount
	sampled := false
	for i, e := range tr.Events {
		s.Duration = max(s.Duration, e.Time)
		switch e.Name {
		case "transport:packet_sent", "transport:packet_received", "recovery:packets_acked", "recovery:packet_lost":
			var p packetJSON
			if err := json.Unmarshal(e.Data, &p); err != nil {
				return nil, fmt.Errorf("traceplot: event %d (%s): %w", i, e.Name, err)
			}
			switch e.Name {
			case "transport:packet_sent":
				s.PacketsSent++
				var keys []piece
				again := false
				for _, f := range p.Frames {
					if f.FrameType != "stream" || f.Length == 0 {
						continue
					}
					k := fragKey{f.StreamID, f.Seq, f.Offset}
					if seen[k] {
						again = true
					}
					seen[k] = true
					keys = append(keys, piece{k, f.Length})
				}
				if len(keys) > 0 {
					sentData[p.Header.PacketNumber] = keys
				}
				if again {
					s.Retransmitted++
					s.Retransmits = append(s.Retransmits, e.Time)
				}
			case "transport:packet_received":
				for _, f := range p.Frames {
					k := fragKey{f.StreamID, f.Seq, f.Offset}
					if f.FrameType == "stream" && f.Length > 0 && !seen[k] {
						seen[k] = true
						received = append(received, amount{e.Time, f.Length})
					}
				}
			case "recovery:packets_acked":
				for _, pn := range p.PacketNumbers {
					for _, d := range sentData[pn] {
						if !delivered[d.k] {
							delivered[d.k] = true
							acked = append(acked, amount{e.Time, d.n})
						}
					}
					delete(sentData, pn)
				}
			case "recovery:packet_lost":
				if p.Rudp != "mtu_probe" {
					s.PacketsLost++
					s.Lost = append(s.Lost, e.Time)
				}
				delete(sentData, p.Header.PacketNumber)
			}
		case "recovery:metrics_updated":
			var m metricsJSON
			if err := json.Unmarshal(e.Data, &m); err != nil {
				return nil, fmt.Errorf("traceplot: event %d (%s): %w", i, e.Name, err)
			}
			add := func(to *[]Point, v *float64) {
				if v != nil {
					*to = append(*to, Point{e.Time, *v})
				}
			}
			add(&s.Window, m.Window)
			add(&s.InFlight, m.InFlight)
			// The RTT from its first sample on: before it, the smoothed
			// RTT is the configured initial guess and the others are 0.
			if m.Latest != nil && *m.Latest > 0 {
				sampled = true
			}
			if sampled {
				add(&s.SmoothedRTT, m.Smoothed)
				add(&s.LatestRTT, m.Latest)
				add(&s.MinRTT, m.MinRTT)
			}
		}
	}
	flow := acked
	if len(flow) == 0 {
		flow = received
	}
	if s.Duration > 0 {
		width := s.Duration / float64(bins)
		sums := make([]int64, bins)
		for _, a := range flow {
			sums[min(bins-1, int(a.t/width))] += a.n
			s.DataBytes += a.n
		}
		for i, n := range sums {
			// bytes per ms -> Mbit/s: n*8/1e6 bits per width/1e3 s.
			s.Goodput = append(s.Goodput, Point{T: (float64(i) + 0.5) * width, V: float64(n) * 8 / 1e3 / width})
		}
	}
	return s, nil
}

// Options shape the picture.
type Options struct {
	Width int // pixels; default 960
	Title string
}

// panel is one of the picture's plots.
type panel struct {
	title, unit string
	lines       []line
	marks       []mark
}

type line struct {
	name, color string
	pts         []Point
	step        bool // a step function (a value holds until the next)
}

type mark struct {
	name, class, color string
	times              []float64
}

// WriteSVG draws s into w.
func WriteSVG(w io.Writer, s *Series, o Options) error {
	width := o.Width
	if width <= 0 {
		width = 960
	}
	title := o.Title
	if title == "" {
		title = fmt.Sprintf("%s (%s)", s.Title, s.Perspective)
	}
	panels := []panel{
		{title: "goodput", unit: "Mbit/s", lines: []line{{"goodput", "#1f77b4", s.Goodput, false}}},
		{title: "congestion window and bytes in flight", unit: "KiB",
			lines: []line{{"congestion window", "#2ca02c", scale(s.Window, 1.0/1024), true},
				{"bytes in flight", "#9467bd", scale(s.InFlight, 1.0/1024), true}},
			marks: []mark{{fmt.Sprintf("lost (%d)", len(s.Lost)), "lost", "#d62728", s.Lost},
				{fmt.Sprintf("retransmitted (%d)", len(s.Retransmits)), "retransmitted", "#ff7f0e", s.Retransmits}}},
		{title: "round-trip time", unit: "ms",
			lines: []line{{"latest", "#c7c7c7", s.LatestRTT, true}, {"smoothed", "#17becf", s.SmoothedRTT, true},
				{"min", "#7f7f7f", s.MinRTT, true}}},
	}
	const (
		left, right = 70, 20
		top         = 50
		ph, gap     = 180, 60 // panel height, space between panels (title, axis labels)
	)
	height := top + len(panels)*(ph+gap) + 10
	pw := float64(width - left - right)
	dur := math.Max(s.Duration, 1)
	x := func(t float64) float64 { return left + t/dur*pw }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc(title))
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#555">%d packets sent, %d lost, %d retransmitted; %.1f MB of data in %.2f s</text>`+"\n",
		left, s.PacketsSent, s.PacketsLost, s.Retransmitted, float64(s.DataBytes)/1e6, s.Duration/1e3)
	for i, p := range panels {
		y0 := float64(top + i*(ph+gap) + 20)
		ymax := 0.0
		for _, l := range p.lines {
			for _, pt := range l.pts {
				ymax = math.Max(ymax, pt.V)
			}
		}
		ymax = niceCeil(ymax)
		y := func(v float64) float64 { return y0 + ph - v/ymax*ph }
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" font-weight="bold">%s (%s)</text>`+"\n", left, y0-6, esc(p.title), esc(p.unit))
		fmt.Fprintf(&b, `<rect x="%d" y="%.0f" width="%.0f" height="%d" fill="none" stroke="#999"/>`+"\n", left, y0, pw, ph)
		for k := 0; k <= 5; k++ { // (ymax is 1, 2 or 5 times a power of ten: fifths are round)
			v := ymax * float64(k) / 5
			fmt.Fprintf(&b, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`, left, left+pw, y(v), y(v))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", left-6, y(v)+4, num(v))
		}
		for k := 0; k <= 5; k++ {
			t := dur * float64(k) / 5
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%s s</text>`+"\n", x(t), y0+ph+16, num(t/1e3))
		}
		for _, m := range p.marks {
			if len(m.times) == 0 {
				continue
			}
			// One tick per event, at the top of the panel (retransmissions
			// below the losses), as one path: "M x y v 8" each.
			off := 0.0
			if m.class == "retransmitted" {
				off = 8
			}
			fmt.Fprintf(&b, `<path class="%s" stroke="%s" stroke-width="1" d="`, m.class, m.color)
			for _, t := range m.times {
				fmt.Fprintf(&b, "M%.1f %.0fv8", x(t), y0+off)
			}
			b.WriteString("\"/>\n")
		}
		for _, l := range p.lines {
			if len(l.pts) == 0 {
				continue
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="`, l.color)
			prev := 0.0
			for j, pt := range thin(l.pts, dur/pw) {
				if l.step && j > 0 {
					fmt.Fprintf(&b, "%.1f,%.1f ", x(pt.T), y(prev))
				}
				fmt.Fprintf(&b, "%.1f,%.1f ", x(pt.T), y(pt.V))
				prev = pt.V
			}
			if l.step {
				fmt.Fprintf(&b, "%.1f,%.1f", x(dur), y(prev))
			}
			b.WriteString("\"/>\n")
		}
		// The legend, right-aligned above the panel.
		lx := float64(left) + pw
		items := append([]line(nil), l2items(p)...)
		for j := len(items) - 1; j >= 0; j-- {
			it := items[j]
			lx -= float64(len(it.name))*6.5 + 26
			fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="4" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n",
				lx, y0-12, it.color, lx+16, y0-6, esc(it.name))
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// thin keeps, of the points within each interval of width (a pixel), the
// first, the lowest, the highest and the last, in time order: the line
// drawn is the same, and a trace of a long transfer (a point per packet)
// does not make a picture of megabytes.
func thin(pts []Point, width float64) []Point {
	if len(pts) < 4 || width <= 0 {
		return pts
	}
	var out []Point
	for i := 0; i < len(pts); {
		bin := math.Floor(pts[i].T / width)
		j := i + 1
		lo, hi := i, i
		for ; j < len(pts) && math.Floor(pts[j].T/width) == bin; j++ {
			if pts[j].V < pts[lo].V {
				lo = j
			}
			if pts[j].V > pts[hi].V {
				hi = j
			}
		}
		keep := []int{i, lo, hi, j - 1}
		if lo > hi {
			keep[1], keep[2] = hi, lo
		}
		last := -1
		for _, k := range keep {
			if k != last {
				out = append(out, pts[k])
				last = k
			}
		}
		i = j
	}
	return out
}

func l2items(p panel) []line {
	var out []line
	for _, l := range p.lines {
		out = append(out, line{name: l.name, color: l.color})
	}
	for _, m := range p.marks {
		out = append(out, line{name: m.name, color: m.color})
	}
	return out
}

func scale(pts []Point, f float64) []Point {
	out := make([]Point, len(pts))
	for i, p := range pts {
		out[i] = Point{p.T, p.V * f}
	}
	return out
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 if v is 0).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func num(v float64) string {
	switch {
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

func esc(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}

// PlotFile reads the qlog trace in and writes its SVG to out, with
// Extract's bins; it returns the series drawn.
func PlotFile(in, out string, bins int, o Options) (*Series, error) {
	f, err := os.Open(in)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr, err := qlog.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in, err)
	}
	s, err := Extract(tr, bins)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in, err)
	}
	w, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	if err := WriteSVG(w, s, o); err != nil {
		w.Close()
		return nil, err
	}
	return s, w.Close()
}
