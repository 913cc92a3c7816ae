package sim

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// DefaultQueueBytes is the bottleneck queue used when LinkConfig.Bandwidth is set and
// LinkConfig.QueueBytes is zero.
const DefaultQueueBytes = 64 << 10

// LinkConfig describes one direction of a point-to-point link. The zero value is a perfect link:
// no delay, no loss, unlimited bandwidth and datagram size.
//
// A datagram sent on the link goes through, in this order: the MTU check, the Filter, the
// bottleneck queue (when Bandwidth > 0), random loss, duplication, and then, for each copy
// independently, latency plus jitter, reordering, corruption and truncation. Every random draw
// comes from the link's own generator, seeded from the Network's seed, and a draw is only made
// for an impairment whose probability is non-zero.
//
// A LinkConfig is a plain value; the Filter it holds is called on the simulator's goroutine only.
type LinkConfig struct {
	// Latency is the fixed one-way propagation delay, added after serialization.
	Latency time.Duration
	// Jitter adds a uniform extra delay in [0, Jitter] to each copy. Jitter larger than the
	// spacing between datagrams reorders them, as on a real path.
	Jitter time.Duration

	// Loss is the probability that a datagram is lost on the wire (after the bottleneck, so a
	// lost datagram still used its share of bandwidth).
	Loss float64
	// Duplicate is the probability that a datagram is delivered twice; the copy gets its own
	// delay, reordering, corruption and truncation draws.
	Duplicate float64
	// Reorder is the probability that a copy is held back an extra ReorderDelay, so that it
	// lands after datagrams sent later.
	Reorder float64
	// ReorderDelay is the extra delay of a reordered copy. It must be positive when Reorder is.
	ReorderDelay time.Duration
	// Corrupt is the probability that 1 to 3 distinct random bytes of a copy are changed.
	Corrupt float64
	// Truncate is the probability that a copy is cut to a random shorter length (possibly 0).
	Truncate float64

	// MTU is the largest datagram the link carries; larger ones are dropped and counted in
	// LinkStats.DroppedMTU. Zero means no limit.
	MTU int

	// Bandwidth is the bottleneck rate in bytes per second; zero means infinite. With a
	// bandwidth, each datagram takes len/Bandwidth to serialize and waits behind earlier ones.
	Bandwidth int64
	// QueueBytes bounds the bytes waiting for the bottleneck (not counting the datagram being
	// serialized); a datagram that would overflow it is dropped (drop-tail) and counted in
	// LinkStats.DroppedQueue. Zero means DefaultQueueBytes. Unused without Bandwidth.
	QueueBytes int

	// Filter, when set, sees every datagram that passed the MTU check; returning false drops
	// it (counted in LinkStats.Filtered). It must not retain or modify b. Use it for targeted
	// tests: drop the Nth datagram, partition the link for a while.
	Filter func(now time.Time, b []byte) bool
}

// Validate reports the first field of c that holds an impossible value.
func (c LinkConfig) Validate() error {
	probs := []struct {
		name string
		p    float64
	}{
		{"Loss", c.Loss}, {"Duplicate", c.Duplicate}, {"Reorder", c.Reorder},
		{"Corrupt", c.Corrupt}, {"Truncate", c.Truncate},
	}
	for _, f := range probs {
		if !(f.p >= 0 && f.p <= 1) { // also rejects NaN
			return fmt.Errorf("sim: LinkConfig.%s = %v, want a probability in [0, 1]", f.name, f.p)
		}
	}
	switch {
	case c.Latency < 0:
		return fmt.Errorf("sim: LinkConfig.Latency = %v, want >= 0", c.Latency)
	case c.Jitter < 0:
		return fmt.Errorf("sim: LinkConfig.Jitter = %v, want >= 0", c.Jitter)
	case c.ReorderDelay < 0:
		return fmt.Errorf("sim: LinkConfig.ReorderDelay = %v, want >= 0", c.ReorderDelay)
	case c.Reorder > 0 && c.ReorderDelay == 0:
		return fmt.Errorf("sim: LinkConfig.ReorderDelay = 0 with Reorder = %v, want > 0", c.Reorder)
	case c.MTU < 0:
		return fmt.Errorf("sim: LinkConfig.MTU = %d, want >= 0", c.MTU)
	case c.Bandwidth < 0:
		return fmt.Errorf("sim: LinkConfig.Bandwidth = %d, want >= 0", c.Bandwidth)
	case c.QueueBytes < 0:
		return fmt.Errorf("sim: LinkConfig.QueueBytes = %d, want >= 0", c.QueueBytes)
	}
	return nil
}

// LinkStats counts what happened to the datagrams sent on one link. Each datagram handed to the
// link is counted once in Sent and then either dropped (DroppedMTU, Filtered, DroppedQueue, Lost)
// or delivered once or twice (Duplicated); Reordered, Corrupted and Truncated count copies.
// It is a snapshot returned by value; not safe for concurrent use with the Network that fills it.
type LinkStats struct {
	Sent           uint64 // datagrams handed to the link by the sending node
	Delivered      uint64 // copies handed to the receiving node
	BytesDelivered uint64 // bytes in those copies (after truncation)
	Lost           uint64 // random loss
	Duplicated     uint64 // datagrams delivered twice
	Reordered      uint64 // copies held back by ReorderDelay
	Corrupted      uint64 // copies with changed bytes
	Truncated      uint64 // copies cut short
	DroppedQueue   uint64 // drop-tail at the bottleneck queue
	DroppedMTU     uint64 // larger than the MTU
	Filtered       uint64 // rejected by the Filter
}

// Link is one direction of a connection between two nodes, created by Network.Connect. Like
// everything in this package it is not safe for concurrent use.
type Link struct {
	from, to int
	index    int
	cfg      LinkConfig
	stats    LinkStats
	rng      *rand.Rand

	// The bottleneck: busyUntil is when the last accepted datagram finishes serializing;
	// waiting holds the datagrams not yet on the wire, in FIFO order from waitHead.
	busyUntil   int64
	waiting     []queued
	waitHead    int
	waitingSize int
}

// queued is a datagram waiting for the bottleneck: it starts serializing at start.
type queued struct {
	start int64
	size  int
}

// From returns the index of the sending node.
func (l *Link) From() int { return l.from }

// To returns the index of the receiving node.
func (l *Link) To() int { return l.to }

// Config returns the link's current configuration.
func (l *Link) Config() LinkConfig { return l.cfg }

// SetConfig replaces the link's configuration from now on (datagrams already in flight keep
// their delivery times). It returns the validation error, if any, and leaves the link unchanged.
func (l *Link) SetConfig(c LinkConfig) error {
	if err := c.Validate(); err != nil {
		return err
	}
	l.cfg = c
	return nil
}

// Stats returns the link's counters.
func (l *Link) Stats() LinkStats { return l.stats }

// chance draws from the link's generator only when p is non-zero, so that enabling one
// impairment does not shift the random stream of a link that does not use it.
func (l *Link) chance(p float64) bool {
	return p > 0 && l.rng.Float64() < p
}

// enqueue runs the bottleneck for a datagram of size bytes sent at now. It returns when the
// datagram leaves the bottleneck, or false when the queue is full.
func (l *Link) enqueue(now int64, size int) (int64, bool) {
	for l.waitHead < len(l.waiting) && l.waiting[l.waitHead].start <= now {
		l.waitingSize -= l.waiting[l.waitHead].size
		l.waitHead++
	}
	if l.waitHead == len(l.waiting) {
		l.waiting, l.waitHead = l.waiting[:0], 0
	}
	start := max(now, l.busyUntil)
	if start > now {
		limit := l.cfg.QueueBytes
		if limit == 0 {
			limit = DefaultQueueBytes
		}
		if l.waitingSize+size > limit {
			return 0, false
		}
		if l.waitHead > len(l.waiting)/2 { // keep the FIFO from growing without bound
			n := copy(l.waiting, l.waiting[l.waitHead:])
			l.waiting, l.waitHead = l.waiting[:n], 0
		}
		l.waiting = append(l.waiting, queued{start: start, size: size})
		l.waitingSize += size
	}
	// Round up, so that a datagram never takes zero time on a finite link.
	serialize := (int64(size)*int64(time.Second) + l.cfg.Bandwidth - 1) / l.cfg.Bandwidth
	l.busyUntil = start + serialize
	return l.busyUntil, true
}

// corrupt changes 1 to 3 distinct bytes of b (len(b) > 0).
func (l *Link) corrupt(b []byte) {
	var picked [3]int
	k := min(1+l.rng.IntN(3), len(b))
	for i := 0; i < k; {
		pos := l.rng.IntN(len(b))
		dup := false
		for _, p := range picked[:i] {
			dup = dup || p == pos
		}
		if dup {
			continue
		}
		picked[i] = pos
		b[pos] ^= byte(1 + l.rng.IntN(255)) // never 0: the byte always changes
		i++
	}
}
