package rudp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/stream"
)

// StreamOptions are a new stream's settings (Conn.OpenStream). A nil
// *StreamOptions means the defaults.
type StreamOptions struct {
	// Guarantee is what the stream's Read and Write carry: Delivery (the
	// default) a reliable ordered byte stream, Order or None one message
	// per Write and per Read. The peer's end reads it the same way: it
	// travels with the stream's opening.
	Guarantee Guarantee
	// Priority and Weight say how this side sends the stream's data
	// beside the other streams' (never sent: the peer schedules its own
	// direction). After control frames and retransmissions, a stream of
	// a lower Priority with data that may go is always sent before any
	// stream of a higher one; the connection itself (stream 0, what
	// Conn.Write sends) is Priority 0, Weight 1. Streams of the same
	// Priority share the sending rate in proportion to their Weight (1
	// to core.MaxStreamWeight; zero means 1): at weights 4 and 1, two
	// streams with data always waiting get 4 and 1 bytes in 5. A stream
	// with nothing to send, or waiting for the peer's flow-control
	// credit, earns no share meanwhile, and data interleaves a fragment
	// at a time, so a small message on one stream waits at most about a
	// packet behind a large one on another of the same Priority.
	Priority int
	Weight   int
	// Redundancy sends each message of at most core.MaxRedundantMessage
	// bytes written on the stream twice, the copy a fraction of an RTT
	// after the original (or in the next packet that leaves before then),
	// so that the loss of one packet costs such a message no round trip:
	// for games and interactive tools, whose messages are small and late
	// ones useless. It costs the copies' bytes (Stats.RedundantBytesSent),
	// counted against congestion control like any data; the peer, which
	// needs no setting, takes each message once whatever its guarantee.
	// Never sent: each side chooses for what it sends (Stream.SetRedundancy,
	// Conn.SetRedundancy for the connection's own stream). (An extension
	// of DESIGN.md's StreamOptions, for issue 12's loss that costs no
	// latency.)
	Redundancy bool
}

// Stream is one stream of a Conn (docs/PROTOCOL.md §17): an ordering
// domain of its own, so that nothing on it waits for another stream's
// losses. It is a net.Conn: with Guarantee Delivery (the default) Read and
// Write carry a reliable ordered byte stream, with Order or None one Write
// is one message and one Read one whole message; SendMessage and
// ReadMessage move single messages with any guarantee. Its addresses and
// its end with the connection are the Conn's.
//
// Every method may be called concurrently with any other, as on a Conn.
// A Stream starts no goroutine: its calls drive the connection's socket
// themselves in Manual mode, as the Conn's do.
type Stream struct {
	c         *Conn
	id        uint64
	guarantee Guarantee
	view      *stream.Stream // guarded by c.mu

	writeMu   sync.Mutex    // one Write at a time, so a Write's bytes stay together
	readWake  chan struct{} // 1-buffered: something arrived or ended
	writeWake chan struct{} // 1-buffered: send buffer space may have freed
	rd, wd    deadline
	closeOnce sync.Once
	closing   chan struct{} // closed by Close
	// readEnd is the end of the peer's direction once a read returned it
	// (io.EOF, or the peer's reset), returned by every later read: the
	// core forgets a stream whose directions both ended. Guarded by c.mu.
	readEnd error
}

// OpenStream opens a new stream. The peer learns of it at once (its
// AcceptStream returns it before any data, in the order streams were
// opened) together with o.Guarantee. While the peer's limit on the streams
// it takes (its Config.MaxIncomingStreams) is reached, OpenStream waits
// until one of them ends, or ctx does (then it returns an error matching
// ctx.Err()).
func (c *Conn) OpenStream(ctx context.Context, o *StreamOptions) (*Stream, error) {
	g, priority, weight, redundancy := Delivery, 0, 1, false
	if o != nil {
		switch {
		case o.Guarantee != 0 && !o.Guarantee.Valid():
			return nil, &ConfigError{Field: "StreamOptions.Guarantee", Value: o.Guarantee, Reason: "must be None, Order or Delivery"}
		}
		if err := checkWeight("StreamOptions.Weight", o.Weight); err != nil {
			return nil, err
		}
		if o.Guarantee != 0 {
			g = o.Guarantee
		}
		priority, weight, redundancy = o.Priority, max(o.Weight, 1), o.Redundancy
	}
	return c.waitStream(ctx, "open", &c.openWake, func(now time.Time) (*Stream, error) {
		id, err := c.core.OpenStream(g)
		switch {
		case errors.Is(err, core.ErrStreamLimit):
			return nil, nil
		case err == nil && (priority != 0 || weight != 1):
			err = c.core.SetStreamPriority(id, priority, weight)
		}
		if err == nil && redundancy {
			err = c.core.SetStreamRedundancy(id, true)
		}
		if err != nil {
			return nil, err
		}
		s := c.newStreamLocked(id, g)
		c.settleLocked(now)
		if c.core.StreamsAvailable() > 0 {
			signal(c.openWake) // another OpenStream may go on
		}
		return s, nil
	})
}

// checkWeight refuses a stream weight out of range, naming field.
func checkWeight(field string, w int) error {
	if w < 0 || w > core.MaxStreamWeight {
		return &ConfigError{Field: field, Value: w, Reason: fmt.Sprintf("must be 0 to %d", core.MaxStreamWeight)}
	}
	return nil
}

// AcceptStream waits for the next stream the peer opens and returns it,
// in the order the peer opened them, as soon as it is opened (before any
// of its data). It returns an error matching ctx.Err() when ctx ends, and
// the connection's error (io.EOF after the peer's close) once it ended.
func (c *Conn) AcceptStream(ctx context.Context) (*Stream, error) {
	return c.waitStream(ctx, "accept", &c.acceptWake, func(time.Time) (*Stream, error) {
		if id, g, ok := c.core.AcceptStream(); ok {
			signal(c.acceptWake) // another AcceptStream may be waiting
			return c.newStreamLocked(id, g), nil
		}
		switch {
		case c.core.Err() != nil:
			return nil, c.core.Err()
		case c.ended || c.core.PeerClosed():
			return nil, net.ErrClosed
		}
		return nil, nil
	})
}

// waitStream is the wait of OpenStream and AcceptStream: try, called under
// c.mu, returns the stream, an error, or neither to wait on wake and try
// again; *wake, guarded by c.mu, is made here when nil. In Manual mode the
// wait drives the socket (no goroutine). It ends with an error matching
// ctx.Err() when ctx ends, and with the connection's when it is closed.
func (c *Conn) waitStream(ctx context.Context, op string, wake *chan struct{}, try func(now time.Time) (*Stream, error)) (*Stream, error) {
	w := c.waiter()
	w.done = ctx.Done()
	defer w.stop()
	for {
		if err := ctx.Err(); err != nil {
			return nil, c.opErr(op, err)
		}
		if err := c.check(&noDeadline); err != nil {
			return nil, c.opErr(op, err)
		}
		now := monoNow()
		c.mu.Lock()
		ch := wakeChan(wake)
		s, err := try(now)
		c.mu.Unlock()
		switch {
		case err != nil:
			return nil, c.opErr(op, err)
		case s != nil:
			return s, nil
		}
		w.wait(ch, &noDeadline)
	}
}

// newStreamLocked makes the Stream of core stream id and registers it
// for wakeups.
func (c *Conn) newStreamLocked(id uint64, g Guarantee) *Stream {
	s := &Stream{
		c:         c,
		id:        id,
		guarantee: g,
		view:      stream.NewID(c.core, id),
		readWake:  make(chan struct{}, 1),
		writeWake: make(chan struct{}, 1),
		closing:   make(chan struct{}),
	}
	if c.streams == nil {
		c.streams = make(map[uint64]*Stream)
	}
	c.streams[id] = s
	return s
}

// wakeStreamsLocked tells every stream's blocked calls that something
// changed.
func (c *Conn) wakeStreamsLocked() {
	for _, s := range c.streams {
		signal(s.readWake)
		signal(s.writeWake)
	}
}

// ID returns the stream's ID, the same on both ends (0 is the connection's
// own, which the Conn itself reads and writes).
func (s *Stream) ID() uint64 { return s.id }

// Guarantee returns what the stream's Read and Write carry: the opener's
// StreamOptions.Guarantee.
func (s *Stream) Guarantee() Guarantee { return s.guarantee }

// SetPriority changes how this side sends the stream's data beside the
// other streams' from now on, as StreamOptions.Priority and Weight say
// (weight 0 means 1). An accepted stream starts at Priority 0, Weight 1:
// the opener's options are its own, never sent. (Beyond DESIGN.md's
// Stream: without it the side that accepts a stream could not schedule
// what it sends on it, a server's download on a stream its client opened.)
func (s *Stream) SetPriority(priority, weight int) error {
	if err := checkWeight("weight", weight); err != nil {
		return err
	}
	if err := s.check(&noDeadline, time.Time{}); err != nil {
		return s.opErr("set", err)
	}
	s.c.mu.Lock()
	err := s.c.core.SetStreamPriority(s.id, priority, max(weight, 1))
	s.c.mu.Unlock()
	if err != nil && !errors.Is(err, core.ErrStreamClosed) {
		// (A stream the core forgot has nothing left to send.)
		return s.opErr("set", err)
	}
	return nil
}

// SetRedundancy turns StreamOptions.Redundancy on or off for what this
// side writes on the stream from now on (what was written keeps what it
// was written with). An accepted stream starts without it.
func (s *Stream) SetRedundancy(on bool) error {
	if err := s.check(&noDeadline, time.Time{}); err != nil {
		return s.opErr("set", err)
	}
	s.c.mu.Lock()
	err := s.c.core.SetStreamRedundancy(s.id, on)
	s.c.mu.Unlock()
	if err != nil && !errors.Is(err, core.ErrStreamClosed) {
		// (A stream the core forgot has nothing left to send.)
		return s.opErr("set", err)
	}
	return nil
}

// Conn returns the connection the stream belongs to.
func (s *Stream) Conn() *Conn { return s.c }

func (s *Stream) opErr(op string, err error) error { return s.c.opErr(op, err) }

// check reports why an operation bounded by dl must not proceed: the
// stream's or the connection's Close, or the deadline.
func (s *Stream) check(dl *deadline, now time.Time) error {
	if err := checkOpen(s.closing, dl, now); err != nil {
		return err
	}
	return checkOpen(s.c.closing, &noDeadline, now)
}

// waiter is the waiter of one blocked call on the stream. The connection's
// Close ends its wait; the stream's Close signals the stream's wakeups.
func (s *Stream) waiter() waiter { return waiter{m: s.c.m, closing: s.c.closing} }

// closed reports whether the stream's Close was called; if so the wakeup
// wake is passed on, for another call blocked on it.
func (s *Stream) closed(wake chan struct{}) bool {
	select {
	case <-s.closing:
		signal(wake)
		return true
	default:
		return false
	}
}

// Read reads bytes of the stream (Delivery) or one whole message (Order,
// None: a too-small p gets an error matching ErrBufferTooSmall). It returns
// io.EOF after the peer's CloseWrite or Close and everything it sent, and
// an error matching ErrStreamReset after the peer reset the stream.
func (s *Stream) Read(p []byte) (int, error) {
	if s.guarantee != Delivery {
		n, _, err := s.ReadMessage(p)
		return n, err
	}
	w := s.waiter()
	defer w.stop()
	for {
		now := w.now()
		if err := s.check(&s.rd, now); err != nil {
			s.closed(s.readWake)
			return 0, s.opErr("read", err)
		}
		s.c.mu.Lock()
		n, err := s.view.Read(p)
		err = s.readEndLocked(err)
		if n > 0 {
			s.c.readLocked(now, n)
		} else if err == nil {
			s.c.drainedLocked(now)
		}
		if (n > 0 || err != nil) && s.view.Readable() {
			signal(s.readWake)
		}
		s.c.mu.Unlock()
		switch {
		case n > 0:
			return n, nil
		case err != nil:
			return 0, s.opErr("read", err)
		case len(p) == 0:
			return 0, nil
		}
		w.wait(s.readWake, &s.rd)
	}
}

// ReadMessage reads one whole message and its guarantee, whatever the
// stream's Guarantee. If p is too small it returns an error matching
// ErrBufferTooSmall and keeps the message.
func (s *Stream) ReadMessage(p []byte) (n int, g Guarantee, err error) {
	w := s.waiter()
	defer w.stop()
	for {
		now := w.now()
		if err := s.check(&s.rd, now); err != nil {
			s.closed(s.readWake)
			return 0, 0, s.opErr("read", err)
		}
		s.c.mu.Lock()
		n, g, err := s.view.ReadMessage(p)
		err = s.readEndLocked(err)
		if g != 0 && err == nil {
			s.c.readLocked(now, max(n, 1))
		} else if err == nil {
			s.c.drainedLocked(now)
		}
		if (g != 0 || err != nil) && s.view.Readable() {
			signal(s.readWake)
		}
		s.c.mu.Unlock()
		if err != nil {
			return 0, g, s.opErr("read", err)
		}
		if g != 0 {
			return n, g, nil
		}
		w.wait(s.readWake, &s.rd)
	}
}

// readEndLocked keeps err if it is the end of the peer's direction, and
// returns the end kept by an earlier read instead of the error a stream
// the core forgot gives.
func (s *Stream) readEndLocked(err error) error {
	switch {
	case s.readEnd != nil && errors.Is(err, core.ErrStreamClosed):
		return s.readEnd
	case err == io.EOF || errors.Is(err, core.ErrStreamReset):
		s.readEnd = err
	}
	return err
}

// Write writes p: with Delivery as bytes of the stream, with Order or None
// as one message. It blocks while the send buffer is full, until the write
// deadline. After CloseWrite or Close it fails with an error wrapping
// net.ErrClosed.
func (s *Stream) Write(p []byte) (int, error) {
	if s.guarantee != Delivery {
		if err := s.SendMessage(s.guarantee, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	w := s.waiter()
	defer w.stop()
	sent := 0
	for {
		now := monoNow()
		if err := s.check(&s.wd, now); err != nil {
			s.closed(s.writeWake)
			return sent, s.opErr("write", err)
		}
		s.c.mu.Lock()
		n, err := s.view.Write(p[sent:])
		sent += n
		if n > 0 {
			s.c.settleLocked(now)
		}
		s.c.mu.Unlock()
		if sent == len(p) {
			return sent, nil
		}
		if err != nil && !errors.Is(err, core.ErrWouldBlock) {
			return sent, s.opErr("write", err)
		}
		w.wait(s.writeWake, &s.wd)
	}
}

// SendMessage sends p as one message with guarantee g, whatever the
// stream's Guarantee. It blocks while the send buffer is full, until the
// write deadline.
func (s *Stream) SendMessage(g Guarantee, p []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	w := s.waiter()
	defer w.stop()
	for {
		now := monoNow()
		if err := s.check(&s.wd, now); err != nil {
			s.closed(s.writeWake)
			return s.opErr("write", err)
		}
		s.c.mu.Lock()
		err := s.view.WriteMessage(g, p)
		if err == nil {
			s.c.settleLocked(now)
		}
		s.c.mu.Unlock()
		if err == nil {
			return nil
		}
		if !errors.Is(err, core.ErrWouldBlock) {
			return s.opErr("write", err)
		}
		w.wait(s.writeWake, &s.wd)
	}
}

// CloseWrite ends our direction of the stream, as *net.TCPConn's
// CloseWrite: what was written is still delivered, then the peer reads
// io.EOF; Write fails with an error wrapping net.ErrClosed from now on; we
// still read.
func (s *Stream) CloseWrite() error {
	if err := s.check(&noDeadline, time.Time{}); err != nil {
		return s.opErr("close", err)
	}
	return s.closeWrite()
}

func (s *Stream) closeWrite() error {
	now := monoNow()
	s.c.mu.Lock()
	err := s.c.core.CloseStreamWrite(s.id)
	s.c.settleLocked(now)
	s.c.mu.Unlock()
	signal(s.writeWake) // a Write waiting for buffer space fails now
	if err != nil && !errors.Is(err, core.ErrStreamClosed) {
		return s.opErr("close", err)
	}
	return nil
}

// Close closes both directions, as net.Conn's Close does: blocked and later
// calls fail with net.ErrClosed, our direction ends as CloseWrite ends it,
// and what the peer sends is discarded as it arrives (it is asked to stop:
// its writes fail with an error matching ErrStreamReset). The stream's
// place is given back once the peer's end closed too.
func (s *Stream) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		close(s.closing)
	})
	if !first {
		return s.opErr("close", net.ErrClosed)
	}
	signal(s.readWake)
	signal(s.writeWake)
	if err := s.closeWrite(); err != nil {
		return err
	}
	now := monoNow()
	s.c.mu.Lock()
	err := s.c.core.StopStream(s.id, 0)
	delete(s.c.streams, s.id)
	s.c.settleLocked(now)
	s.c.mu.Unlock()
	if err != nil && !errors.Is(err, core.ErrStreamClosed) {
		return s.opErr("close", err)
	}
	return nil
}

// LocalAddr returns the connection's local address.
func (s *Stream) LocalAddr() net.Addr { return s.c.LocalAddr() }

// RemoteAddr returns the connection's peer address.
func (s *Stream) RemoteAddr() net.Addr { return s.c.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (s *Stream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

// SetReadDeadline sets when pending and future reads fail with an error
// matching os.ErrDeadlineExceeded; the zero time means never.
func (s *Stream) SetReadDeadline(t time.Time) error {
	if s.check(&noDeadline, time.Time{}) != nil {
		return s.opErr("set", net.ErrClosed)
	}
	s.rd.set(t)
	signal(s.readWake)
	return nil
}

// SetWriteDeadline sets when pending and future writes fail with an error
// matching os.ErrDeadlineExceeded; the zero time means never.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	if s.check(&noDeadline, time.Time{}) != nil {
		return s.opErr("set", net.ErrClosed)
	}
	s.wd.set(t)
	signal(s.writeWake)
	return nil
}

// String names the stream and its connection, for logs.
func (s *Stream) String() string {
	return fmt.Sprintf("rudp stream %d of %v->%v", s.id, s.LocalAddr(), s.RemoteAddr())
}
