// Package sim is a deterministic discrete-event network simulator for sans-I/O protocol engines.
//
// A Network holds Nodes joined in point-to-point pairs by two one-way Links, each of which can
// delay, lose, duplicate, reorder, corrupt and truncate datagrams and model a bandwidth
// bottleneck with a finite drop-tail queue. Time is virtual, starting at Epoch; it advances only
// in Step, straight to the next datagram delivery or node timer. Nothing reads the real clock,
// sleeps or starts a goroutine, and all randomness comes from math/rand/v2 PCG generators seeded
// from the Network's seed: the same seed and the same node behaviour give the same run, event for
// event, so a failing seed printed by a test reruns the failure.
//
// Nothing in this package is safe for concurrent use: a Network, its Links and its Nodes are
// driven from one goroutine.
package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Epoch is the virtual time at which every Network starts: 2000-01-01 00:00:00 UTC.
var Epoch = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)

// MaxDatagramSize is the size of the buffer handed to PollTransmit.
const MaxDatagramSize = 65535

// Defaults for the Network's run bounds, set by New.
const (
	// DefaultMaxSteps is the initial Network.MaxSteps.
	DefaultMaxSteps = 1 << 22
	// DefaultMaxStepsPerInstant is the initial Network.MaxStepsPerInstant.
	DefaultMaxStepsPerInstant = 10000
	// maxPollsPerCall bounds one node's PollTransmit loop; a node that never returns 0 is a
	// livelock, not an infinite loop.
	maxPollsPerCall = 1 << 16
)

// Node is a sans-I/O protocol endpoint driven by the Network. Every call passes the virtual time.
// The Network calls a Node only from Step and the run methods, on the caller's goroutine; the
// Node need not be safe for concurrent use, and nothing in this package is.
type Node interface {
	// HandleDatagram feeds a received datagram. The node must copy what it keeps: the Network
	// reuses b after the call.
	HandleDatagram(now time.Time, b []byte)
	// PollTransmit writes the next datagram to send into buf and returns its length; 0 means
	// nothing to send now.
	PollTransmit(now time.Time, buf []byte) int
	// NextTimeout returns when the node next wants HandleTimeout; the zero time means no timer.
	// A time before the current virtual time is treated as now.
	NextTimeout() time.Time
	// HandleTimeout fires whatever timers are due at now.
	HandleTimeout(now time.Time)
}

// Network is a set of Nodes, the Links between them, a virtual clock and an event queue.
// Create one with New. It is not safe for concurrent use.
type Network struct {
	// MaxSteps bounds the steps one RunUntil or RunFor call may take.
	MaxSteps int
	// MaxStepsPerInstant bounds consecutive steps at one virtual instant before the Network
	// reports ErrLivelock.
	MaxStepsPerInstant int
	// OnDeliver, when set, is called just before each datagram copy is handed to its receiving
	// node: a hook for traces. It must not retain or modify b.
	OnDeliver func(now time.Time, from, to int, b []byte)

	seed  uint64
	now   int64 // virtual nanoseconds since Epoch
	nodes []Node
	out   []*Link // out[i]: the link node i sends on, or nil
	links []*Link

	events  eventHeap
	seq     uint64   // insertion counter: breaks ties between events due at the same instant
	free    [][]byte // datagram buffers ready for reuse
	scratch []byte   // PollTransmit target

	sameInstant  int // consecutive steps that did not advance the clock
	pastTimeouts uint64
	unrouted     uint64
	err          *RunError
}

// New returns an empty Network at Epoch whose links draw randomness from seed.
func New(seed uint64) *Network {
	return &Network{
		MaxSteps:           DefaultMaxSteps,
		MaxStepsPerInstant: DefaultMaxStepsPerInstant,
		seed:               seed,
		scratch:            make([]byte, MaxDatagramSize),
	}
}

// Seed returns the seed the Network was created with.
func (n *Network) Seed() uint64 { return n.seed }

// Now returns the virtual time.
func (n *Network) Now() time.Time { return Epoch.Add(time.Duration(n.now)) }

// Elapsed returns the virtual time since Epoch.
func (n *Network) Elapsed() time.Duration { return time.Duration(n.now) }

// Err returns the error that stopped the Network (a *RunError wrapping ErrLivelock or
// ErrBadLength), or nil. Once set, Step does nothing and returns false.
func (n *Network) Err() error {
	if n.err == nil {
		return nil
	}
	return n.err
}

// PastTimeouts counts the times a node's NextTimeout was before the virtual time; each was
// treated as now.
func (n *Network) PastTimeouts() uint64 { return n.pastTimeouts }

// Unrouted counts datagrams polled from nodes that are not connected to a peer; they are dropped.
func (n *Network) Unrouted() uint64 { return n.unrouted }

// AddNode adds node to the Network and returns its index, used by Connect and Link.
func (n *Network) AddNode(node Node) int {
	n.nodes = append(n.nodes, node)
	n.out = append(n.out, nil)
	return len(n.nodes) - 1
}

// Node returns the node with index i.
func (n *Network) Node(i int) Node { return n.nodes[i] }

// Connect joins nodes a and b with two one-way links, a->b and b->a, both configured as cfg.
// Each node may be connected to one peer only.
func (n *Network) Connect(a, b int, cfg LinkConfig) error {
	return n.ConnectAsym(a, b, cfg, cfg)
}

// ConnectAsym joins nodes a and b with a link a->b configured as ab and a link b->a configured
// as ba. Each node may be connected to one peer only.
func (n *Network) ConnectAsym(a, b int, ab, ba LinkConfig) error {
	for _, i := range []int{a, b} {
		if i < 0 || i >= len(n.nodes) {
			return fmt.Errorf("sim: Connect: no node %d (have %d)", i, len(n.nodes))
		}
		if n.out[i] != nil {
			return fmt.Errorf("sim: Connect: node %d is already connected to node %d", i, n.out[i].to)
		}
	}
	if a == b {
		return fmt.Errorf("sim: Connect: node %d to itself", a)
	}
	if err := ab.Validate(); err != nil {
		return err
	}
	if err := ba.Validate(); err != nil {
		return err
	}
	n.out[a] = n.newLink(a, b, ab)
	n.out[b] = n.newLink(b, a, ba)
	return nil
}

func (n *Network) newLink(from, to int, cfg LinkConfig) *Link {
	idx := len(n.links)
	l := &Link{
		from:  from,
		to:    to,
		index: idx,
		cfg:   cfg,
		// One stream per link, so a link's draws do not depend on traffic on other links.
		rng: rand.New(rand.NewPCG(n.seed, 0x9e3779b97f4a7c15*uint64(idx+1))),
	}
	n.links = append(n.links, l)
	return l
}

// Link returns the one-way link from node from to node to, or nil if there is none.
func (n *Network) Link(from, to int) *Link {
	if from < 0 || from >= len(n.out) {
		return nil
	}
	if l := n.out[from]; l != nil && l.to == to {
		return l
	}
	return nil
}

// Step polls every node for datagrams to send (so actions a test took since the last step are
// picked up), advances the clock to the next event (the earliest datagram delivery or node
// timer) and processes what is due at that instant: deliveries in the order they were scheduled,
// then the due timers in node order. After each delivery or timer the node is polled until
// PollTransmit returns 0. Datagrams sent during the step that are due at the same instant (zero
// latency) wait for the next step.
//
// Step returns false when nothing is left to happen or when the Network has stopped on an error
// (see Err).
func (n *Network) Step() bool {
	if n.err != nil {
		return false
	}
	n.pollAll()
	at, ok := n.next()
	if !ok || n.err != nil {
		return false
	}
	n.advance(at)
	return n.err == nil
}

// RunFor steps through the next d of virtual time, processing every event due up to now+d, and
// leaves the clock at now+d. It returns a *RunError on livelock or after MaxSteps steps; only
// the livelock stops the Network (see Err), the step limit leaves it usable.
func (n *Network) RunFor(d time.Duration) error {
	deadline := n.deadline(d)
	for steps := 0; ; steps++ {
		if n.err != nil {
			return n.err
		}
		if steps >= n.MaxSteps {
			return n.runError(fmt.Errorf("%w: %d steps in RunFor(%v)", ErrStepLimit, steps, d))
		}
		n.pollAll()
		at, ok := n.next()
		if n.err != nil {
			return n.err
		}
		if !ok || at > deadline {
			n.skipTo(deadline)
			return nil
		}
		n.advance(at)
	}
}

// RunUntil steps until cond returns true (checked before each step), and returns nil then. It
// returns a *RunError wrapping ErrTimeLimit when cond is still false after limit of virtual time
// (the clock is left at the limit), ErrIdle when nothing is left to happen, ErrStepLimit after
// MaxSteps steps, or ErrLivelock. Only ErrLivelock and ErrBadLength stop the Network.
func (n *Network) RunUntil(cond func() bool, limit time.Duration) error {
	deadline := n.deadline(limit)
	for steps := 0; ; steps++ {
		if n.err != nil {
			return n.err
		}
		if cond() {
			return nil
		}
		if steps >= n.MaxSteps {
			return n.runError(fmt.Errorf("%w: %d steps in RunUntil", ErrStepLimit, steps))
		}
		n.pollAll()
		at, ok := n.next()
		switch {
		case n.err != nil:
			return n.err
		case !ok:
			return n.runError(ErrIdle)
		case at > deadline:
			n.skipTo(deadline)
			return n.runError(fmt.Errorf("%w (%v)", ErrTimeLimit, limit))
		}
		n.advance(at)
	}
}

// deadline returns now+d, saturating instead of overflowing.
func (n *Network) deadline(d time.Duration) int64 {
	if d > 0 && n.now > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return n.now + int64(max(d, 0))
}

// skipTo moves the clock forward to t when nothing happens before it.
func (n *Network) skipTo(t int64) {
	if t > n.now {
		n.now, n.sameInstant = t, 0
	}
}

// runError wraps err with the seed and time, without stopping the Network.
func (n *Network) runError(err error) error {
	return &RunError{Seed: n.seed, Elapsed: time.Duration(n.now), Err: err}
}

// fail stops the Network on err.
func (n *Network) fail(err error) error {
	if n.err == nil {
		n.err = &RunError{Seed: n.seed, Elapsed: time.Duration(n.now), Err: err}
	}
	return n.err
}

// next returns the time of the earliest event, never before now, or false if there is none.
func (n *Network) next() (int64, bool) {
	at, ok := int64(0), false
	if len(n.events) > 0 {
		at, ok = n.events[0].at, true
	}
	for _, node := range n.nodes {
		if t, armed := n.timeout(node); armed && (!ok || t < at) {
			at, ok = t, true
		}
	}
	return max(at, n.now), ok
}

// timeout returns node's next timeout in virtual nanoseconds, clamped to now.
func (n *Network) timeout(node Node) (int64, bool) {
	t := node.NextTimeout()
	if t.IsZero() {
		return 0, false
	}
	return max(int64(t.Sub(Epoch)), n.now), true
}

// advance moves the clock to at and processes what is due then.
func (n *Network) advance(at int64) {
	if at == n.now {
		n.sameInstant++
		if n.sameInstant > n.MaxStepsPerInstant {
			n.fail(fmt.Errorf("%w: more than %d steps at one instant", ErrLivelock, n.MaxStepsPerInstant))
			return
		}
	} else {
		n.sameInstant = 0
		n.now = at
	}
	now := n.Now()

	// Only events scheduled before this step: zero-latency replies wait for the next one, so a
	// ping-pong at one instant is caught by MaxStepsPerInstant instead of looping here.
	lastSeq := n.seq
	for len(n.events) > 0 && n.events[0].at <= at && n.events[0].seq < lastSeq && n.err == nil {
		ev := n.events.pop()
		l := n.links[ev.link]
		l.stats.Delivered++
		l.stats.BytesDelivered += uint64(len(ev.buf))
		if n.OnDeliver != nil {
			n.OnDeliver(now, l.from, l.to, ev.buf)
		}
		n.nodes[l.to].HandleDatagram(now, ev.buf)
		n.release(ev.buf)
		n.poll(l.to, now)
	}

	for i, node := range n.nodes {
		if n.err != nil {
			return
		}
		t := node.NextTimeout()
		if t.IsZero() || t.After(now) {
			continue
		}
		if t.Before(now) {
			n.pastTimeouts++
		}
		node.HandleTimeout(now)
		n.poll(i, now)
	}
}

// pollAll polls every node, in index order.
func (n *Network) pollAll() {
	now := n.Now()
	for i := range n.nodes {
		if n.err != nil {
			return
		}
		n.poll(i, now)
	}
}

// poll drains node i's PollTransmit onto its outgoing link.
func (n *Network) poll(i int, now time.Time) {
	node := n.nodes[i]
	for range maxPollsPerCall {
		size := node.PollTransmit(now, n.scratch)
		if size == 0 {
			return
		}
		if size < 0 || size > len(n.scratch) {
			n.fail(fmt.Errorf("%w: node %d returned %d for a %d-byte buffer", ErrBadLength, i, size, len(n.scratch)))
			return
		}
		n.transmit(i, n.scratch[:size])
	}
	n.fail(fmt.Errorf("%w: node %d PollTransmit returned a datagram %d times in a row", ErrLivelock, i, maxPollsPerCall))
}

// transmit sends b (which the caller keeps) from node i through its link's impairments and
// schedules the surviving copies.
func (n *Network) transmit(i int, b []byte) {
	l := n.out[i]
	if l == nil {
		n.unrouted++
		return
	}
	c := &l.cfg
	l.stats.Sent++
	if c.MTU > 0 && len(b) > c.MTU {
		l.stats.DroppedMTU++
		return
	}
	if c.Filter != nil && !c.Filter(n.Now(), b) {
		l.stats.Filtered++
		return
	}
	depart := n.now
	if c.Bandwidth > 0 {
		var ok bool
		if depart, ok = l.enqueue(n.now, len(b)); !ok {
			l.stats.DroppedQueue++
			return
		}
	}
	if l.chance(c.Loss) {
		l.stats.Lost++
		return
	}
	copies := 1
	if l.chance(c.Duplicate) {
		l.stats.Duplicated++
		copies = 2
	}
	for range copies {
		buf := n.alloc(len(b))
		copy(buf, b)
		delay := int64(c.Latency)
		if c.Jitter > 0 {
			delay += l.rng.Int64N(int64(c.Jitter) + 1)
		}
		if l.chance(c.Reorder) {
			l.stats.Reordered++
			delay += int64(c.ReorderDelay)
		}
		if len(buf) > 0 && l.chance(c.Corrupt) {
			l.stats.Corrupted++
			l.corrupt(buf)
		}
		if len(buf) > 0 && l.chance(c.Truncate) {
			l.stats.Truncated++
			buf = buf[:l.rng.IntN(len(buf))]
		}
		n.events.push(event{at: depart + delay, seq: n.seq, link: l.index, buf: buf})
		n.seq++
	}
}

// alloc returns a buffer of length size, reusing a released one when it is big enough.
func (n *Network) alloc(size int) []byte {
	if k := len(n.free); k > 0 {
		b := n.free[k-1]
		n.free = n.free[:k-1]
		if cap(b) >= size {
			return b[:size]
		}
		// Too small: let it go, so the free list converges on buffers that fit.
	}
	return make([]byte, size, max(size, 2048))
}

// release returns b to the free list.
func (n *Network) release(b []byte) {
	n.free = append(n.free, b[:0])
}

// event is a datagram copy due for delivery on link at at.
type event struct {
	at   int64
	seq  uint64
	link int
	buf  []byte
}

// eventHeap is a min-heap by (at, seq); typed rather than container/heap to avoid boxing each
// event in an interface.
type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	return h[i].at < h[j].at || (h[i].at == h[j].at && h[i].seq < h[j].seq)
}

func (h *eventHeap) push(ev event) {
	*h = append(*h, ev)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s.less(i, parent) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *eventHeap) pop() event {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = event{}
	s = s[:last]
	for i := 0; ; {
		child := 2*i + 1
		if child >= len(s) {
			break
		}
		if child+1 < len(s) && s.less(child+1, child) {
			child++
		}
		if !s.less(child, i) {
			break
		}
		s[i], s[child] = s[child], s[i]
		i = child
	}
	*h = s
	return top
}
