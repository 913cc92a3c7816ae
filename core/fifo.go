package core

// fifo is a first-in, first-out queue over a slice: the send queues of
// fragments and the ring of streams with something to send. What is taken
// from the front is cleared (the garbage collector may free it), and the
// slice is compacted once more than half of it, and more than 64 slots, is
// taken: its memory follows what waits, without an allocation per item.
type fifo[T any] struct {
	items []T
	head  int
}

func (q *fifo[T]) len() int     { return len(q.items) - q.head }
func (q *fifo[T]) peek() T      { return q.items[q.head] }
func (q *fifo[T]) push(v T)     { q.items = append(q.items, v) }
func (q *fifo[T]) waiting() []T { return q.items[q.head:] }

// reset empties q, keeping its slice.
func (q *fifo[T]) reset() { clear(q.items); q.items, q.head = q.items[:0], 0 }

// pushFront puts v before everything waiting.
func (q *fifo[T]) pushFront(v T) {
	if q.head > 0 {
		q.head--
		q.items[q.head] = v
		return
	}
	var zero T
	q.items = append(q.items, zero)
	copy(q.items[1:], q.items)
	q.items[0] = v
}

// pop takes the front of q, which must not be empty.
func (q *fifo[T]) pop() T {
	v := q.items[q.head]
	var zero T
	q.items[q.head] = zero
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 64 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return v
}
