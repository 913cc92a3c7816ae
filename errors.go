package rudp

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"

	"github.com/rudp-go/rudp/core"
)

// Errors a connection can end with, re-exported from the core so that users
// of the net views match them with errors.Is without importing core.
var (
	// ErrRefused: the listener refused the connection (its accept queue was full).
	ErrRefused = core.ErrRefused

	// ErrHandshakeFailed: the cryptographic handshake failed (Config.TLS,
	// Config.PSK): a certificate, a server name, a pre-shared key, a
	// protection mode the peer does not share. The error says which; on
	// the side that found it, it wraps crypto/tls's error.
	ErrHandshakeFailed = core.ErrHandshakeFailed

	// ErrHandshakeTimeout: Dial heard no answer within Config.HandshakeTimeout.
	// Its Timeout method reports true.
	ErrHandshakeTimeout = core.ErrHandshakeTimeout

	// ErrIdleTimeout: the peer was silent for Config.IdleTimeout.
	ErrIdleTimeout = core.ErrIdleTimeout

	// ErrReset: the peer answered with a stateless reset: it no longer
	// knows the connection (its process restarted, or it forgot the
	// connection). Errors carrying it also match syscall.ECONNRESET, as a
	// TCP connection's reset does.
	ErrReset = core.ErrReset

	// ErrUnreachable: the peer's host reported that nothing listens on its
	// port (ICMP port unreachable; Linux only). Dial fails with it at once;
	// an established connection only after the peer also stopped
	// acknowledging. Errors carrying it also match syscall.ECONNREFUSED, as
	// a refused TCP connect does.
	ErrUnreachable = core.ErrUnreachable

	// ErrAborted: the peer aborted the connection.
	ErrAborted = core.ErrAborted

	// ErrPeerClosed: a write after the peer closed the connection.
	ErrPeerClosed = core.ErrPeerClosed

	// ErrMessageTooLarge: a message longer than Config.MaxMessageSize, or
	// than the peer's MaxMessageSize (which its handshake announced).
	ErrMessageTooLarge = core.ErrMessageTooLarge

	// ErrProtocolViolation: the connection ended because the peer broke the
	// protocol (the peer is told why); the error names what it did.
	ErrProtocolViolation = core.ErrProtocolViolation

	// ErrPeerProtocolViolation: the connection ended because the peer found
	// that this side broke the protocol; the error carries its reason.
	ErrPeerProtocolViolation = core.ErrPeerProtocolViolation

	// ErrBufferTooSmall: a message-oriented read got a buffer shorter than
	// the message; the message is kept for the next read.
	ErrBufferTooSmall = core.ErrBufferTooSmall
)

// errAddrType rejects a WriteTo address that is not a *net.UDPAddr.
var errAddrType = errors.New("rudp: address is not a *net.UDPAddr")

// opError wraps err as package net does: *net.OpError with the endpoints.
// io.EOF is returned as is, and the core's ErrClosed (a local Close) becomes
// net.ErrClosed.
func opError(op string, local net.Addr, remote netip.AddrPort, err error) error {
	switch {
	case err == nil:
		return nil
	case err == io.EOF:
		return err
	case errors.Is(err, core.ErrClosed):
		err = net.ErrClosed
	default:
		err = withErrno(err)
	}
	var raddr net.Addr
	if remote.IsValid() {
		raddr = net.UDPAddrFromAddrPort(remote)
	}
	return &net.OpError{Op: op, Net: "udp", Source: local, Addr: raddr, Err: err}
}

// errnoError is a core error that also matches the errno a TCP socket
// fails with in the same case, so that code written for TCP
// (errors.Is(err, syscall.ECONNRESET)) works unchanged.
type errnoError struct {
	err   error
	errno syscall.Errno
}

func (e *errnoError) Error() string   { return e.err.Error() }
func (e *errnoError) Unwrap() []error { return []error{e.err, e.errno} }

// withErrno gives the core errors that have a socket errno counterpart
// (ErrReset, ErrUnreachable) that errno too.
func withErrno(err error) error {
	switch err {
	case core.ErrReset:
		return &errnoError{err, syscall.ECONNRESET}
	case core.ErrUnreachable:
		return &errnoError{err, syscall.ECONNREFUSED}
	}
	return err
}
