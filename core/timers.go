package core

import (
	"math"
	"time"
)

// timerKind names a connection's timer slots; the next timeout is their
// minimum.
type timerKind int

const (
	timerAck        timerKind = iota // delayed ACK due
	timerLoss                        // time-threshold loss detection
	timerPTO                         // probe timeout
	timerPacing                      // pacer allows the next packet
	timerIdle                        // idle timeout
	timerHeartbeat                   // keep-alive PING due
	timerHandshake                   // handshake must have completed
	timerReassembly                  // an incomplete unreliable message expires
	timerClose                       // give up waiting for our CLOSE to be acked
	numTimers
)

// timerSet is a connection's deadlines, one slot per timerKind. Its job is
// only to keep them: each part of the connection arms and stops its own
// slots, and HandleTimeout fires the ones due. A deadline is held as
// nanoseconds after base (the connection's creation), plus one (0: not
// armed): 8 bytes a slot, not a time.Time's 24.
type timerSet struct {
	base time.Time
	at   [numTimers]int64
}

// offset encodes t as a deadline (a time before base counts as base).
func (ts *timerSet) offset(t time.Time) int64 { return int64(max(t.Sub(ts.base), 0)) + 1 }

// offsetAfter is offset(t.Add(d)) for d >= 0 without making that time:
// time.Time's Add costs several times its Sub, and the hot paths arm a
// timer or two per packet (rudp's request-response round trip is CPU-bound
// on one thread, issue 12 target 2).
func (ts *timerSet) offsetAfter(t time.Time, d time.Duration) int64 {
	return relOffset(t.Sub(ts.base), d)
}

// relOffset is the offset of a time rel after base, plus d (d >= 0; rel
// may be negative, before base).
func relOffset(rel, d time.Duration) int64 {
	if rel > math.MaxInt64-2-d {
		return math.MaxInt64 - 1 // (t.Sub saturates: never)
	}
	return int64(max(rel+d, 0)) + 1
}

// time decodes a deadline offset (nonzero).
func (ts *timerSet) time(off int64) time.Time { return ts.base.Add(time.Duration(off - 1)) }

// timeOrZero decodes an offset, 0 as the zero time (never).
func (ts *timerSet) timeOrZero(off int64) time.Time {
	if off == 0 {
		return time.Time{}
	}
	return ts.time(off)
}

// set arms slot k for t.
func (ts *timerSet) set(k timerKind, t time.Time) { ts.at[k] = ts.offset(t) }

// setAfter arms slot k for t.Add(d), d >= 0 (see offsetAfter).
func (ts *timerSet) setAfter(k timerKind, t time.Time, d time.Duration) {
	ts.at[k] = ts.offsetAfter(t, d)
}

// stop disarms slot k.
func (ts *timerSet) stop(k timerKind) { ts.at[k] = 0 }

// stopAll disarms every slot (the connection ended).
func (ts *timerSet) stopAll() { ts.at = [numTimers]int64{} }

// armed reports whether slot k is armed.
func (ts *timerSet) armed(k timerKind) bool { return ts.at[k] != 0 }

// get returns slot k's deadline, the zero time if it is not armed.
func (ts *timerSet) get(k timerKind) time.Time {
	if ts.at[k] == 0 {
		return time.Time{}
	}
	return ts.time(ts.at[k])
}

// passed reports whether slot k is armed for at most now.
func (ts *timerSet) passed(k timerKind, now time.Time) bool {
	t := ts.at[k]
	return t != 0 && t <= ts.offset(now)
}

// fire disarms slot k and reports true if it was due at the offset at.
func (ts *timerSet) fire(k timerKind, at int64) bool {
	t := ts.at[k]
	if t == 0 || t > at {
		return false
	}
	ts.at[k] = 0
	return true
}

// next returns the earliest armed deadline's offset, 0 if none is armed.
func (ts *timerSet) next() int64 {
	var next int64
	for _, t := range ts.at {
		if t != 0 && (next == 0 || t < next) {
			next = t
		}
	}
	return next
}
