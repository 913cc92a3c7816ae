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

// Endpoint is one connection driven over a UDPLike: the seed API. It does
// I/O only inside its calls and starts no goroutine; Maintain must be called
// regularly (at the latest at NextTimeout) for acknowledgements,
// retransmissions, heartbeats and timeouts to happen.
//
// Both sides of a connection make an Endpoint over their socket; the
// handshake is symmetric. An Endpoint is not safe for concurrent use.
type Endpoint struct {
	sock      UDPLike
	conn      *Conn
	clock     Clock
	written   []byte // Write accumulates one payload here
	recvBuf   []byte
	sendBuf   []byte
	inSet     bool
	socketErr error
}

// NewEndpoint starts a connection over sock. A nil cfg means defaults.
//
// Unlike the one-result form sketched in DESIGN.md, it returns an error: a
// bad Config is reported here, naming the field, instead of later.
func NewEndpoint(sock UDPLike, cfg *Config) (*Endpoint, error) {
	if sock == nil {
		return nil, errors.New("rudp: NewEndpoint: nil socket")
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
	e := &Endpoint{
		sock:    sock,
		conn:    conn,
		clock:   c.Clock,
		recvBuf: make([]byte, maxUDPPayload),
		sendBuf: make([]byte, c.MaxDatagramSize),
	}
	e.flush(now)
	return e, nil
}

// Conn returns the protocol state machine underneath, for Stats and state.
func (e *Endpoint) Conn() *Conn { return e.conn }

// Write appends p to the payload being built; SendWritten sends it as one
// message. It fails with ErrMessageTooLarge if the payload would exceed
// MaxMessageSize, ours or the peer's (nothing is appended then).
func (e *Endpoint) Write(p []byte) (int, error) {
	if len(e.written)+len(p) > e.conn.MaxMessageSize() {
		return 0, ErrMessageTooLarge
	}
	e.written = append(e.written, p...)
	return len(p), nil
}

// SendWritten sends what Write accumulated as one message with guarantee g
// and starts a new payload. On error the payload is kept.
func (e *Endpoint) SendWritten(g Guarantee) error {
	if err := e.send(g, e.written); err != nil {
		return err
	}
	e.written = e.written[:0]
	return nil
}

// SendPayload sends p as one message with guarantee g. The data is copied.
// ErrSendBufferFull (matching ErrWouldBlock) means: call Maintain or Recv
// to make progress, then try again.
func (e *Endpoint) SendPayload(g Guarantee, p []byte) error { return e.send(g, p) }

func (e *Endpoint) send(g Guarantee, p []byte) error {
	if err := e.conn.Send(g, p); err != nil {
		return err
	}
	if !e.inSet {
		e.flush(e.clock.Now())
	}
	return e.socketErr
}

// Set sends the messages of one set (see AsSet).
type Set struct{ e *Endpoint }

// SendPayload queues p as a member of the set.
func (s *Set) SendPayload(g Guarantee, p []byte) error { return s.e.send(g, p) }

// Write appends to the endpoint's payload being built.
func (s *Set) Write(p []byte) (int, error) { return s.e.Write(p) }

// SendWritten sends the built payload as a member of the set.
func (s *Set) SendWritten(g Guarantee) error { return s.e.SendWritten(g) }

// AsSet sends the messages fn sends as one set: the peer may read them in
// any order among themselves, and reads nothing sent after the set before
// every Delivery message of it. Messages fn sent before returning an error
// stay sent; the error is returned.
func (e *Endpoint) AsSet(fn func(*Set) error) error {
	if err := e.conn.BeginSet(); err != nil {
		return err
	}
	e.inSet = true
	err := fn(&Set{e})
	e.inSet = false
	e.conn.EndSet()
	e.flush(e.clock.Now())
	if err != nil {
		return err
	}
	return e.socketErr
}

// Recv returns the next message, reading whatever datagrams the socket has
// ready first. nil, nil means nothing is ready yet. The slice aliases the
// endpoint's buffer and stays valid until the next call of Recv.
func (e *Endpoint) Recv() ([]byte, error) {
	m, err := e.RecvMessage()
	return m.Data, err
}

// RecvMessage is Recv that also tells the message's guarantee.
func (e *Endpoint) RecvMessage() (Message, error) {
	now := e.clock.Now()
	if err := e.readSocket(now); err != nil {
		return Message{}, err
	}
	m, err := e.conn.Recv()
	e.flush(now) // acknowledgements and window updates
	return m, err
}

// Maintain reads what the socket has, fires due timers (acknowledgements,
// retransmissions, heartbeats, timeouts) and sends what is due. It returns
// a socket error, or the error that ended the connection.
func (e *Endpoint) Maintain() error {
	now := e.clock.Now()
	if err := e.readSocket(now); err != nil {
		return err
	}
	if t := e.conn.NextTimeout(); !t.IsZero() && !t.After(now) {
		e.conn.HandleTimeout(now)
	}
	e.flush(now)
	if e.socketErr != nil {
		return e.socketErr
	}
	return e.conn.Err()
}

// NextTimeout returns when Maintain is next due (zero: nothing scheduled).
func (e *Endpoint) NextTimeout() time.Time { return e.conn.NextTimeout() }

// Close starts a graceful close: what was sent is delivered first. Keep
// calling Maintain until Closed reports true.
func (e *Endpoint) Close() error {
	now := e.clock.Now()
	e.conn.Close(now)
	e.flush(now)
	return e.socketErr
}

// Closed reports whether the connection has ended.
func (e *Endpoint) Closed() bool { return e.conn.Closed() }

// Stats returns the connection's counters.
func (e *Endpoint) Stats() Stats { return e.conn.Stats() }

func (e *Endpoint) readSocket(now time.Time) error {
	for {
		n, err := e.sock.Recv(e.recvBuf)
		if err != nil {
			if wouldBlock(err) {
				return nil
			}
			return err
		}
		e.conn.HandleDatagram(now, e.recvBuf[:n])
	}
}

func (e *Endpoint) flush(now time.Time) {
	for {
		n := e.conn.PollTransmit(now, e.sendBuf)
		if n == 0 {
			return
		}
		if _, err := e.sock.Send(e.sendBuf[:n]); err != nil && !wouldBlock(err) {
			// A datagram the socket refused is a lost datagram: recovery
			// resends what mattered. Keep the error for the caller.
			e.socketErr = err
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
