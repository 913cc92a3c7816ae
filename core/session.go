package core

import (
	"errors"
	"fmt"
	"time"
)

// UDPLike is a connected datagram socket, as the seed API (Session) uses
// it: every net.Conn over datagrams is one as it is — a *net.UDPConn made
// by net.Dial("udp", ...) or net.DialUDP with a remote address, a connected
// "unixgram" *net.UnixConn. Each Write sends one datagram and each Read
// returns one (core itself imports no socket package: the interface is the
// part of net.Conn the Session needs).
//
// Reads and writes follow net.Conn's deadlines: one that cannot be done
// before the deadline (no datagram arrived; the socket's queue is full)
// returns an error whose Timeout method reports true. A socket that cannot
// wait (an in-memory one) may instead return an error matching
// ErrWouldBlock at once, and ignore deadlines.
type UDPLike interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}

// maxUDPPayload is the largest datagram a UDP socket can deliver.
const maxUDPPayload = 65535

// pollWait is how far ahead of now Maintain sets the socket's read deadline
// to take what is queued without waiting for more. Go's net checks the
// deadline before it reads: one already past (the usual "non-blocking"
// idiom) returns a timeout without reading anything, so a Session would
// never receive a datagram. A deadline a little ahead lets every queued
// datagram be read at once; when the queue is empty the read returns at the
// deadline, which Linux's poller rounds up to about 1 ms (measured over
// loopback: 1.1 ms per empty read; with 100 datagrams queued none was left
// unread at 100 µs, 24% at 10 µs, where the deadline fires mid-drain).
const pollWait = 200 * time.Microsecond

// Session is one connection driven over a connected datagram socket (a
// UDPLike: any net.Conn over datagrams): the seed API. It does I/O only
// inside its calls and starts no goroutine. Both sides of a connection make
// a Session over their socket; the handshake is symmetric. A Session is not
// safe for concurrent use.
//
// The socket is read in two ways, and no datagram is lost by either: what
// is not read now stays queued in the socket for a later call.
//
//   - Polling, for a program with its own loop (a game's frame): call
//     Maintain regularly (at the latest at NextTimeout), then Recv until it
//     returns nil. Maintain reads what the socket holds, fires due timers
//     (acknowledgements, retransmissions, heartbeats, timeouts) and sends
//     what is due; Recv reads the socket only when no message is ready.
//     Over a net.Conn, a read that finds the socket empty waits until a
//     deadline just ahead (see pollWait: about 1 ms on Linux), because Go's
//     net reads nothing at all with a deadline already past.
//   - Blocking, for a goroutine that serves one connection: Wait sleeps in
//     the socket's read until a datagram arrives or a timer is due, doing
//     Maintain's work as it goes, and returns as soon as Recv has something
//     to return (or after its timeout); then call Recv once. No read waits
//     on an empty socket beyond what Wait was asked to.
//
// A write never waits on the peer: one that finds the socket full (a
// "unixgram" peer that does not read blocks its writer) gives up at a
// deadline just ahead and the datagram is written first at the next call.
//
// Deadlines are the Clock's time: over a real socket the Clock must be the
// real time (the default).
//
// The name follows kcp-go's UDPSession, the same shape (one connection
// pumped over one socket by its owner); "Endpoint" is left to the type that
// serves a whole socket's worth of connections.
type Session struct {
	sock      UDPLike
	conn      *Conn
	clock     Clock
	written   []byte // Write accumulates one payload here
	recvBuf   []byte
	sendBuf   []byte
	unsent    int // sendBuf holds a datagram of this length a full socket did not take
	inSet     bool
	socketErr error // a send the socket refused, reported once

	// ready is what the Recv of a Wait that returned early took from the
	// connection, kept for the next Recv (readyOK: there is one).
	ready    Message
	readyErr error
	readyOK  bool

	// refusedSend is the size of the last message the send buffer refused
	// (0: none since the last accepted): Wait returns once it would fit.
	refusedSend int
}

// NewSession starts a connection over sock, a connected datagram socket
// (see UDPLike), and sends its first HELLO. A nil cfg means defaults. A bad
// Config is reported here, naming the field (*ConfigError), not later.
func NewSession(sock UDPLike, cfg *Config) (*Session, error) {
	if sock == nil {
		return nil, errors.New("rudp: NewSession: sock is nil")
	}
	var c Config
	if cfg != nil {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		switch cfg.Protection() {
		case ProtectionTLS:
			return nil, fieldError("TLS", "set", "not on a Session: a protected connection has a client and a server (an Endpoint)")
		case ProtectionPSK:
			return nil, fieldError("PSK", fmt.Sprintf("%d bytes", len(cfg.PSK)), "not on a Session: a protected connection has a client and a server (an Endpoint)")
		}
		c = *cfg
	}
	c.fillDefaults()
	if c.Rand == nil {
		c.Rand = systemRand()
	}
	now := c.Clock.Now()
	conn, err := NewConn(&c, NewConnectionID(c.Rand), now)
	if err != nil {
		return nil, err
	}
	s := &Session{
		sock:    sock,
		conn:    conn,
		clock:   c.Clock,
		recvBuf: make([]byte, maxUDPPayload),
		sendBuf: make([]byte, c.MaxDatagramSize),
	}
	s.flush(now)
	return s, nil
}

// Conn returns the protocol state machine underneath, for Stats and state.
func (s *Session) Conn() *Conn { return s.conn }

// Write appends p to the payload being built; SendWritten sends it as one
// message. It fails with ErrMessageTooLarge if the payload would exceed
// MaxMessageSize, ours or the peer's (nothing is appended then).
func (s *Session) Write(p []byte) (int, error) {
	if len(s.written)+len(p) > s.conn.MaxMessageSize() {
		return 0, ErrMessageTooLarge
	}
	s.written = append(s.written, p...)
	return len(p), nil
}

// SendWritten sends what Write accumulated as one message with guarantee g
// and starts a new payload. On error the payload is kept.
func (s *Session) SendWritten(g Guarantee) error {
	if err := s.send(g, s.written); err != nil {
		return err
	}
	s.written = s.written[:0]
	return nil
}

// SendPayload sends p as one message with guarantee g. The data is copied.
// ErrSendBufferFull (matching ErrWouldBlock) means: call Maintain or Recv
// to make progress, then try again.
func (s *Session) SendPayload(g Guarantee, p []byte) error { return s.send(g, p) }

func (s *Session) send(g Guarantee, p []byte) error {
	if err := s.conn.Send(g, p); err != nil {
		if errors.Is(err, ErrWouldBlock) {
			s.refusedSend = max(len(p), 1)
		}
		return err
	}
	s.refusedSend = 0
	if !s.inSet {
		s.flush(s.clock.Now())
	}
	return s.takeSocketErr()
}

// Set sends the messages of one set (see AsSet).
type Set struct{ s *Session }

// SendPayload queues p as a member of the set.
func (set *Set) SendPayload(g Guarantee, p []byte) error { return set.s.send(g, p) }

// Write appends to the session's payload being built.
func (set *Set) Write(p []byte) (int, error) { return set.s.Write(p) }

// SendWritten sends the built payload as a member of the set.
func (set *Set) SendWritten(g Guarantee) error { return set.s.SendWritten(g) }

// AsSet sends the messages fn sends as one set: the peer may read them in
// any order among themselves, and reads nothing sent after the set before
// every Delivery message of it. Messages fn sent before returning an error
// stay sent; the error is returned.
func (s *Session) AsSet(fn func(*Set) error) error {
	if err := s.conn.BeginSet(); err != nil {
		return err
	}
	s.inSet = true
	err := fn(&Set{s})
	s.inSet = false
	s.conn.EndSet()
	s.flush(s.clock.Now())
	if err != nil {
		return err
	}
	return s.takeSocketErr()
}

// Recv returns the next message. nil, nil means nothing is ready yet. The
// slice aliases the session's buffer and stays valid until the next call of
// Recv. When no message is ready, Recv first reads what datagrams the
// socket holds (see Session for what that costs over a net.Conn).
func (s *Session) Recv() ([]byte, error) {
	m, err := s.RecvMessage()
	return m.Data, err
}

// RecvMessage is Recv that also tells the message's guarantee.
func (s *Session) RecvMessage() (Message, error) {
	if s.readyOK {
		s.readyOK = false
		m, err := s.ready, s.readyErr
		s.ready, s.readyErr = Message{}, nil
		return m, err
	}
	now := s.clock.Now()
	m, err := s.conn.Recv()
	if m.Guarantee == 0 && err == nil {
		if err := s.readSocket(now, now.Add(pollWait)); err != nil {
			return Message{}, err
		}
		m, err = s.conn.Recv()
	}
	s.flush(now) // acknowledgements and window updates
	return m, err
}

// Maintain reads what the socket holds, fires due timers (acknowledgements,
// retransmissions, heartbeats, timeouts) and sends what is due. It returns
// a socket error, or the error that ended the connection.
//
// A socket error (a connected UDP socket reports an ICMP port unreachable,
// e.g. the peer has not started yet, as a refused connection) is returned
// once and changes nothing else: calling on is fine.
func (s *Session) Maintain() error {
	now := s.clock.Now()
	if err := s.readSocket(now, now.Add(pollWait)); err != nil {
		return err
	}
	s.timersAndFlush(now)
	if err := s.takeSocketErr(); err != nil {
		return err
	}
	return s.conn.Err()
}

// Wait blocks until Recv has something to return (a message, or the error
// or io.EOF that ended the connection; after Close, until the close has
// completed), until the message a full send buffer last refused
// (ErrSendBufferFull) would be accepted, or until timeout has passed, and
// meanwhile
// does what Maintain does as datagrams arrive and timers fall due. It
// returns nil (then call Recv, which returns nil, nil if the time ran out),
// or a socket error, once, as Maintain does.
//
// Each read waits in the socket until a datagram arrives, the connection's
// next timeout or the end of timeout, so a loop of Wait and Recv sleeps
// while nothing happens. A timeout of zero or less makes one pass, reading
// only a datagram already queued. Over a socket that cannot wait (its Read returns
// ErrWouldBlock) Wait returns after one pass.
func (s *Session) Wait(timeout time.Duration) error {
	now := s.clock.Now()
	until := now.Add(max(timeout, 0))
	for pass := 0; ; pass++ {
		if !s.readyOK {
			s.ready, s.readyErr = s.conn.Recv()
			// After a local Close, Recv's ErrClosed is no news: wait for
			// the close to complete instead.
			closing := errors.Is(s.readyErr, ErrClosed) && !s.conn.Closed()
			s.readyOK = s.ready.Guarantee != 0 || s.readyErr != nil && !closing
		}
		s.timersAndFlush(now)
		if err := s.takeSocketErr(); err != nil {
			return err
		}
		if s.readyOK || s.sendable() || pass > 0 && !now.Before(until) {
			return nil
		}
		// Sleep in the read until a datagram arrives or something is due,
		// but never with a deadline so close that Go's net would not read.
		deadline := until
		if t := s.conn.NextTimeout(); !t.IsZero() && t.Before(deadline) {
			deadline = t
		}
		deadline = later(deadline, now.Add(pollWait))
		if err := s.sock.SetReadDeadline(deadline); err != nil {
			return err
		}
		n, err := s.sock.Read(s.recvBuf)
		now = s.clock.Now()
		switch {
		case err == nil:
			s.conn.HandleDatagram(now, s.recvBuf[:n])
		case errors.Is(err, ErrWouldBlock):
			until = now // the socket cannot wait: this was the last pass
		case !isTimeout(err):
			return err
		}
	}
}

// sendable reports whether the message the send buffer last refused would
// now be accepted.
func (s *Session) sendable() bool {
	if s.refusedSend == 0 || s.conn.SendBufferAvailable() < s.refusedSend {
		return false
	}
	s.refusedSend = 0
	return true
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// NextTimeout returns when Maintain is next due (zero: nothing scheduled).
func (s *Session) NextTimeout() time.Time { return s.conn.NextTimeout() }

// Close starts a graceful close: what was sent is delivered first. Keep
// calling Maintain until Closed reports true.
func (s *Session) Close() error {
	now := s.clock.Now()
	s.conn.Close(now)
	s.flush(now)
	return s.takeSocketErr()
}

// CloseWrite ends our direction (a half-close, Conn.CloseWrite): sends fail
// with ErrClosed from now on, the peer's Recv returns io.EOF once it has
// read all we sent, and Recv here goes on until the peer ends its own.
// Keep calling Maintain; Close ends the connection.
func (s *Session) CloseWrite() error {
	now := s.clock.Now()
	if err := s.conn.CloseWrite(now); err != nil {
		return err
	}
	s.flush(now)
	return s.takeSocketErr()
}

// Closed reports whether the connection has ended.
func (s *Session) Closed() bool { return s.conn.Closed() }

// Stats returns the connection's counters.
func (s *Session) Stats() Stats { return s.conn.Stats() }

// readSocket hands the connection every datagram the socket delivers
// before deadline.
func (s *Session) readSocket(now, deadline time.Time) error {
	if err := s.sock.SetReadDeadline(deadline); err != nil {
		return err
	}
	for {
		n, err := s.sock.Read(s.recvBuf)
		if err != nil {
			if errors.Is(err, ErrWouldBlock) || isTimeout(err) {
				return nil
			}
			return err
		}
		s.conn.HandleDatagram(now, s.recvBuf[:n])
	}
}

// timersAndFlush fires the connection's timers if due and sends what is due.
func (s *Session) timersAndFlush(now time.Time) {
	if t := s.conn.NextTimeout(); !t.IsZero() && !t.After(now) {
		s.conn.HandleTimeout(now)
	}
	s.flush(now)
}

// flush writes what the connection has to send. A write may wait only
// until a deadline just ahead (pollWait): a datagram socket whose queue is
// full blocks its writer (a "unixgram" socket until the peer reads, a UDP
// socket until the kernel has sent), and a Session must not, or two ends
// driven by one goroutine would wait for each other forever. The datagram
// that found the socket full is kept (unsent) and written first next time.
func (s *Session) flush(now time.Time) {
	if err := s.sock.SetWriteDeadline(now.Add(pollWait)); err != nil {
		s.socketErr = err
		return
	}
	for {
		if s.unsent == 0 {
			s.unsent = s.conn.PollTransmit(now, s.sendBuf)
			if s.unsent == 0 {
				return
			}
		}
		_, err := s.sock.Write(s.sendBuf[:s.unsent])
		if isTimeout(err) {
			// The deadline may have passed during a long burst, before
			// this write was even tried (Go's net does not try then):
			// once more with a fresh one, to tell that from a full socket.
			if err = s.sock.SetWriteDeadline(s.clock.Now().Add(pollWait)); err == nil {
				_, err = s.sock.Write(s.sendBuf[:s.unsent])
			}
		}
		if errors.Is(err, ErrWouldBlock) || isTimeout(err) {
			return // the socket is full: try again at the next call
		}
		s.unsent = 0
		if err != nil {
			// A datagram the socket refused is a lost datagram: recovery
			// resends what mattered. Keep the error for the caller.
			s.socketErr = err
		}
	}
}

// takeSocketErr returns the error of a refused send, once: a connected UDP
// socket reports one ICMP error per send or read, and the next may succeed.
func (s *Session) takeSocketErr() error {
	err := s.socketErr
	s.socketErr = nil
	return err
}

// isTimeout reports whether err is a read deadline passing (net.Error's
// Timeout; core does not import net).
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
