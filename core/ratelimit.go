package core

import "time"

// TokenBucket admits events at Rate per second on average, in bursts of
// at most Burst, sans I/O: the caller passes the time. It starts full
// (Burst tokens); the zero value admits nothing. It bounds the work and
// the replies an unauthenticated sender can cause (stateless resets, ICMP
// reports). A TokenBucket is not safe for concurrent use.
type TokenBucket struct {
	Rate  float64 // tokens added per second
	Burst int     // the most tokens held

	tokens  float64
	last    time.Time
	started bool
}

// Allow reports whether an event at now may happen, taking a token if so.
// A now earlier than a previous call's adds nothing.
func (b *TokenBucket) Allow(now time.Time) bool {
	if !b.started {
		b.started, b.tokens, b.last = true, float64(b.Burst), now
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(b.Burst), b.tokens+d.Seconds()*b.Rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
