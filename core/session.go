package core

import (
	"errors"
	"time"
)

// UDPLike is any connected datagram socket. Recv must not block: when no
// datagram is ready it returns an error matching ErrWouldBlock, or one
// whose Timeout method reports true (a socket with a past read deadline).
type UDPLike interface {
	Send(p []byte) (int, error)
	Recv(p []byte) (int, error)
}

// maxUDPPayload is the largest datagram a UDP socket can deliver.
const maxUDPPayload = 65535

// Session is one connection driven over a UDPLike: the seed API. It does
// I/O only inside its calls and starts no goroutine; Maintain must be called
// regularly (at the latest at NextTimeout) for acknowledgements,
// retransmissions, heartbeats and timeouts to happen.
//
// Both sides of a connection make a Session over their socket; the
// handshake is symmetric. A Session is not safe for concurrent use.
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
	inSet     bool
	socketErr error
}

// NewSession starts a connection over sock. A nil cfg means defaults.
//
// Unlike the one-result form sketched in DESIGN.md, it returns an error: a
// bad Config is reported here, naming the field, instead of later.
func NewSession(sock UDPLike, cfg *Config) (*Session, error) {
	if sock == nil {
		return nil, errors.New("rudp: NewSession: nil socket")
	}
	var c Config
	if cfg != nil {
		if err := cfg.Validate(); err != nil {
			return nil, err
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
		return err
	}
	if !s.inSet {
		s.flush(s.clock.Now())
	}
	return s.socketErr
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
	return s.socketErr
}

// Recv returns the next message, reading whatever datagrams the socket has
// ready first. nil, nil means nothing is ready yet. The slice aliases the
// session's buffer and stays valid until the next call of Recv.
func (s *Session) Recv() ([]byte, error) {
	m, err := s.RecvMessage()
	return m.Data, err
}

// RecvMessage is Recv that also tells the message's guarantee.
func (s *Session) RecvMessage() (Message, error) {
	now := s.clock.Now()
	if err := s.readSocket(now); err != nil {
		return Message{}, err
	}
	m, err := s.conn.Recv()
	s.flush(now) // acknowledgements and window updates
	return m, err
}

// Maintain reads what the socket has, fires due timers (acknowledgements,
// retransmissions, heartbeats, timeouts) and sends what is due. It returns
// a socket error, or the error that ended the connection.
func (s *Session) Maintain() error {
	now := s.clock.Now()
	if err := s.readSocket(now); err != nil {
		return err
	}
	if t := s.conn.NextTimeout(); !t.IsZero() && !t.After(now) {
		s.conn.HandleTimeout(now)
	}
	s.flush(now)
	if s.socketErr != nil {
		return s.socketErr
	}
	return s.conn.Err()
}

// NextTimeout returns when Maintain is next due (zero: nothing scheduled).
func (s *Session) NextTimeout() time.Time { return s.conn.NextTimeout() }

// Close starts a graceful close: what was sent is delivered first. Keep
// calling Maintain until Closed reports true.
func (s *Session) Close() error {
	now := s.clock.Now()
	s.conn.Close(now)
	s.flush(now)
	return s.socketErr
}

// Closed reports whether the connection has ended.
func (s *Session) Closed() bool { return s.conn.Closed() }

// Stats returns the connection's counters.
func (s *Session) Stats() Stats { return s.conn.Stats() }

func (s *Session) readSocket(now time.Time) error {
	for {
		n, err := s.sock.Recv(s.recvBuf)
		if err != nil {
			if wouldBlock(err) {
				return nil
			}
			return err
		}
		s.conn.HandleDatagram(now, s.recvBuf[:n])
	}
}

func (s *Session) flush(now time.Time) {
	for {
		n := s.conn.PollTransmit(now, s.sendBuf)
		if n == 0 {
			return
		}
		if _, err := s.sock.Send(s.sendBuf[:n]); err != nil && !wouldBlock(err) {
			// A datagram the socket refused is a lost datagram: recovery
			// resends what mattered. Keep the error for the caller.
			s.socketErr = err
		}
	}
}

// wouldBlock reports whether err means "nothing now, try later".
func wouldBlock(err error) bool {
	if errors.Is(err, ErrWouldBlock) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
