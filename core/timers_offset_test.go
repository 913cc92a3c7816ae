package core

import (
	"testing"
	"time"
)

// TestOffsetAfter: offsetAfter(t, d) is offset(t.Add(d)) (what it saves
// making), for times before, at and after the base, with and without a
// monotonic reading, and the zero time.
func TestOffsetAfter(t *testing.T) {
	mono := time.Now()
	for _, base := range []time.Time{mono, mono.Round(0), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} {
		ts := timerSet{base: base}
		times := []time.Time{{}, base, base.Add(-time.Hour), base.Add(-time.Nanosecond), base.Add(time.Nanosecond), base.Add(3 * time.Second), base.Add(100 * time.Hour).Round(0)}
		for _, at := range times {
			for _, d := range []time.Duration{0, 1, time.Millisecond, 25 * time.Millisecond, time.Hour, 400 * 24 * time.Hour} {
				if got, want := ts.offsetAfter(at, d), ts.offset(at.Add(d)); got != want {
					t.Errorf("base %v, t %v, d %v: offsetAfter %d, offset of the sum %d", base, at, d, got, want)
				}
			}
		}
	}
}

// TestHeartbeatAtOffsets: heartbeatAt, worked out in offsets, gives the
// deadline of its definition in times (armHeartbeat's): a period after our
// last ack-eliciting packet, or a quarter longer after the peer's if that
// came later; half a period longer on the side with the larger connection
// ID.
func TestHeartbeatAtOffsets(t *testing.T) {
	base := time.Now()
	p := 2 * time.Second
	want := func(c *Conn) time.Time {
		var recvd time.Time
		if c.lastElicitingRecv != 0 {
			recvd = c.timers.time(c.lastElicitingRecv)
		}
		if c.localCID > c.remoteCID {
			last := c.lastAckElicitingSent
			if recvd.After(last) {
				last = recvd
			}
			return last.Add(p * 3 / 2)
		}
		if recvd.After(c.lastAckElicitingSent) {
			return recvd.Add(p * 5 / 4)
		}
		return c.lastAckElicitingSent.Add(p)
	}
	sents := []time.Time{{}, base, base.Add(time.Millisecond), base.Add(time.Second)}
	recvs := []int64{0, 1, int64(time.Millisecond) + 1, int64(time.Millisecond), int64(5 * time.Second)}
	for _, local := range []uint64{1, 3} {
		for _, sent := range sents {
			for _, recvd := range recvs {
				c := &Conn{localCID: local, remoteCID: 2, timers: timerSet{base: base}}
				c.cfg.HeartbeatPeriod = p
				c.lastAckElicitingSent, c.lastElicitingRecv = sent, recvd
				if got, w := c.heartbeatAt(), c.timers.offset(want(c)); got != w {
					t.Errorf("local CID %d, sent %v, received offset %d: %d, want %d", local, sent.Sub(base), recvd, got, w)
				}
			}
		}
	}
}
