package core

import (
	"errors"
	"strconv"
)

// Sentinel errors of the core. Callers match them with errors.Is.
var (
	// ErrWouldBlock is returned by a UDPLike's Read that cannot wait (an
	// in-memory socket) when no datagram is ready, and by the send calls
	// when the send buffer is full (backpressure): the caller should retry
	// after Maintain, Wait or Recv has made progress.
	ErrWouldBlock = errors.New("rudp: operation would block")

	// ErrSendBufferFull is returned (wrapping ErrWouldBlock) when a message
	// does not fit in the remaining send buffer. Nothing was queued.
	ErrSendBufferFull = &wouldBlockError{"rudp: send buffer full"}

	// ErrMessageTooLarge is returned when a message exceeds Config.MaxMessageSize
	// or, once the handshake told it, the peer's MaxMessageSize (then the
	// error, which matches it, says so).
	ErrMessageTooLarge = errors.New("rudp: message larger than MaxMessageSize")

	// errPeerMessageTooLarge: a message within our MaxMessageSize but over the peer's.
	errPeerMessageTooLarge = &matchError{"rudp: message larger than the peer's MaxMessageSize", ErrMessageTooLarge}

	// ErrProtocolViolation ends a connection whose peer broke the protocol
	// (data beyond the limits this side announced, a fragment inconsistent
	// with its message, an acknowledgement of a packet never sent, ...).
	// The peer is told with a CLOSE carrying the reason; the error returned
	// matches ErrProtocolViolation and names the reason.
	ErrProtocolViolation = errors.New("rudp: protocol violation by the peer")

	// ErrPeerProtocolViolation ends a connection whose peer found that this
	// side broke the protocol; the error returned matches it and carries the
	// peer's reason.
	ErrPeerProtocolViolation = errors.New("rudp: the peer reported a protocol violation")

	// ErrClosed is returned by calls on a connection that was closed locally.
	ErrClosed = errors.New("rudp: connection closed")

	// ErrPeerClosed is returned by send calls after the peer closed the
	// connection; Recv returns io.EOF once everything the peer sent is read.
	ErrPeerClosed = errors.New("rudp: connection closed by peer")

	// ErrIdleTimeout ends a connection that heard nothing from its peer for
	// Config.IdleTimeout.
	ErrIdleTimeout = &timeoutError{"rudp: idle timeout"}

	// ErrHandshakeTimeout ends a connection whose handshake did not complete
	// within Config.HandshakeTimeout.
	ErrHandshakeTimeout = &timeoutError{"rudp: handshake timeout"}

	// ErrRefused ends a connection the peer refused (for example a listener
	// whose accept queue is full).
	ErrRefused = errors.New("rudp: connection refused by peer")

	// ErrHandshakeFailed ends a connection whose cryptographic handshake
	// failed: on the side that found the failure, the error wraps the cause
	// (crypto/tls's error, so errors.As finds *tls.CertificateVerificationError
	// or tls.AlertError); on the other side it carries the peer's reason.
	ErrHandshakeFailed = errors.New("rudp: cryptographic handshake failed")

	// ErrReset ends a connection whose peer answered it with a stateless
	// reset: the peer no longer knows the connection (it restarted, or
	// forgot it). The root package's errors also match syscall.ECONNRESET.
	ErrReset = errors.New("rudp: connection reset by peer")

	// ErrUnreachable ends a connection whose peer's host reported that
	// nothing listens on its port (ICMP port unreachable, see
	// HandleUnreachable). The root package's errors also match
	// syscall.ECONNREFUSED.
	ErrUnreachable = errors.New("rudp: peer port unreachable")

	// ErrAborted ends a connection the peer aborted with an error code.
	ErrAborted = errors.New("rudp: connection aborted by peer")

	// ErrInvalidGuarantee is returned for a Guarantee outside None..Delivery.
	ErrInvalidGuarantee = errors.New("rudp: invalid guarantee")

	// ErrNestedSet is returned when AsSet is called inside AsSet.
	ErrNestedSet = errors.New("rudp: AsSet called inside AsSet")

	// ErrStreamLimit is returned (matching ErrWouldBlock) by OpenStream
	// while the peer's limit on open streams is reached (or, before the
	// handshake completed, not yet known): it is retried once a stream the
	// peer counts ended (StreamLimitRaised).
	ErrStreamLimit = &wouldBlockError{"rudp: the peer's stream limit is reached"}

	// ErrStreamClosed is returned by the calls on a stream that was closed
	// locally (Write after CloseWrite, Read after CloseStream) or has ended
	// and been forgotten.
	// It matches ErrClosed.
	ErrStreamClosed = &matchError{"rudp: stream closed", ErrClosed}

	// ErrStreamReset is returned when the peer abandoned a stream's
	// direction: reads after the peer's STREAM_RESET, writes after its
	// STOP_SENDING. The error returned matches it and carries the peer's
	// code (StreamResetError).
	ErrStreamReset = errors.New("rudp: stream reset by peer")

	// ErrBufferTooSmall is returned when a caller's buffer cannot hold a whole
	// message; the message is kept for the next call.
	ErrBufferTooSmall = errors.New("rudp: buffer too small for message")

	// Decoding errors: the datagram is dropped and counted, never delivered.
	errTruncated   = errors.New("rudp: truncated packet")
	errBadVersion  = errors.New("rudp: unknown version")
	errBadChecksum = errors.New("rudp: bad checksum")
	errBadType     = errors.New("rudp: unknown packet type")
	errBadFrame    = errors.New("rudp: unknown frame type")
	errBadVarint   = errors.New("rudp: malformed varint")
	errBadAck      = errors.New("rudp: malformed ack ranges")
	errBadMessage  = errors.New("rudp: malformed message frame")
)

// StreamResetError is the error a stream's calls return once the peer
// abandoned its direction: it matches ErrStreamReset and carries the code
// the peer's STREAM_RESET or STOP_SENDING frame gave.
type StreamResetError struct {
	Stream uint64 // the stream's ID
	Code   uint64 // the peer's application error code
}

func (e *StreamResetError) Error() string {
	return ErrStreamReset.Error() + " (stream " + strconv.FormatUint(e.Stream, 10) + ", code " + strconv.FormatUint(e.Code, 10) + ")"
}
func (e *StreamResetError) Is(target error) bool { return target == ErrStreamReset }

// violationError is the error a connection ends with when its peer
// violated the protocol: reason is what it did, sent to the peer in the CLOSE.
type violationError struct{ reason string }

func (e *violationError) Error() string        { return ErrProtocolViolation.Error() + ": " + e.reason }
func (e *violationError) Is(target error) bool { return target == ErrProtocolViolation }

// closeError is the error a connection ends with when the peer's CLOSE
// carried an error code: the sentinel for the code and the peer's reason.
type closeError struct {
	code   error  // ErrAborted, ErrPeerProtocolViolation or ErrHandshakeFailed
	reason string // as the peer sent it: shown quoted, never trusted
	said   string // what goes before the quote, if anything ("the peer said")
}

func (e *closeError) Error() string {
	switch {
	case e.reason == "":
		return e.code.Error()
	case e.said != "":
		return e.code.Error() + ": " + e.said + " " + strconv.QuoteToGraphic(e.reason)
	}
	return e.code.Error() + ": " + strconv.QuoteToGraphic(e.reason)
}
func (e *closeError) Is(target error) bool { return target == e.code }

// matchError is a distinct error that still matches a sentinel.
type matchError struct {
	msg   string
	match error
}

func (e *matchError) Error() string        { return e.msg }
func (e *matchError) Is(target error) bool { return target == e.match }

// wouldBlockError is a distinct error that still matches ErrWouldBlock.
type wouldBlockError struct{ msg string }

func (e *wouldBlockError) Error() string        { return e.msg }
func (e *wouldBlockError) Is(target error) bool { return target == ErrWouldBlock }

// timeoutError reports Timeout() true, as net.Error callers expect.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// handshakeFailure is a local handshake failure (it matches
// ErrHandshakeFailed): an abort with it sends CloseHandshakeFailed.
type handshakeFailure interface {
	error
	handshakeFailure()
	reason() string
}
