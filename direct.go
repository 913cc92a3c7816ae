package rudp

import (
	"time"
)

// Direct reads. On a socket that carries one connection (a dialed one, or
// a Listener's while it has a single connection) a Read that has to wait
// reads the socket itself instead of waiting for the socket's reader
// goroutine to hand it what arrived: the goroutine that receives the reply
// is the one that returns it, with no wakeup between two goroutines, as a
// plain UDP socket's reader does.
//
// One goroutine reads the socket at a time. Who does is rxRole: the reader
// goroutine (rxByReader), a blocked caller (rxByCaller) or nobody (rxFree,
// between a caller's reads). A caller takes a free socket for one read and
// frees it again when that read returns. The reader goroutine gives the
// socket up when a caller asks for it (rxWant, then a read deadline in the
// past wakes it), and takes it back once the socket stayed free for a whole
// rxPoll (nobody Reads any more: acknowledgements, pings and timers' replies
// must still be handled), at once when the socket carries more than one
// connection or the caller's connection was closed. So a connection that
// nobody reads behaves as before, and one that is read in a loop is read
// by its caller alone.
//
// Events that a caller blocked on the socket must see (Close, the end of
// its connection, a moved read deadline) interrupt its read with a read
// deadline in the past; the caller checks them again after arming its own
// deadline, so that an interruption is never lost.

// Who reads the socket (mux.rxRole).
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

// readDirect reads the socket on behalf of c's blocked Read if the socket
// may be read by it now, and reports whether it did (or found a reason for
// the caller to look again). false means: wait for the reader goroutine
// as usual. at is the caller's deadline, changed closes when it moves.
func (w *waiter) readDirect(wake <-chan struct{}, at time.Time, changed <-chan struct{}) bool {
	m, c := w.m, w.c
	if m.nconns.Load() != 1 {
		return false
	}
	if !m.rxRole.CompareAndSwap(rxFree, rxByCaller) {
		if m.rxRole.Load() == rxByReader && !m.rxWant.Load() {
			// Ask the reader goroutine for the socket; it wakes this call
			// (through wake) once it gave it up.
			m.rxWant.Store(true)
			m.interruptRead()
		}
		return false
	}
	m.rxGen.Add(1)
	defer m.freeSocket(c)
	m.armRead(at)
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
		m.rxDeadlineSet.Store(false)
		m.socketError(err)
		return true
	}
	m.rxSelf = c
	w.read = m.handleBatch(b)
	m.rxSelf = nil
	return true
}

// armRead sets the socket's read deadline to at unless it is so already
// (only the goroutine holding the socket calls it).
func (m *mux) armRead(at time.Time) {
	if m.rxDeadlineSet.Load() && m.rxDeadline.Equal(at) {
		return
	}
	_ = m.sock.SetReadDeadline(at)
	m.rxDeadline = at
	m.rxDeadlineSet.Store(true)
}

// interruptRead makes the goroutine blocked reading the socket return.
func (m *mux) interruptRead() {
	_ = m.sock.SetReadDeadline(aLongTimeAgo)
	m.rxDeadlineSet.Store(false)
}

// interruptCaller interrupts the blocked Read that is reading the socket
// itself, if any: its connection was closed or ended, or its read deadline
// moved.
func (m *mux) interruptCaller() {
	if m.direct && m.rxRole.Load() == rxByCaller {
		m.interruptRead()
	}
}

// freeSocket ends a caller's read of the socket. The reader goroutine takes
// the socket back at once if c will not be read again (closed or ended) or
// the socket serves other connections too; if it stopped polling because a
// caller held the socket a long time, it starts again.
func (m *mux) freeSocket(c *Conn) {
	m.rxRole.Store(rxFree)
	if m.nconns.Load() != 1 || c.isClosing() {
		m.rxReclaim.Store(true)
		signal(m.rxWake)
		return
	}
	if m.rxSleep.Load() {
		signal(m.rxWake)
	}
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

// readerHolds makes sure the reader goroutine holds the socket before it
// reads: if it gave it to callers it waits until it may take it back. false
// means the socket closed.
func (m *mux) readerHolds() bool {
	if m.rxRole.Load() == rxByReader {
		return true
	}
	seen := m.rxGen.Load()
	for {
		if m.sockClosed.Load() {
			return false
		}
		if (m.rxReclaim.Load() || m.nconns.Load() != 1) && m.rxRole.CompareAndSwap(rxFree, rxByReader) {
			m.rxReclaim.Store(false)
			return true
		}
		if m.rxTimer == nil {
			m.rxTimer = time.NewTimer(rxPoll)
		} else {
			m.rxTimer.Reset(rxPoll)
		}
		select {
		case <-m.rxWake:
		case <-m.rxTimer.C:
		}
		gen := m.rxGen.Load()
		switch m.rxRole.Load() {
		case rxFree:
			if gen == seen && m.rxRole.CompareAndSwap(rxFree, rxByReader) {
				return true // nobody read the socket for a whole rxPoll
			}
		case rxByCaller:
			if gen == seen {
				// One Read has waited on the socket for a whole rxPoll (a
				// quiet connection): stop polling until it frees the socket.
				m.rxSleep.Store(true)
				if m.rxRole.Load() == rxByCaller && m.rxGen.Load() == gen && !m.sockClosed.Load() {
					<-m.rxWake
				}
				m.rxSleep.Store(false)
				gen = m.rxGen.Load()
			}
		}
		seen = gen
	}
}

// yieldSocket gives the socket to the caller that asked for it (the reader
// goroutine, interrupted).
func (m *mux) yieldSocket() {
	m.rxRole.Store(rxFree)
	m.mu.Lock()
	for _, c := range m.conns {
		signal(c.readWake)
	}
	m.mu.Unlock()
}
