// Package impair degrades real UDP sockets on purpose: it loses, duplicates,
// reorders, corrupts, delays and rate-limits datagrams on their way out (and
// drops those too long for a path MTU it is told), so
// that a program's tests can run it over a bad link on loopback — a game
// over 5% loss and a 100 ms round trip, say — without root, a network
// namespace or tc.
//
// Two ways in:
//
//   - Wrap impairs one net.PacketConn's writes (its reads pass through). Hand
//     the wrapped socket to code that takes a net.PacketConn, or wrap both
//     ends to impair both directions.
//   - NewProxy starts a UDP relay between any number of clients and one
//     target that impairs each direction with its own Config; the client
//     dials Proxy.Addr instead of the server. It works with any UDP program,
//     including ones that open their own sockets (rudp.Dial, rudp.Listen);
//     cmd/rudpbench's "proxy" subcommand runs one from the command line.
//
// Every random decision comes from a math/rand/v2 source seeded by
// Config.Seed, one source per direction, so a given sequence of datagrams meets
// the same losses, duplicates, corruptions, reorderings and jitter on every
// run. What cannot be reproduced is timing: when datagrams are written and
// how promptly the scheduler wakes decide which ones overflow a rate limiter's
// queue and how jittered datagrams interleave on the wire.
//
// Stats (PacketConn.Stats, Proxy.Stats) count what each direction did, so a
// test can check that the impairment it asked for happened.
package impair

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("impair: invalid config")

// Default values that Config fills in for zero fields.
const (
	// DefaultQueueBytes is the rate limiter's queue when Config.QueueBytes is zero.
	DefaultQueueBytes = 64 << 10
	// minReorderDelay is the smallest default ReorderDelay; see Config.ReorderDelay.
	minReorderDelay = time.Millisecond
)

// Config describes the impairment of one direction. The zero value impairs
// nothing: datagrams are written straight through on the caller's goroutine.
//
// A Config is a plain value; it is copied by Wrap and NewProxy, so changing it
// afterwards has no effect.
type Config struct {
	// Seed seeds the direction's random source. Equal seeds give equal
	// decisions for equal sequences of datagrams.
	Seed uint64

	// Loss is the probability that a datagram is dropped.
	Loss float64
	// Duplicate is the probability that a datagram is delivered twice. The
	// copy gets its own jitter and does not pass through the rate limiter.
	Duplicate float64
	// Reorder is the probability that a datagram is held back by
	// ReorderDelay, so that datagrams written after it overtake it.
	Reorder float64
	// Corrupt is the probability that one bit of a datagram is flipped.
	Corrupt float64

	// Delay is the one-way delay added to every datagram.
	Delay time.Duration
	// Jitter adds a uniformly random extra delay in [0, Jitter] to every
	// datagram. Jitter larger than the spacing of datagrams reorders them.
	Jitter time.Duration
	// ReorderDelay is the extra delay of a reordered datagram. Zero means
	// max(2*Jitter, 1ms).
	ReorderDelay time.Duration

	// Rate is the bottleneck's bandwidth in bytes per second; zero means
	// unlimited. Each datagram occupies the bottleneck for len/Rate and waits
	// behind those queued before it; Delay and Jitter are added after that.
	Rate int64
	// QueueBytes bounds the bytes waiting for the bottleneck (drop-tail: a
	// datagram that does not fit is dropped). Zero means DefaultQueueBytes.
	// Only used when Rate > 0.
	QueueBytes int

	// MaxDatagramSize is the largest datagram (UDP payload bytes) the
	// path carries, as a link's MTU bounds it (an Ethernet path of MTU
	// 1500: 1472 bytes over IPv4): a longer datagram is dropped and
	// counted in Stats.DroppedTooBig, as a router drops a packet that
	// does not fit and may not be fragmented (no ICMP message is sent
	// back). Zero means no limit; loopback's own is 65,507 bytes.
	MaxDatagramSize int
}

// Validate reports the first field with a value out of range, naming it. The
// returned error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	probs := []struct {
		name string
		v    float64
	}{
		{"Loss", c.Loss}, {"Duplicate", c.Duplicate}, {"Reorder", c.Reorder}, {"Corrupt", c.Corrupt},
	}
	for _, p := range probs {
		if math.IsNaN(p.v) || p.v < 0 || p.v > 1 {
			return fmt.Errorf("%w: %s = %v, want a probability in [0, 1]", ErrInvalidConfig, p.name, p.v)
		}
	}
	durs := []struct {
		name string
		v    time.Duration
	}{
		{"Delay", c.Delay}, {"Jitter", c.Jitter}, {"ReorderDelay", c.ReorderDelay},
	}
	for _, d := range durs {
		if d.v < 0 {
			return fmt.Errorf("%w: %s = %v, want >= 0", ErrInvalidConfig, d.name, d.v)
		}
	}
	if c.Rate < 0 {
		return fmt.Errorf("%w: Rate = %d, want >= 0 bytes/s (0 = unlimited)", ErrInvalidConfig, c.Rate)
	}
	if c.QueueBytes < 0 {
		return fmt.Errorf("%w: QueueBytes = %d, want >= 0", ErrInvalidConfig, c.QueueBytes)
	}
	if c.MaxDatagramSize < 0 {
		return fmt.Errorf("%w: MaxDatagramSize = %d, want >= 0 bytes (0 = no limit)", ErrInvalidConfig, c.MaxDatagramSize)
	}
	return nil
}

// withDefaults returns c with zero fields that have a default filled in.
func (c Config) withDefaults() Config {
	if c.ReorderDelay == 0 {
		c.ReorderDelay = max(2*c.Jitter, minReorderDelay)
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	return c
}

// transparent reports whether c changes nothing, so datagrams can be written
// straight through without copying or scheduling.
func (c Config) transparent() bool {
	return c.Loss == 0 && c.Duplicate == 0 && c.Reorder == 0 && c.Corrupt == 0 &&
		c.Delay == 0 && c.Jitter == 0 && c.Rate == 0 && c.MaxDatagramSize == 0
}
