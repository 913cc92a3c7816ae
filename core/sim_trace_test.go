package core_test

import (
	"fmt"
	"time"

	"github.com/rudp-go/rudp/core"
)

// traceChecker is the tracing invariant, checked on every step of the
// simulator (runSimTimed): a connection's trace agrees with what it did.
// Every packet number is reported sent once, in increasing order; a
// packet's fate (acknowledged or lost) is reported at most once and only
// for a packet reported sent; event times never go backwards; nothing is
// reported after the connection closed; the counts agree with Stats
// (packets sent; packets lost, path MTU probes aside) and PathStats (a
// path event for each move, validation and failed validation); and the
// datagram size the MTU events last reported is Stats.DatagramSize.
type traceChecker struct {
	sent     map[uint64]bool // packet number -> its fate was reported
	lastSent uint64
	anySent  bool
	lost     uint64
	last     time.Time
	state    core.ConnState
	closeErr error
	paths    uint64 // path events
	mtu      int    // the datagram size the last MTU event reported (0: none yet)
	err      error
}

func newTraceChecker() *traceChecker { return &traceChecker{sent: map[uint64]bool{}} }

func (tc *traceChecker) failf(format string, args ...any) {
	if tc.err == nil {
		tc.err = fmt.Errorf("trace: "+format, args...)
	}
}

// at checks an event's time and that the connection has not closed.
func (tc *traceChecker) at(t time.Time, what string) {
	if t.Before(tc.last) {
		tc.failf("%s at %v, before the previous event (%v)", what, t, tc.last)
	}
	tc.last = t
	if tc.state == core.StateClosed {
		tc.failf("%s after the connection closed", what)
	}
}

func (tc *traceChecker) fate(pn uint64, what string) {
	done, ok := tc.sent[pn]
	switch {
	case !ok:
		tc.failf("packet %d %s, never reported sent", pn, what)
	case done:
		tc.failf("packet %d %s, its fate already reported", pn, what)
	}
	tc.sent[pn] = true
}

func (tc *traceChecker) tracer(info core.TraceInfo) *core.Tracer {
	tc.last = info.Start
	return &core.Tracer{
		PacketSent: func(e core.PacketEvent) {
			tc.at(e.Time, "packet sent")
			if tc.anySent && e.Number <= tc.lastSent {
				tc.failf("packet %d sent after %d", e.Number, tc.lastSent)
			}
			if len(e.Frames) == 0 {
				tc.failf("packet %d sent without frames", e.Number)
			}
			tc.lastSent, tc.anySent = e.Number, true
			tc.sent[e.Number] = false
		},
		PacketReceived: func(e core.PacketEvent) { tc.at(e.Time, "packet received") },
		PacketAcked: func(e core.AckedEvent) {
			tc.at(e.Time, "packet acknowledged")
			tc.fate(e.Number, "acknowledged")
		},
		PacketLost: func(e core.LostEvent) {
			tc.at(e.Time, "packet lost")
			tc.fate(e.Number, "lost")
			if !e.PathProbe {
				tc.lost++
			}
		},
		MetricsUpdated: func(e core.MetricsEvent) {
			tc.at(e.Time, "metrics")
			if e.CongestionWindow <= 0 || e.BytesInFlight < 0 {
				tc.failf("metrics %+v", e)
			}
		},
		PathChanged: func(e core.PathEvent) {
			tc.at(e.Time, "path")
			tc.paths++
			if e.From == e.To && !e.Validated {
				tc.failf("path event without a change: %+v", e)
			}
		},
		MTUUpdated: func(e core.MTUEvent) {
			tc.at(e.Time, "MTU")
			if tc.mtu != 0 && e.Old != tc.mtu {
				tc.failf("MTU event from %d, but the last one said %d", e.Old, tc.mtu)
			}
			if e.New == e.Old || e.New < core.BaseDatagramSize || e.BlackHole != (e.New < e.Old) {
				tc.failf("MTU event %+v", e)
			}
			tc.mtu = e.New
		},
		StateChanged: func(e core.StateEvent) {
			tc.at(e.Time, "state "+e.New.String())
			if e.Old != tc.state && tc.state != 0 {
				tc.failf("state %v -> %v, but it was %v", e.Old, e.New, tc.state)
			}
			tc.state, tc.closeErr = e.New, e.Err
		},
	}
}

// check compares the trace with the connection's Stats and state.
func (tc *traceChecker) check(c *core.Conn) error {
	if tc.err != nil {
		return tc.err
	}
	st := c.Stats()
	if n := uint64(len(tc.sent)); n != st.PacketsSent {
		return fmt.Errorf("trace: %d packets reported sent, Stats.PacketsSent %d", n, st.PacketsSent)
	}
	if tc.lost != st.PacketsLost {
		return fmt.Errorf("trace: %d packets reported lost, Stats.PacketsLost %d", tc.lost, st.PacketsLost)
	}
	ps := c.PathStats()
	if n := ps.Migrations + ps.Validated + ps.ValidationsFailed; tc.paths != n {
		return fmt.Errorf("trace: %d path events, PathStats %+v", tc.paths, ps)
	}
	if tc.mtu != 0 && tc.mtu != st.DatagramSize {
		return fmt.Errorf("trace: the MTU events say %d, Stats.DatagramSize %d", tc.mtu, st.DatagramSize)
	}
	if c.Closed() != (tc.state == core.StateClosed) {
		return fmt.Errorf("trace: state %v, Closed %v", tc.state, c.Closed())
	}
	if c.Closed() && tc.closeErr != c.Err() {
		return fmt.Errorf("trace: closed with %v, Err %v", tc.closeErr, c.Err())
	}
	return nil
}
