package impair

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts what an impaired direction did with the datagrams written to it.
// All counts are cumulative since the direction was created.
type Stats struct {
	// Sent counts datagrams handed to the socket without error, duplicates
	// included; SentBytes counts their bytes.
	Sent, SentBytes uint64
	// DroppedLoss counts datagrams dropped by Config.Loss.
	DroppedLoss uint64
	// DroppedQueue counts datagrams dropped because the rate limiter's queue
	// (Config.QueueBytes) was full.
	DroppedQueue uint64
	// DroppedClose counts datagrams still waiting for their due time at Close.
	DroppedClose uint64
	// DroppedTooBig counts datagrams longer than Config.MaxDatagramSize.
	DroppedTooBig uint64
	// Duplicated, Reordered and Corrupted count datagrams that were
	// duplicated, held back by ReorderDelay, and had a bit flipped.
	Duplicated, Reordered, Corrupted uint64
	// WriteErrors counts delayed datagrams the socket refused when they fell
	// due (errors of direct writes are returned to the caller instead).
	WriteErrors uint64
}

// counters is the live form of Stats, updated atomically so that Stats can be
// read while datagrams flow.
type counters struct {
	sent, sentBytes                  atomic.Uint64
	droppedLoss, droppedQueue        atomic.Uint64
	droppedClose, droppedTooBig      atomic.Uint64
	duplicated, reordered, corrupted atomic.Uint64
	writeErrors                      atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Sent:          c.sent.Load(),
		SentBytes:     c.sentBytes.Load(),
		DroppedLoss:   c.droppedLoss.Load(),
		DroppedQueue:  c.droppedQueue.Load(),
		DroppedClose:  c.droppedClose.Load(),
		DroppedTooBig: c.droppedTooBig.Load(),
		Duplicated:    c.duplicated.Load(),
		Reordered:     c.reordered.Load(),
		Corrupted:     c.corrupted.Load(),
		WriteErrors:   c.writeErrors.Load(),
	}
}

// A sink is where a direction finally writes a datagram: a wrapped socket, a
// proxy's upstream socket or its listening socket. Implementations are
// pointers, so storing one in an interface does not allocate.
type sink interface {
	send(p []byte, to net.Addr) error
}

// pending is a datagram waiting in the scheduler for its due time.
type pending struct {
	due time.Duration // since link.epoch
	seq uint64        // submission order, to keep FIFO among equal due times
	buf []byte        // owned copy, returned to the free list after sending
	dst sink
	to  net.Addr
}

// Buffer recycling bounds: buffers are at least minBufCap so one fits any
// typical datagram, and at most maxFreeBufs wait in the free list.
const (
	minBufCap   = 2048
	maxFreeBufs = 4096
)

// link is one impaired direction: it decides each datagram's fate at submit
// time and, unless the datagram can go out at once, keeps it in a min-heap
// until a single scheduler goroutine writes it at its due time.
type link struct {
	cfg         Config
	passthrough bool // cfg impairs nothing: write on the caller's goroutine
	epoch       time.Time
	stats       counters

	mu        sync.Mutex
	rng       *rand.Rand
	queue     []pending // min-heap by (due, seq)
	seq       uint64
	busyUntil time.Duration // when the bottleneck has sent everything accepted so far
	flushing  bool          // the scheduler is writing datagrams it popped
	closed    bool
	free      [][]byte

	wake chan struct{} // 1-buffered: the heap's head moved earlier
	done chan struct{}
	wg   sync.WaitGroup
}

// newLink starts the scheduler goroutine unless cfg impairs nothing. cfg must
// be valid.
func newLink(cfg Config) *link {
	l := &link{
		cfg:         cfg.withDefaults(),
		passthrough: cfg.transparent(),
		epoch:       time.Now(),
		// Two words of PCG state from one seed; the constant only makes the
		// second word differ from the first.
		rng:  rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	if !l.passthrough {
		l.wg.Add(1)
		go l.run()
	}
	return l
}

func (l *link) now() time.Duration { return time.Since(l.epoch) }

// fate is every random decision about one datagram. All of them are drawn,
// in a fixed order, for every datagram (whenever the field's probability is
// not zero), so the decisions depend only on the sequence of datagrams, not
// on timing-dependent queue drops.
type fate struct {
	lost, duplicated, reordered, corrupted bool
	corruptBit                             uint64
	jitter, dupJitter                      time.Duration
}

func (l *link) drawFate() fate {
	c := &l.cfg
	var f fate
	if c.Loss > 0 {
		f.lost = l.rng.Float64() < c.Loss
	}
	if c.Duplicate > 0 {
		f.duplicated = l.rng.Float64() < c.Duplicate
	}
	if c.Corrupt > 0 {
		f.corrupted = l.rng.Float64() < c.Corrupt
		f.corruptBit = l.rng.Uint64()
	}
	if c.Reorder > 0 {
		f.reordered = l.rng.Float64() < c.Reorder
	}
	if c.Jitter > 0 {
		f.jitter = time.Duration(l.rng.Uint64N(uint64(c.Jitter) + 1))
		if c.Duplicate > 0 {
			f.dupJitter = time.Duration(l.rng.Uint64N(uint64(c.Jitter) + 1))
		}
	}
	return f
}

// submit impairs one datagram bound for dst. It never keeps p. Like UDP, a
// datagram dropped on purpose is reported as written. Direct writes return
// the socket's error; after close it returns net.ErrClosed.
func (l *link) submit(p []byte, dst sink, to net.Addr) (int, error) {
	if l.passthrough {
		if err := dst.send(p, to); err != nil {
			return 0, err
		}
		l.stats.sent.Add(1)
		l.stats.sentBytes.Add(uint64(len(p)))
		return len(p), nil
	}

	now := l.now()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, net.ErrClosed
	}
	if m := l.cfg.MaxDatagramSize; m > 0 && len(p) > m {
		// Dropped before any random decision is drawn, so that a
		// path MTU search changes none of the other datagrams' fates.
		l.mu.Unlock()
		l.stats.droppedTooBig.Add(1)
		return len(p), nil
	}
	f := l.drawFate()
	if f.lost {
		l.mu.Unlock()
		l.stats.droppedLoss.Add(1)
		return len(p), nil
	}

	c := &l.cfg
	due := now
	if c.Rate > 0 {
		start := max(now, l.busyUntil)
		if backlog := bytesAt(start-now, c.Rate); backlog > 0 && backlog+int64(len(p)) > int64(c.QueueBytes) {
			l.mu.Unlock()
			l.stats.droppedQueue.Add(1)
			return len(p), nil
		}
		l.busyUntil = start + serialization(len(p), c.Rate)
		due = l.busyUntil
	}
	due += c.Delay
	if f.reordered {
		due += c.ReorderDelay
		l.stats.reordered.Add(1)
	}
	corruptBit := -1
	if f.corrupted && len(p) > 0 {
		corruptBit = int(f.corruptBit % uint64(len(p)*8))
		l.stats.corrupted.Add(1)
	}
	copies := 1
	if f.duplicated {
		copies = 2
		l.stats.duplicated.Add(1)
	}

	// A datagram already due goes out on the caller's goroutine when nothing
	// is queued or being written ahead of it, which keeps FIFO and saves the
	// handoff. direct[i] == nil means "write p itself".
	var direct [2][]byte
	ndirect := 0
	for i := range copies {
		d := due + f.jitter
		if i == 1 {
			d = due + f.dupJitter
		}
		if d <= now && len(l.queue) == 0 && !l.flushing {
			if corruptBit >= 0 {
				direct[ndirect] = l.copyBuf(p, corruptBit)
			}
			ndirect++
			continue
		}
		l.seq++
		l.push(pending{due: d, seq: l.seq, buf: l.copyBuf(p, corruptBit), dst: dst, to: to})
		if l.queue[0].seq == l.seq {
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
	}
	l.mu.Unlock()

	var err error
	for i := range ndirect {
		b := direct[i]
		if b == nil {
			b = p
		}
		if werr := dst.send(b, to); werr != nil {
			err = werr
		} else {
			l.stats.sent.Add(1)
			l.stats.sentBytes.Add(uint64(len(b)))
		}
	}
	if corruptBit >= 0 && ndirect > 0 {
		l.mu.Lock()
		for i := range ndirect {
			l.putBuf(direct[i])
		}
		l.mu.Unlock()
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// bytesAt is how many bytes a bottleneck of rate bytes/s sends in d.
func bytesAt(d time.Duration, rate int64) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(d) * float64(rate) / float64(time.Second))
}

// serialization is how long n bytes occupy a bottleneck of rate bytes/s.
func serialization(n int, rate int64) time.Duration {
	return time.Duration(int64(n) * int64(time.Second) / rate)
}

// copyBuf copies p into a recycled buffer, flipping bit flip if it is >= 0.
// l.mu must be held.
func (l *link) copyBuf(p []byte, flip int) []byte {
	var b []byte
	if n := len(l.free); n > 0 {
		b = l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
	}
	if cap(b) < len(p) {
		b = make([]byte, 0, max(len(p), minBufCap))
	}
	b = append(b[:0], p...)
	if flip >= 0 {
		b[flip/8] ^= 1 << (flip % 8)
	}
	return b
}

// putBuf returns b to the free list. l.mu must be held.
func (l *link) putBuf(b []byte) {
	if len(l.free) < maxFreeBufs {
		l.free = append(l.free, b[:0])
	}
}

// run is the scheduler: it writes due datagrams outside the lock, then sleeps
// on one timer until the heap's head is due, a new head arrives or the link
// is stopped.
func (l *link) run() {
	defer l.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var batch []pending
	for {
		l.mu.Lock()
		for i := range batch {
			l.putBuf(batch[i].buf)
			batch[i] = pending{}
		}
		batch = batch[:0]
		if l.closed {
			l.flushing = false
			l.mu.Unlock()
			return
		}
		now := l.now()
		for len(l.queue) > 0 && l.queue[0].due <= now {
			batch = append(batch, l.pop())
		}
		wait := time.Duration(-1)
		if len(l.queue) > 0 {
			wait = l.queue[0].due - now
		}
		l.flushing = len(batch) > 0
		l.mu.Unlock()

		if len(batch) > 0 {
			for i := range batch {
				if err := batch[i].dst.send(batch[i].buf, batch[i].to); err != nil {
					l.stats.writeErrors.Add(1)
					continue
				}
				l.stats.sent.Add(1)
				l.stats.sentBytes.Add(uint64(len(batch[i].buf)))
			}
			continue // time passed while writing: look again before sleeping
		}

		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-l.wake:
		case <-timer.C:
		case <-l.done:
			return
		}
		timer.Stop()
	}
}

// closeQueue refuses further datagrams and drops the pending ones. The
// scheduler may still be writing a batch it already popped.
func (l *link) closeQueue() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	l.stats.droppedClose.Add(uint64(len(l.queue)))
	clear(l.queue)
	l.queue = l.queue[:0]
}

// stop closes the queue if needed and waits for the scheduler goroutine to
// exit. It must be called once.
func (l *link) stop() {
	l.closeQueue()
	close(l.done)
	l.wg.Wait()
}

// push and pop keep l.queue a binary min-heap ordered by (due, seq). They are
// written out rather than using container/heap to avoid boxing each pending
// value in an interface.
func (l *link) push(x pending) {
	q := append(l.queue, x)
	i := len(q) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !q[i].before(&q[parent]) {
			break
		}
		q[i], q[parent] = q[parent], q[i]
		i = parent
	}
	l.queue = q
}

func (l *link) pop() pending {
	q := l.queue
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q[last] = pending{}
	q = q[:last]
	i := 0
	for {
		smallest, left, right := i, 2*i+1, 2*i+2
		if left < len(q) && q[left].before(&q[smallest]) {
			smallest = left
		}
		if right < len(q) && q[right].before(&q[smallest]) {
			smallest = right
		}
		if smallest == i {
			break
		}
		q[i], q[smallest] = q[smallest], q[i]
		i = smallest
	}
	l.queue = q
	return top
}

func (p *pending) before(o *pending) bool {
	if p.due != o.due {
		return p.due < o.due
	}
	return p.seq < o.seq
}
