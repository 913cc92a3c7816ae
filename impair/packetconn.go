package impair

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// PacketConn is a net.PacketConn whose outgoing datagrams are impaired as its
// Config says; incoming datagrams pass through untouched. To impair both
// directions between two sockets, wrap both.
//
// All methods are safe for concurrent use, as net.PacketConn requires.
type PacketConn struct {
	pc   net.PacketConn
	link *link

	closeOnce sync.Once
	closeErr  error
}

var _ net.PacketConn = (*PacketConn)(nil)

// Wrap returns pc with its writes impaired by cfg. The returned PacketConn
// owns pc: closing it closes pc. Unless cfg impairs nothing, Wrap starts one
// scheduler goroutine, which Close stops. If cfg.Validate fails, Wrap
// returns its error (naming the field) and leaves pc open.
func Wrap(pc net.PacketConn, cfg Config) (*PacketConn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pc == nil {
		return nil, fmt.Errorf("%w: pc is nil", ErrInvalidConfig)
	}
	return &PacketConn{pc: pc, link: newLink(cfg)}, nil
}

// ReadFrom reads from the underlying socket, unimpaired.
func (c *PacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	return c.pc.ReadFrom(p)
}

// WriteTo impairs one datagram to addr. It copies p before returning, so the
// caller may reuse it at once. A datagram dropped by loss or by a full queue
// is reported as written, as UDP would. A datagram that is due at once and
// has nothing queued ahead of it is written before WriteTo returns, and the
// socket's error, if any, is returned; a delayed datagram is written later
// by the scheduler, and its error only counts in Stats.WriteErrors.
func (c *PacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := c.link.submit(p, c, addr)
	if err != nil && errors.Is(err, net.ErrClosed) {
		if _, isOp := err.(*net.OpError); !isOp {
			err = &net.OpError{Op: "write", Net: c.pc.LocalAddr().Network(), Source: c.pc.LocalAddr(), Addr: addr, Err: err}
		}
	}
	return n, err
}

// send implements sink.
func (c *PacketConn) send(p []byte, to net.Addr) error {
	_, err := c.pc.WriteTo(p, to)
	return err
}

// Close drops the datagrams still waiting for their due time, closes the
// underlying socket and waits for the scheduler goroutine to exit. Later calls
// return the first call's result.
func (c *PacketConn) Close() error {
	c.closeOnce.Do(func() {
		c.link.closeQueue()
		// Closing the socket first unblocks a scheduler write in progress.
		c.closeErr = c.pc.Close()
		c.link.stop()
	})
	return c.closeErr
}

// Stats returns the counts of this PacketConn's outgoing direction.
func (c *PacketConn) Stats() Stats { return c.link.stats.snapshot() }

// LocalAddr returns the underlying socket's local address.
func (c *PacketConn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// SetDeadline sets the underlying socket's deadlines. A write deadline also
// applies to the scheduler's delayed writes.
func (c *PacketConn) SetDeadline(t time.Time) error { return c.pc.SetDeadline(t) }

// SetReadDeadline sets the underlying socket's read deadline.
func (c *PacketConn) SetReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }

// SetWriteDeadline sets the underlying socket's write deadline, which also
// applies to the scheduler's delayed writes.
func (c *PacketConn) SetWriteDeadline(t time.Time) error { return c.pc.SetWriteDeadline(t) }
