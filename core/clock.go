package core

import "time"

// Clock is the only source of time for the core. The protocol engine never
// reads the real clock: Endpoint asks its Clock, and Conn is always handed the
// time by its caller. Tests inject a virtual clock to make runs reproducible.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock, used by Endpoint when Config.Clock is nil.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }
