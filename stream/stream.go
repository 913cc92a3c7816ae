// Package stream gives the byte-stream and message views of one stream of
// a core.Conn: stream 0 (the connection itself) or another one
// (docs/PROTOCOL.md §17).
//
// It is pure: it does no I/O, takes no locks and starts no goroutines. The
// root package's Conn holds its mutex around every call and drives the
// core's I/O (HandleDatagram, PollTransmit, HandleTimeout) around them.
package stream

import (
	"fmt"

	"github.com/rudp-go/rudp/core"
)

// Stream is the byte-stream and message view of one stream of a *core.Conn.
//
// Write cuts bytes into Delivery messages of at most one datagram each and
// Read hands the bytes of received messages back in order; WriteMessage and
// ReadMessage move whole messages with any guarantee. Reads are zero-copy
// from the core: the Stream keeps the current core.Message, whose Data
// aliases the core's receive buffer, and copies out of it across calls. For
// that to hold, the Stream must be the only caller of the core's Recv.
//
// A Stream is not safe for concurrent use: its owner serializes every call,
// together with the calls on the underlying core.Conn.
type Stream struct {
	conn *core.Conn
	id   uint64 // the stream: 0 is the connection's own

	// msg is the message received from the core and not yet fully read;
	// its Data stays valid until the next conn.Recv, which only fetch calls.
	msg core.Message
	// read is how many bytes of msg.Data were already copied out.
	read int
	// held reports whether msg is such a message (a zero-length message
	// has nothing to read yet is still a message for ReadMessage).
	held bool
	// err is the error conn.Recv returned while bytes were still to be
	// handed out; the next read call returns it once.
	err error
}

// New returns a Stream over c's stream 0. The Stream must be the only
// caller of c.Recv from then on.
func New(c *core.Conn) *Stream {
	return &Stream{conn: c}
}

// NewID returns a Stream over c's stream id. The Stream must be the only
// caller of c.RecvStream(id) from then on.
func NewID(c *core.Conn, id uint64) *Stream {
	return &Stream{conn: c, id: id}
}

// ID returns the stream's ID.
func (s *Stream) ID() uint64 { return s.id }

// Write queues as much of p as the send buffer takes, as Delivery messages
// of at most c.MaxFragmentPayload() bytes (one datagram each; fewer if the
// peer's MaxMessageSize is smaller), added to the stream's last message
// while it waits unsent (core.Conn.WriteStream). n < len(p)
// with an error matching core.ErrWouldBlock means the buffer is full: wait
// for the core to make progress and retry p[n:]. Every other error from the
// core (core.ErrClosed, core.ErrPeerClosed, the error that ended the
// connection) is returned as is, with the bytes queued before it. An empty
// p queues nothing.
func (s *Stream) Write(p []byte) (n int, err error) {
	for n < len(p) {
		// A refused WriteStream queues nothing, so p[n:] is exactly what is left.
		k, err := s.conn.WriteStream(s.id, p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// WriteMessage queues p as one message with guarantee g. It returns an error
// matching core.ErrWouldBlock if the send buffer cannot take the message
// now, and the core's other errors (core.ErrMessageTooLarge,
// core.ErrInvalidGuarantee, core.ErrClosed, ...) as is. A failed call queued
// nothing.
func (s *Stream) WriteMessage(g core.Guarantee, p []byte) error {
	return s.conn.SendStream(s.id, g, p)
}

// Read copies the bytes of received messages into p, in the order the core
// delivers the messages and across message boundaries; zero-length messages
// carry no bytes and are skipped. (0, nil) means nothing is ready now. Once
// every received byte was read, Read returns the core's Recv error: io.EOF
// after the peer's graceful close, core.ErrClosed after a local close, or
// the error that ended the connection.
func (s *Stream) Read(p []byte) (n int, err error) {
	if len(p) == 0 {
		return 0, nil
	}
	for n < len(p) && s.fetch() {
		k := copy(p[n:], s.msg.Data[s.read:])
		n += k
		s.read += k
		if s.read == len(s.msg.Data) {
			s.release()
		}
	}
	if n > 0 {
		return n, nil
	}
	return 0, s.takeErr()
}

// ReadMessage copies the next whole message into p and returns its length
// and guarantee; (0, 0, nil) means nothing is ready now, and a zero-length
// message is (0, g, nil) with g nonzero. If p is too small, ReadMessage
// returns (0, g, err) with errors.Is(err, core.ErrBufferTooSmall) and an
// error text naming the bytes needed; the message is kept for the next call.
//
// If Read already consumed part of the current message, ReadMessage returns
// the rest of that message (and the size it asks for is that of the rest).
//
// Once every received message was read, ReadMessage returns the core's Recv
// error, as Read does.
func (s *Stream) ReadMessage(p []byte) (n int, g core.Guarantee, err error) {
	if !s.fetch() {
		return 0, 0, s.takeErr()
	}
	rest := s.msg.Data[s.read:]
	g = s.msg.Guarantee
	if len(p) < len(rest) {
		return 0, g, fmt.Errorf("%w: message needs %d bytes, buffer has %d", core.ErrBufferTooSmall, len(rest), len(p))
	}
	n = copy(p, rest)
	s.release()
	return n, g, nil
}

// Readable reports whether Read or ReadMessage would return something other
// than (0, nil) now: a message is held, or the core has one ready (which is
// then received and kept), or there is an error to return. A held
// zero-length message counts, though Read skips it.
func (s *Stream) Readable() bool {
	return s.fetch() || s.err != nil
}

// fetch makes sure a message is held when the core has one ready and
// reports whether one is. An error from the core's Recv is kept in s.err,
// and no further Recv is made until it was returned.
func (s *Stream) fetch() bool {
	if s.held {
		return true
	}
	if s.err != nil {
		return false
	}
	m, err := s.conn.RecvStream(s.id)
	if err != nil {
		s.err = err
		return false
	}
	if m.Guarantee == 0 { // the zero Message: nothing ready
		return false
	}
	s.msg, s.read, s.held = m, 0, true
	return true
}

// release lets go of the held message, which was read to the end, and
// receives the next one at once: that Recv hands the old message's buffer
// and flow-control credit back to the core now rather than at the next
// read call, so a window update can go out with the next flush.
func (s *Stream) release() {
	s.msg, s.read, s.held = core.Message{}, 0, false
	s.fetch()
}

// takeErr returns the kept Recv error once.
func (s *Stream) takeErr() error {
	err := s.err
	s.err = nil
	return err
}
