package rudp

import "time"

// timerQueue runs the timers of every connection on one socket with one
// time.Timer (as kcp-go's shared scheduler, not a timer per connection):
// the connections wait in a min-heap by when each is next due, and the
// time.Timer is armed for the earliest of them. When it fires, the mux
// pops the connections due (popDue) and runs their timeouts.
//
// Arming is lazy in one direction: a connection whose timer moves later
// (a retransmission timer pushed back by every packet sent) leaves the
// time.Timer armed where it was; that firing finds nothing due and
// re-arms. So a busy connection costs one early firing, not a timer reset
// per packet. A timer that moves earlier re-arms at once.
//
// In Manual mode (manual) the time.Timer is never armed: pump pops what is
// due whenever the application calls it.
//
// A timerQueue is guarded by its mux's mu; fire runs without it.
type timerQueue struct {
	heap    []*Conn // a min-heap by Conn.timer.at
	manual  bool    // never arm the time.Timer
	stopped bool    // the socket closed: never arm again
	fire    func()  // what the time.Timer runs (it calls fired first, under the lock)
	timer   *time.Timer
	armedAt time.Time // when the time.Timer fires; zero: not armed
}

// timerSlot is a connection's place in its socket's timerQueue.
type timerSlot struct {
	at  time.Time // when the connection is due, while queued
	pos int       // 1 + its index in the heap; 0: not queued
}

// schedule sets when c is next due; zero takes it off the queue.
func (q *timerQueue) schedule(c *Conn, at time.Time) {
	s := &c.timer
	switch {
	case at.IsZero():
		q.remove(c)
		return
	case s.pos == 0:
		s.at = at
		s.pos = len(q.heap) + 1
		q.heap = append(q.heap, c)
		q.up(s.pos - 1)
	case s.at.Equal(at):
		return
	default:
		later := at.After(s.at)
		s.at = at
		if later {
			q.down(s.pos - 1)
		} else {
			q.up(s.pos - 1)
		}
	}
	q.arm()
}

// remove takes c off the queue, if it is on it.
func (q *timerQueue) remove(c *Conn) {
	i := c.timer.pos - 1
	if i < 0 {
		return
	}
	last := len(q.heap) - 1
	if i != last {
		q.swap(i, last)
	}
	q.heap[last] = nil
	q.heap = q.heap[:last]
	c.timer.pos = 0
	if i != last {
		q.down(i)
		q.up(i)
	}
	// The time.Timer stays armed: a firing that finds nothing due re-arms.
}

// popDue takes every connection due at now off the queue, appends it to
// due and re-arms the time.Timer for the rest.
func (q *timerQueue) popDue(now time.Time, due []*Conn) []*Conn {
	for len(q.heap) > 0 && !q.heap[0].timer.at.After(now) {
		c := q.heap[0]
		q.remove(c)
		due = append(due, c)
	}
	q.arm()
	return due
}

// fired notes that the time.Timer ran: it is no longer armed.
func (q *timerQueue) fired() { q.armedAt = time.Time{} }

// fireNow runs fire at once, whatever is due (a failed send left ICMP
// reports to read; default mode only).
func (q *timerQueue) fireNow() {
	if q.manual || q.stopped {
		return
	}
	q.reset(monoNow())
}

// stop disarms the time.Timer for good (the socket closed).
func (q *timerQueue) stop() {
	q.stopped = true
	if q.timer != nil {
		q.timer.Stop()
	}
}

// len returns how many connections are queued.
func (q *timerQueue) len() int { return len(q.heap) }

// arm makes the time.Timer fire no later than the earliest connection is
// due (see the type's doc: it never moves it later).
func (q *timerQueue) arm() {
	if q.manual || q.stopped || len(q.heap) == 0 {
		return // (with nothing queued a stale firing finds nothing due)
	}
	next := q.heap[0].timer.at
	if !q.armedAt.IsZero() && !next.Before(q.armedAt) {
		return
	}
	q.reset(next)
}

func (q *timerQueue) reset(at time.Time) {
	q.armedAt = at
	d := time.Until(at)
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.fire)
		return
	}
	q.timer.Reset(d)
}

func (q *timerQueue) less(i, j int) bool { return q.heap[i].timer.at.Before(q.heap[j].timer.at) }

func (q *timerQueue) swap(i, j int) {
	h := q.heap
	h[i], h[j] = h[j], h[i]
	h[i].timer.pos = i + 1
	h[j].timer.pos = j + 1
}

func (q *timerQueue) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			return
		}
		q.swap(i, p)
		i = p
	}
}

func (q *timerQueue) down(i int) {
	n := len(q.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && q.less(r, l) {
			j = r
		}
		if !q.less(j, i) {
			return
		}
		q.swap(i, j)
		i = j
	}
}
