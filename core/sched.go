package core

import (
	"cmp"
	"slices"
)

// The streams' scheduler (docs/PROTOCOL.md §17.4a): which stream's new
// fragment goes next into a packet, once control frames and
// retransmissions went (they always go first). Priorities and weights are
// the sender's own business and never travel.
//
//   - Strict priority: a stream of a lower Priority with a fragment that may
//     go always goes before any stream of a higher one.
//   - Inside one priority, bytes are shared by Weight with start-time fair
//     queueing, a virtual-time round robin: each ready stream carries a
//     virtual start tag, the stream with the smallest goes next, one
//     fragment at a time, and its tag then advances by the fragment's
//     wire bytes divided by its weight. The level's virtual time is the
//     tag of the fragment last served; a stream that becomes ready starts
//     at the later of that and the end of its own last fragment, so a
//     stream gains no credit while it was idle, nor while it was passed
//     over for want of flow-control credit (its tag is lifted to the
//     level's virtual time).
//
// Why not deficit round robin, which issue 10 names first: DRR
// serves a stream of weight w w fragments in a row, so a 1 MiB message on
// a stream of weight 4 would hold back a 100-byte message on another for
// four packets; with virtual time a stream that becomes ready starts at
// the level's virtual time, at or below every backlogged stream's tag, and
// goes within a packet whatever the weights. Both take O(log n) per
// fragment (a heap per priority) and give the same shares.
//
// Stream 0 is scheduled as priority 0, weight 1.

// MaxStreamWeight is the largest weight SetStreamPriority takes.
const MaxStreamWeight = 1 << 16

// SetStreamPriority sets how stream id (not 0) is scheduled among the
// streams with data to send: a lower priority goes strictly first, and
// streams of one priority share the sending rate in proportion to their
// weights (1 to MaxStreamWeight). A new stream has priority 0 and weight
// 1, as stream 0 always has. Neither travels to the peer: each side
// schedules what it sends.
func (c *Conn) SetStreamPriority(id uint64, priority, weight int) error {
	switch {
	case id == 0:
		return fieldError("id", id, "stream 0 is always priority 0, weight 1")
	case weight < 1 || weight > MaxStreamWeight:
		return fieldError("weight", weight, "must be 1 to MaxStreamWeight")
	}
	s, err := c.stream(id)
	if err != nil {
		return err
	}
	c.streams.ready.setPriority(&s.sched, priority, weight)
	return nil
}

// vtScale is the virtual time one wire byte of a fragment costs a stream of
// weight 1: a stream of weight w pays vtScale/w (rounded down) a byte,
// within one part in 65,536 of its share at the largest weight.
const vtScale = 1 << 32

// vtBefore reports whether virtual time a is before b. Tags of one level
// stay within a fragment's cost (below 2^48: a datagram's bytes times
// vtScale) of its virtual time, so their difference tells their order even
// once the counters wrapped.
func vtBefore(a, b uint64) bool { return int64(a-b) < 0 }

// schedEntry is a stream's place in the scheduler.
type schedEntry struct {
	s        *stream // nil: stream 0
	priority int
	weight   int
	start    uint64 // virtual start tag of the next fragment, while ready
	finish   uint64 // virtual end of the last fragment served
	gen      uint64 // the generation of the level finish was served in
	order    uint64 // when it became ready: breaks ties first come first
	pos      int    // index in its level's heap + 1; 0: not ready
	level    *schedLevel
}

// ready reports whether e is in the scheduler.
func (e *schedEntry) ready() bool { return e.pos != 0 }

// schedLevel is one priority's ready streams, a min-heap by start tag.
type schedLevel struct {
	priority int
	gen      uint64 // tells this level from an earlier one of the same priority
	vtime    uint64
	heap     []*schedEntry
}

// scheduler holds the streams with new fragments to send, stream 0 among
// them, by priority.
type scheduler struct {
	levels []*schedLevel // the priorities with a ready stream, lowest first
	spare  *schedLevel   // a level emptied, kept for the next
	gens   uint64
	order  uint64
	n      int // ready streams

	// passed holds the streams passed over while one packet is filled
	// (their next fragment waits for flow-control credit): put back once
	// the packet is done, so that the filling goes on with the others.
	passed []*schedEntry
}

// len returns how many streams are ready.
func (q *scheduler) len() int { return q.n }

// push makes e ready: it starts at the later of its level's virtual time
// and the end of its last fragment (if served at this level's generation).
func (q *scheduler) push(e *schedEntry) {
	if e.ready() {
		return
	}
	i, found := slices.BinarySearchFunc(q.levels, e.priority, func(l *schedLevel, p int) int { return cmp.Compare(l.priority, p) })
	if !found {
		l := q.spare
		q.spare = nil
		if l == nil {
			l = new(schedLevel)
		}
		q.gens++
		l.priority, l.gen, l.vtime = e.priority, q.gens, 0
		q.levels = slices.Insert(q.levels, i, l)
	}
	l := q.levels[i]
	e.start = l.vtime
	if e.gen == l.gen && vtBefore(l.vtime, e.finish) {
		e.start = e.finish
	}
	q.order++
	e.order, e.level = q.order, l
	l.heap = append(l.heap, e)
	e.pos = len(l.heap)
	l.up(e.pos - 1)
	q.n++
}

// remove takes e out of the scheduler, if it is in.
func (q *scheduler) remove(e *schedEntry) {
	if !e.ready() {
		return
	}
	l := e.level
	i, last := e.pos-1, len(l.heap)-1
	if i != last {
		l.swap(i, last)
	}
	l.heap[last] = nil
	l.heap = l.heap[:last]
	if i != last {
		l.down(i)
		l.up(i)
	}
	e.pos, e.level = 0, nil
	q.n--
	if len(l.heap) == 0 {
		q.levels = slices.DeleteFunc(q.levels, func(x *schedLevel) bool { return x == l })
		if q.spare == nil {
			q.spare = l
		}
	}
}

// peek returns the stream to serve next: the smallest start tag of the
// lowest priority; nil if none is ready.
func (q *scheduler) peek() *schedEntry {
	if len(q.levels) == 0 {
		return nil
	}
	return q.levels[0].heap[0]
}

// served accounts for a fragment of cost wire bytes e sent (e is the one
// peek returned): the level's virtual time moves to e's tag, and e's next
// fragment starts where this one ends. more: e has another fragment to
// send; otherwise it leaves the scheduler.
func (q *scheduler) served(e *schedEntry, cost int, more bool) {
	l := e.level
	l.vtime = e.start
	e.finish = e.start + uint64(max(cost, 1))*(vtScale/uint64(e.weight))
	e.gen = l.gen
	if !more {
		q.remove(e)
		return
	}
	e.start = e.finish
	l.down(e.pos - 1)
}

// pass takes e (the one peek returned) out while the packet is filled:
// its next fragment may not go now. unpass puts it back.
func (q *scheduler) pass(e *schedEntry) {
	// It starts again no earlier than it would have now: passing over
	// earns no credit (push lifts it to the level's virtual time).
	e.finish, e.gen = e.start, e.level.gen
	q.remove(e)
	q.passed = append(q.passed, e)
}

// unpass puts back the streams passed over.
func (q *scheduler) unpass() {
	for i, e := range q.passed {
		q.push(e)
		q.passed[i] = nil
	}
	q.passed = q.passed[:0]
}

// reset empties the scheduler.
func (q *scheduler) reset() {
	for len(q.levels) > 0 {
		q.remove(q.levels[0].heap[0])
	}
}

// setPriority changes e's priority and weight (weight 1 to
// MaxStreamWeight); a ready stream moves at once.
func (q *scheduler) setPriority(e *schedEntry, priority, weight int) {
	if e.priority == priority && e.weight == weight {
		return
	}
	ready := e.ready()
	q.remove(e)
	if e.priority != priority {
		e.gen = 0 // (a tag of another level means nothing here)
	}
	e.priority, e.weight = priority, weight
	if ready {
		q.push(e)
	}
}

// less orders the heap: start tag, then first come first served.
func (l *schedLevel) less(i, j int) bool {
	a, b := l.heap[i], l.heap[j]
	if a.start != b.start {
		return vtBefore(a.start, b.start)
	}
	return a.order < b.order
}

func (l *schedLevel) swap(i, j int) {
	l.heap[i], l.heap[j] = l.heap[j], l.heap[i]
	l.heap[i].pos, l.heap[j].pos = i+1, j+1
}

func (l *schedLevel) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !l.less(i, p) {
			return
		}
		l.swap(i, p)
		i = p
	}
}

func (l *schedLevel) down(i int) {
	for {
		m, a, b := i, 2*i+1, 2*i+2
		if a < len(l.heap) && l.less(a, m) {
			m = a
		}
		if b < len(l.heap) && l.less(b, m) {
			m = b
		}
		if m == i {
			return
		}
		l.swap(i, m)
		i = m
	}
}
