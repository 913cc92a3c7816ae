package core

import (
	"crypto/tls"
	"math/rand/v2"
)

// security is a connection's packet protection and cryptographic
// handshake (issue 11): allocated only when the connection is configured
// for protection (Config.TLS or Config.PSK), so a plaintext connection
// pays one nil pointer for it. Its fields are added by the packet
// protection (protect*.go) and the handshake (handshake*.go).
type security struct {
	// Packet protection (protect*.go).
	protection

	// The cryptographic handshake (handshake*.go, crypto_stream.go).
	mode      Protection
	server    bool
	tlsConfig *tls.Config
	psk       []byte
	// rng is the handshake's randomness (key shares, ephemeral keys,
	// nonces), seeded from the Endpoint's or the Config's source.
	rng *rand.ChaCha8
	// hs is the handshake, from our first flight (client) or the peer's
	// HELLO (server) on; crypto is its bytes at each key level.
	hs     handshaker
	crypto [levelApp + 1]cryptoStream
	// peerHello is the peer's HELLO (its cookie copied), which its
	// authenticated transport parameters must match; paramsOK says they did.
	peerHello HelloFrame
	paramsOK  bool
	// readable: the levels whose read secret is installed.
	readable [levelApp + 1]bool
	// resetToken is the stateless reset token of our connection ID (our
	// Endpoint's, see Endpoint.ResetToken), sent in our transport
	// parameters; peerResetToken the peer's, from its authenticated ones,
	// which a reset must carry (handleReset). All zero: none (a
	// connection without an Endpoint), and a reset is never accepted.
	resetToken, peerResetToken [ResetTokenLen]byte
}
