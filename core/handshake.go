package core

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// The cryptographic handshake (docs/PROTOCOL.md "Cryptographic
// handshake"): TLS 1.3 through crypto/tls's QUIC API (handshake_tls.go) or
// Noise NNpsk0 with a pre-shared key (handshake_noise.go). A handshaker
// reads and writes a byte stream per key level (carried in CRYPTO frames,
// handshake_stream.go), hands out the traffic secrets as it learns them,
// and authenticates each side's transport parameters (what its HELLO
// says). It never reads the clock or global randomness: the time and the
// random source come from the connection.

// handshaker is one side of a cryptographic handshake.
type handshaker interface {
	// start begins the handshake; a client writes its first flight.
	start(now time.Time) error
	// handleData takes the peer's next bytes at level l, in order.
	handleData(now time.Time, l keyLevel, data []byte) error
	// complete reports whether the handshake completed on this side.
	complete() bool
	// connectionState describes the completed handshake.
	connectionState() tls.ConnectionState
	// close stops the handshake and frees what it holds (crypto/tls runs
	// its handshake on a goroutine of its own until it completes or is
	// closed).
	close()
}

// handshakeOut is where a handshake's output goes (its connection).
type handshakeOut interface {
	// writeCrypto queues the handshake's next bytes at level l.
	writeCrypto(l keyLevel, p []byte)
	// readSecret and writeSecret install a level's traffic secret
	// (the packet protection's setReadSecret, setWriteSecret).
	readSecret(l keyLevel, suite uint16, secret []byte) error
	writeSecret(l keyLevel, suite uint16, secret []byte) error
	// peerParams takes the peer's authenticated transport parameters; an
	// error (they differ from its HELLO) fails the handshake.
	peerParams(p *transportParams) error
}

// handshakeError is a handshake's failure found on this side: it matches
// ErrHandshakeFailed and the cause (a %w in format), and an abort with it
// sends CloseHandshakeFailed with the text after the sentinel's.
func handshakeError(format string, args ...any) error {
	return &handshakeErr{fmt.Errorf(format, args...)}
}

type handshakeErr struct{ cause error }

func (e *handshakeErr) Error() string     { return ErrHandshakeFailed.Error() + ": " + e.cause.Error() }
func (e *handshakeErr) Unwrap() []error   { return []error{ErrHandshakeFailed, e.cause} }
func (e *handshakeErr) handshakeFailure() {}

// reason is what the peer is told.
func (e *handshakeErr) reason() string { return e.cause.Error() }

// transportParams are the transport parameters a handshake authenticates:
// the sender's HELLO fields (§3.4) and its role. A server's Cookie is the
// cookie the client's HELLO echoed (so the client learns that the listener
// saw the cookie it sent: a Retry happened, and which); a client's is the
// cookie it echoes. MaxData is the credit at the handshake's start (the
// HELLO's may be larger later: credit only grows). resetToken is the
// stateless reset token of the sender's connection ID (docs/PROTOCOL.md
// §14.3; all zero: it sends no reset).
type transportParams struct {
	server     bool
	hello      HelloFrame
	resetToken [ResetTokenLen]byte
}

// transportParamsVersion is the first byte of encoded transport
// parameters; a different one fails the handshake.
const transportParamsVersion = 2

// appendTransportParams encodes p: version u8 (2), role u8 (0 client, 1
// server), the HELLO frame's fields after its type byte, then the
// 16-byte stateless reset token.
func appendTransportParams(b []byte, p *transportParams) []byte {
	role := byte(0)
	if p.server {
		role = 1
	}
	b = append(b, transportParamsVersion)
	start := len(b)
	b = appendHello(b, &p.hello)
	b[start] = role // the HELLO's type byte's place
	return append(b, p.resetToken[:]...)
}

// parseTransportParams decodes b (appendTransportParams' format): nothing
// may follow the token. The cookie aliases b.
func parseTransportParams(b []byte) (transportParams, error) {
	if len(b) < 2 || b[0] != transportParamsVersion || b[1] > 1 {
		return transportParams{}, errBadFrame
	}
	var f frame
	n, err := decodeHello(b[1:], &f)
	if err != nil {
		return transportParams{}, err
	}
	if len(b)-1-n != ResetTokenLen {
		return transportParams{}, errBadFrame
	}
	p := transportParams{server: b[1] == 1, hello: f.hello}
	copy(p.resetToken[:], b[1+n:])
	return p, nil
}

// matchHello checks the peer's authenticated parameters against the HELLO
// it sent in the clear: any difference (but the credit, which grows) is an
// attacker's change, a downgrade among them, or a broken peer, and fails
// the handshake. The cookie is the client's to check (see peerParams).
func (p *transportParams) matchHello(h *HelloFrame, wantServer bool) error {
	switch {
	case p.server != wantServer:
		return handshakeError("the peer's transport parameters are for the wrong role")
	case p.hello.SrcCID != h.SrcCID, p.hello.InitialSeq != h.InitialSeq,
		p.hello.MaxAckDelay != h.MaxAckDelay, p.hello.MaxMessageSize != h.MaxMessageSize,
		p.hello.MaxDatagramSize != h.MaxDatagramSize, p.hello.Protection != h.Protection:
		return handshakeError("the peer's HELLO differs from its authenticated transport parameters")
	}
	return nil
}

// randReader reads from a rand.Source: the handshake's randomness (key
// shares, nonces, ephemeral keys) is the connection's injected one, so a
// simulation seeds it. In production the source is seeded from
// crypto/rand (the root package's ChaCha8).
type randReader struct{ src rand.Source }

func (r randReader) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.src.Uint64())
		copy(p[i:], w[:])
	}
	return len(p), nil
}

var _ io.Reader = randReader{}
