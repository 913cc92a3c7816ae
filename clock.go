package rudp

import "time"

// clockBase anchors monoNow.
var clockBase = time.Now()

// monoNow is time.Now read from the monotonic clock alone: time.Since of a
// time that has a monotonic reading reads one clock, where time.Now reads
// two (wall and monotonic), and the hot paths read the time once or twice
// per datagram. Its wall clock is clockBase's advanced by the monotonic
// clock, so it does not follow steps of the system clock, as package net's
// deadlines do not once set; comparisons with times that carry a
// monotonic reading (every time.Now) use the monotonic clock anyway, and a
// deadline without one is moved onto this clock when it is set
// (deadline.set).
func monoNow() time.Time { return clockBase.Add(time.Since(clockBase)) }

// monoTime is a time on monoNow's clock as nanoseconds since clockBase, 0
// for none: 8 bytes where a time.Time takes 24 (a Conn keeps two).
type monoTime int64

// toMono returns t on monoNow's clock; the zero time is 0.
func toMono(t time.Time) monoTime {
	if t.IsZero() {
		return 0
	}
	return max(1, monoTime(t.Sub(clockBase)))
}

// time returns m as a time.Time; 0 is the zero time.
func (m monoTime) time() time.Time {
	if m == 0 {
		return time.Time{}
	}
	return clockBase.Add(time.Duration(m))
}
