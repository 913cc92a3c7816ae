package core

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"time"
)

// This file holds the core's only ties to the system: the real clock and
// the system's randomness, each used only when a Config names none.

// Clock is the only source of time for the core. The protocol engine never
// reads the real clock: Session asks its Clock, and Conn is always handed the
// time by its caller. Tests inject a virtual clock to make runs reproducible.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock, used by Session when Config.Clock is nil.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// systemRand returns a source seeded from crypto/rand, the default of
// Config.Rand. Simulations and tests give a seeded source instead.
func systemRand() rand.Source {
	var seed [16]byte
	_, _ = crand.Read(seed[:])
	return rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))
}
