package rudp

import (
	"net"
	"sync/atomic"
	"time"
)

// Direct reads. On a socket that carries one connection (a dialed one, or
// a Listener's while it has a single connection) a Read that has to wait
// reads the socket itself instead of waiting for the socket's reader
// goroutine to hand it what arrived: the goroutine that receives the reply
// is the one that returns it, with no wakeup between two goroutines, as a
// plain UDP socket's reader does.

// readOwner says who reads a mux's socket in default mode: its reader
// goroutine, or a blocked Read of its one connection (a direct read), or
// nobody between two direct reads. One goroutine reads the socket at a
// time; only the holder arms the socket's read deadline or touches holder.
//
//	             a caller asks (want), the reader's
//	             read is interrupted: yieldIfAsked       callerTake
//	rxByReader ─────────────────────────────────> rxFree ──────────> rxByCaller
//	     ^                                         │  ^                  │
//	     │                                         │  └──────────────────┘
//	     └─────────────────────────────────────────┘    callerRelease (the
//	       readerTake: after a whole rxPoll free, or         one read returned)
//	       at once (reclaim) when the socket carries
//	       more than one connection or the caller's
//	       connection is closing
//
// A blocked Read takes a free socket for one read (callerTake) and frees it
// when that read returns; a Read in a loop so keeps the socket, and a
// connection nobody Reads is served by the reader goroutine as on any
// socket. While callers hold the socket the reader goroutine polls every
// rxPoll; once one Read has held it for a whole rxPoll (a quiet
// connection) it sleeps on wake until that Read frees it. The socket's
// close (socketClosed) ends the reader goroutine from any state.
//
// Events that a caller blocked on the socket must see (Close, the end of
// its connection, a moved read deadline) interrupt its read with a read
// deadline in the past (interruptCaller); the caller checks them again
// after arming its own deadline, so that an interruption is never lost.
type readOwner struct {
	on     bool         // direct reads are allowed (default mode, asked for by the mux's owner)
	sock   *net.UDPConn // the socket whose read deadline the holder arms
	closed *atomic.Bool // the mux's: the socket was closed

	role    atomic.Int32  // rxByReader, rxFree or rxByCaller
	conns   atomic.Int32  // the connections on the socket: callers read it only while there is one
	reads   atomic.Uint32 // how many reads callers made (so the reader sees whether they still read)
	want    atomic.Bool   // a caller asked the reader goroutine for the socket
	reclaim atomic.Bool   // the reader goroutine should take the socket back at once
	sleep   atomic.Bool   // the reader goroutine waits for wake, without polling
	wake    chan struct{} // 1-buffered: the reader goroutine should look again
	poll    *time.Timer   // the reader goroutine's rxPoll

	holder rxHolder
}

// rxHolder is the state of the goroutine that holds the socket.
type rxHolder struct {
	deadlineSet atomic.Bool // the socket's read deadline is deadline (anyone may clear it: interrupt)
	deadline    time.Time   // the read deadline last armed
	self        *Conn       // the connection whose Read is reading (a direct read); nil: the reader goroutine or pump
}

// Who reads the socket (readOwner.role).
const (
	rxByReader = iota // the reader goroutine
	rxFree            // nobody: a caller may take it
	rxByCaller        // a blocked Read
)

// rxPoll is how often the reader goroutine, while it does not hold the
// socket, looks whether callers still read it: it takes the socket back
// after a whole rxPoll in which nobody did. It bounds how long datagrams
// wait when an application stops reading.
const rxPoll = 2 * time.Millisecond

// aLongTimeAgo is a read deadline in the past: it interrupts a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

func newReadOwner(sock *net.UDPConn, on bool, closed *atomic.Bool) readOwner {
	return readOwner{on: on, sock: sock, closed: closed, wake: make(chan struct{}, 1)}
}

// The callers' side.

// callerTake gives the socket to a blocked Read for one read, if it is
// free and carries one connection; false means: wait for the reader
// goroutine as usual. If the reader goroutine holds the socket it is asked
// for it, and wakes the callers (their readWake) once it gave it up.
func (o *readOwner) callerTake() bool {
	if o.conns.Load() != 1 {
		return false
	}
	if !o.role.CompareAndSwap(rxFree, rxByCaller) {
		if o.role.Load() == rxByReader && !o.want.Load() {
			o.want.Store(true)
			o.interrupt()
		}
		return false
	}
	o.reads.Add(1)
	return true
}

// callerRelease ends a caller's read of the socket. The reader goroutine
// takes the socket back at once if c will not be read again (closed or
// ended) or the socket serves other connections too; if it stopped
// polling because a caller held the socket a long time, it starts again.
func (o *readOwner) callerRelease(c *Conn) {
	o.role.Store(rxFree)
	if o.conns.Load() != 1 || c.isClosing() {
		o.reclaim.Store(true)
		signal(o.wake)
		return
	}
	if o.sleep.Load() {
		signal(o.wake)
	}
}

// The reader goroutine's side.

// readerTake makes sure the reader goroutine holds the socket, with no read
// deadline, before it reads: if it gave it to callers it waits until it
// may take it back. false means the socket closed.
func (o *readOwner) readerTake() bool {
	if o.role.Load() != rxByReader && !o.awaitReturn() {
		return false
	}
	o.armRead(time.Time{})
	return true
}

// awaitReturn waits until the reader goroutine may take the socket back
// from the callers, and takes it; false means the socket closed.
func (o *readOwner) awaitReturn() bool {
	seen := o.reads.Load()
	for {
		if o.closed.Load() {
			return false
		}
		if (o.reclaim.Load() || o.conns.Load() != 1) && o.role.CompareAndSwap(rxFree, rxByReader) {
			o.reclaim.Store(false)
			return true
		}
		if o.poll == nil {
			o.poll = time.NewTimer(rxPoll)
		} else {
			o.poll.Reset(rxPoll)
		}
		select {
		case <-o.wake:
		case <-o.poll.C:
		}
		gen := o.reads.Load()
		switch o.role.Load() {
		case rxFree:
			if gen == seen && o.role.CompareAndSwap(rxFree, rxByReader) {
				return true // nobody read the socket for a whole rxPoll
			}
		case rxByCaller:
			if gen == seen {
				// One Read has waited on the socket for a whole rxPoll (a
				// quiet connection): stop polling until it frees the socket.
				o.sleep.Store(true)
				if o.role.Load() == rxByCaller && o.reads.Load() == gen && !o.closed.Load() {
					<-o.wake
				}
				o.sleep.Store(false)
				gen = o.reads.Load()
			}
		}
		seen = gen
	}
}

// yieldIfAsked gives the socket up if a caller asked for it (the reader
// goroutine holds it); true means it did, and the callers must be woken.
func (o *readOwner) yieldIfAsked() bool {
	if !o.want.Swap(false) {
		return false
	}
	o.role.Store(rxFree)
	return true
}

// interrupted notes that the holder's read returned an error: an
// interruption (the read deadline is no longer what it armed), the
// deadline, the socket's close or an ICMP report.
func (o *readOwner) interrupted() { o.holder.deadlineSet.Store(false) }

// stop ends the reader goroutine's use of o.
func (o *readOwner) stop() {
	if o.poll != nil {
		o.poll.Stop()
	}
}

// Anyone.

// armRead sets the socket's read deadline to at unless it is so already
// (the holder only).
func (o *readOwner) armRead(at time.Time) {
	h := &o.holder
	if h.deadlineSet.Load() && h.deadline.Equal(at) {
		return
	}
	_ = o.sock.SetReadDeadline(at)
	h.deadline = at
	h.deadlineSet.Store(true)
}

// interrupt makes the goroutine blocked reading the socket return.
func (o *readOwner) interrupt() {
	_ = o.sock.SetReadDeadline(aLongTimeAgo)
	o.holder.deadlineSet.Store(false)
}

// interruptCaller interrupts the blocked Read that is reading the socket
// itself, if any: its connection was closed or ended, or its read deadline
// moved.
func (o *readOwner) interruptCaller() {
	if o.on && o.role.Load() == rxByCaller {
		o.interrupt()
	}
}

// socketClosed wakes the reader goroutine if it waits for callers to free
// the socket (the mux closed it).
func (o *readOwner) socketClosed() { signal(o.wake) }

// readDirect reads the socket on behalf of c's blocked Read if the socket
// may be read by it now, and reports whether it did (or found a reason for
// the caller to look again). false means: wait for the reader goroutine
// as usual. at is the caller's deadline, changed closes when it moves.
func (w *waiter) readDirect(wake <-chan struct{}, at time.Time, changed <-chan struct{}) bool {
	m, c := w.m, w.c
	o := &m.owner
	if !o.callerTake() {
		return false
	}
	defer o.callerRelease(c)
	o.armRead(at)
	// Whatever happened before the deadline was armed was either signalled
	// or is seen here; what happens after interrupts the read. (One
	// channel at a time: cheaper than a select over all four.)
	if ready(wake) || ready(changed) || ready(w.closing) || ready(c.done) {
		return true
	}
	b, err := m.receive(true)
	if err != nil {
		// Interrupted, the deadline passed, or the socket closed: the
		// caller finds out which. Or an ICMP report: handled here.
		o.interrupted()
		m.socketError(err)
		return true
	}
	o.holder.self = c
	w.read = m.handleBatch(b)
	o.holder.self = nil
	return true
}

// yieldSocket gives the socket to the caller that asked for it, if one did
// (the reader goroutine, which holds it), and wakes the callers; it
// reports whether it did.
func (m *mux) yieldSocket() bool {
	if !m.owner.yieldIfAsked() {
		return false
	}
	m.mu.Lock()
	for _, c := range m.conns {
		signal(c.readWake)
	}
	m.mu.Unlock()
	return true
}

// isClosing reports whether Close was called or the connection ended.
func (c *Conn) isClosing() bool { return ready(c.closing) || ready(c.done) }

// ready reports whether a receive from ch would not block (a signal is
// consumed).
func ready(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
