package core

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// Debug logging. Every event is logged at slog.LevelDebug through
// Config.Logger (silent by default: a handler that is never enabled). So
// that a silent logger costs nothing, each site asks debugOn first and
// builds its attributes (slog.Attr values, which box nothing) only then.

// debugOn reports whether l logs debug events.
func debugOn(l *slog.Logger) bool {
	return l != nil && l.Enabled(context.Background(), slog.LevelDebug)
}

// debug logs one debug event; the caller asked debugOn.
func debug(l *slog.Logger, msg string, attrs ...slog.Attr) {
	l.LogAttrs(context.Background(), slog.LevelDebug, msg, attrs...)
}

// debugOn reports whether the connection's Logger (its observer's: nil
// when none is set, trace.go) logs debug events.
func (c *Conn) debugOn() bool { return c.obs != nil && debugOn(c.obs.log) }

// debug logs one debug event of the connection, with its connection ID;
// the caller asked debugOn.
func (c *Conn) debug(msg string, attrs ...slog.Attr) {
	c.obs.log.LogAttrs(context.Background(), slog.LevelDebug, msg,
		append([]slog.Attr{slog.Uint64("cid", c.localCID)}, attrs...)...)
}

// started is when the connection was made (its timers count from then).
func (c *Conn) started() time.Time { return c.timers.base }

// DropCause names why a datagram was dropped, in the logs' "cause"
// attribute.
type DropCause uint8

// Causes an Endpoint logs drops for (rate limited: see LogDrop).
const (
	DropMalformed    DropCause = iota // the header checks failed, or a HELLO was not padded
	DropUnknown                       // for no connection here, and not answered
	DropQueueFull                     // an own datagram (Retry, refusal, reset): MaxQueued wait
	DropResetLimited                  // a stateless reset the rate limit withheld
	DropTruncated                     // longer than the receive buffer (the socket's owner reports it)
	// Dropped by its connection (Stats.DatagramsDropped, DuplicatesDropped,
	// DroppedUnauthenticated, DroppedReplayed), which the socket's owner
	// reports.
	DropConnMalformed   // malformed or unexpected
	DropDuplicate       // a packet received before
	DropUnauthenticated // failed authentication (a protected connection)
	DropReplayed        // a replayed protected packet
	DropMisrouted       // for no connection here, carrying another server's ID (EndpointConfig.ServerID)
	numDropCauses
)

var dropCauseNames = [numDropCauses]string{
	"malformed", "unknown connection", "own datagram queue full", "reset rate limit", "truncated",
	"malformed or unexpected, by its connection", "duplicate", "unauthenticated", "replayed",
	"another server's connection ID",
}

// ConnDrops returns the datagrams c dropped so far, by cause, in the order
// of ConnDropCauses: what a caller compares before and after a datagram to
// log the drop (LogDrop).
func ConnDrops(c *Conn) [4]uint64 {
	return [4]uint64{c.stats.DatagramsDropped, c.stats.DuplicatesDropped, c.stats.DroppedUnauthenticated, c.stats.DroppedReplayed}
}

// ConnDropCauses are the causes of ConnDrops' counts.
var ConnDropCauses = [4]DropCause{DropConnMalformed, DropDuplicate, DropUnauthenticated, DropReplayed}

func (d DropCause) String() string {
	if d < numDropCauses {
		return dropCauseNames[d]
	}
	return "unknown cause"
}

// dropLogInterval is the least time between two log lines of one cause.
const dropLogInterval = time.Second

// dropLog rate-limits the drop events an Endpoint logs: at most one line
// per cause per dropLogInterval, carrying how many datagrams of that cause
// were dropped since the previous line (so a flood of garbage costs one
// line a second, and nothing is hidden). The count of drops after a
// cause's last line is carried by its next line.
type dropLog struct {
	last    [numDropCauses]time.Time // when the cause was last logged
	pending [numDropCauses]uint64    // drops of the cause since then
}

// note counts one drop of cause at now from from, and logs it if the
// cause's interval has passed.
func (d *dropLog) note(l *slog.Logger, now time.Time, cause DropCause, from netip.AddrPort) {
	if cause >= numDropCauses {
		return
	}
	d.pending[cause]++
	if !d.last[cause].IsZero() && now.Sub(d.last[cause]) < dropLogInterval {
		return
	}
	attrs := []slog.Attr{
		slog.String("cause", cause.String()),
		slog.Uint64("count", d.pending[cause]),
		slog.String("from", from.String()),
	}
	if !d.last[cause].IsZero() {
		attrs = append(attrs, slog.Duration("since", now.Sub(d.last[cause])))
	}
	debug(l, "rudp: datagrams dropped", attrs...)
	d.last[cause] = now
	d.pending[cause] = 0
}

// LogDrop logs, rate limited (one line per cause a second, with the count
// since the previous line), a datagram from from that the Endpoint's owner
// dropped itself (DropTruncated) or that one of its connections dropped
// (DropConnMalformed .. DropReplayed: see ConnDrops). It does nothing unless the connections' Logger logs
// debug events; a caller may ask LogsDebug first to skip its own work.
func (ep *Endpoint) LogDrop(now time.Time, cause DropCause, from netip.AddrPort) {
	if ep.debugOn() {
		ep.drops.note(ep.cfg.conn.Logger, now, cause, from)
	}
}

// LogsDebug reports whether the Endpoint's Logger (its connections',
// EndpointConfig.Conn.Logger) logs debug events.
func (ep *Endpoint) LogsDebug() bool { return ep.debugOn() }

func (ep *Endpoint) debugOn() bool { return debugOn(ep.cfg.conn.Logger) }

// drop counts one datagram the Endpoint dropped for cause.
func (ep *Endpoint) drop(now time.Time, cause DropCause, from netip.AddrPort) {
	switch cause {
	case DropMalformed:
		ep.stats.DroppedMalformed++
	case DropUnknown:
		ep.stats.DroppedUnknown++
	case DropQueueFull:
		ep.stats.DroppedQueueFull++
	case DropResetLimited:
		ep.stats.ResetsLimited++
	case DropMisrouted:
		ep.stats.DroppedMisrouted++
	}
	ep.LogDrop(now, cause, from)
}
