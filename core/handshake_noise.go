package core

import (
	"crypto/hkdf"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/flynn/noise"

	"github.com/rudp-go/rudp/internal/testhooks"
)

// noiseHandshake is the pre-shared key handshake: Noise
// Noise_NNpsk0_25519_ChaChaPoly_SHA256 (github.com/flynn/noise), two
// messages, one round trip:
//
//	-> psk, e   payload: the client's transport parameters
//	<- e, ee    payload: the server's transport parameters
//
// NNpsk0 rather than NNpsk2: the PSK is mixed in before the first message,
// so the client's first message (and its payload) is authenticated by the
// key, and a server with another key refuses it at once, before any
// Diffie-Hellman of its own and before it sends anything; with psk2 the
// server would answer anyone first and the mismatch would show only at the
// client's second message. Forward secrecy comes from the ephemeral
// X25519 exchange (ee); the ephemeral keys come from the connection's
// random source.
//
// The prologue binds the protocol version and the client's connection ID
// ("rudp NNpsk0" || version u8 || client's SrcCID u64): a message replayed
// into another connection does not authenticate. The messages travel at
// levelInitial, each as a u16 length and the Noise message, in CRYPTO
// frames. When the second message is written (server) or read (client),
// both sides derive the levelApp traffic secrets from the split cipher
// states (noiseSecrets) and the handshake is complete.
type noiseHandshake struct {
	hs       *noise.HandshakeState
	out      handshakeOut
	server   bool
	local    []byte // our encoded transport parameters: the payload we send
	in       []byte // a Noise message being received (its length prefix first)
	done     bool
	received int    // the peer's messages read (one each way)
	suite    uint16 // the packet protection's: noiseSuite (a benchmark may set another: testhooks.PSKSuite)
}

// noiseSuite is the TLS cipher suite (AEAD and hash) of the packet
// protection a Noise handshake keys: AES-128-GCM, hardware-accelerated
// where Go runs fast, with the SHA-256 its secrets' length follows.
const noiseSuite = tls.TLS_AES_128_GCM_SHA256

// noiseMaxMessage bounds a Noise message's declared length: an ephemeral
// key, transport parameters of at most a HELLO's size, a tag.
const noiseMaxMessage = 512

var noiseCipherSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashSHA256)

// noisePrologue is what both sides' handshake hash starts from.
func noisePrologue(clientCID uint64) []byte {
	b := append([]byte("rudp NNpsk0"), Version)
	return binary.BigEndian.AppendUint64(b, clientCID)
}

func newNoiseHandshake(psk []byte, server bool, clientCID uint64, rng rand.Source, local []byte, out handshakeOut) (*noiseHandshake, error) {
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:           noiseCipherSuite,
		Random:                randReader{rng},
		Pattern:               noise.HandshakeNN,
		Initiator:             !server,
		Prologue:              noisePrologue(clientCID),
		PresharedKey:          psk,
		PresharedKeyPlacement: 0,
	})
	if err != nil {
		return nil, err
	}
	return &noiseHandshake{hs: hs, out: out, server: server, local: local, suite: noiseSuite}, nil
}

func (h *noiseHandshake) start(time.Time) error {
	if h.server {
		return nil
	}
	return h.write()
}

// write sends our next message; the second one (the server's) completes
// the handshake.
func (h *noiseHandshake) write() error {
	msg, cs1, cs2, err := h.hs.WriteMessage(nil, h.local)
	if err != nil {
		return handshakeError("noise: %w", err)
	}
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(msg)), uint16(len(msg)))
	h.out.writeCrypto(levelInitial, append(b, msg...))
	if cs1 != nil {
		return h.finish(cs1, cs2)
	}
	return nil
}

func (h *noiseHandshake) handleData(_ time.Time, l keyLevel, data []byte) error {
	if l != levelInitial || h.received == 1 {
		return handshakeError("noise: handshake data beyond its messages")
	}
	h.in = append(h.in, data...)
	for len(h.in) >= 2 {
		n := int(binary.BigEndian.Uint16(h.in))
		if n > noiseMaxMessage {
			return handshakeError("noise: a message of %d bytes, more than %d", n, noiseMaxMessage)
		}
		if len(h.in) < 2+n {
			return nil
		}
		msg := h.in[2 : 2+n]
		payload, cs1, cs2, err := h.hs.ReadMessage(nil, msg)
		if err != nil {
			if h.server {
				return handshakeError("the client's first message does not authenticate: the pre-shared keys differ")
			}
			return handshakeError("the server's answer does not authenticate: the pre-shared keys differ")
		}
		h.in = h.in[2+n:]
		h.received++
		p, err := parseTransportParams(payload)
		if err != nil {
			return handshakeError("the peer's transport parameters are malformed")
		}
		if err := h.out.peerParams(&p); err != nil {
			return err
		}
		if cs1 != nil {
			if len(h.in) > 0 {
				return handshakeError("noise: handshake data beyond its messages")
			}
			return h.finish(cs1, cs2)
		}
		if err := h.write(); err != nil {
			return err
		}
	}
	return nil
}

// finish derives the traffic secrets from the completed handshake and
// installs them at levelApp.
func (h *noiseHandshake) finish(cs1, cs2 *noise.CipherState) error {
	if s := testhooks.PSKSuite.Load(); s != 0 {
		h.suite = uint16(s) // (a benchmark of the other suites over sockets)
	}
	suite := suiteByID(h.suite)
	if suite == nil {
		return fmt.Errorf("rudp: testhooks.PSKSuite %#04x is no TLS 1.3 cipher suite packet protection supports", h.suite)
	}
	client, server := noiseSecrets(suite, h.hs.ChannelBinding(), cs1, cs2)
	read, write := server, client
	if h.server {
		read, write = client, server
	}
	if err := h.out.readSecret(levelApp, h.suite, read); err != nil {
		return err
	}
	if err := h.out.writeSecret(levelApp, h.suite, write); err != nil {
		return err
	}
	h.done = true
	h.in = nil
	return nil
}

// noiseSecrets derives the client's and the server's traffic secrets of
// suite s (32 bytes, SHA-256's length, for noiseSuite) from a completed
// Noise handshake: for each direction, HKDF with the suite's hash
// (SHA-256 for noiseSuite) and the handshake hash as the salt, the key of
// that direction's split cipher state (Noise's Split: cs1 is the
// initiator's, the client's, sending key) as the input key, and the info
// "rudp noise client secret" or "rudp noise server secret". The secrets
// then feed the packet protection's key schedule as TLS's would.
func noiseSecrets(s *cipherSuite, handshakeHash []byte, cs1, cs2 *noise.CipherState) (client, server []byte) {
	k1, k2 := cs1.UnsafeKey(), cs2.UnsafeKey()
	n := s.hash().Size()
	client, _ = hkdf.Key(s.hash, k1[:], handshakeHash, "rudp noise client secret", n)
	server, _ = hkdf.Key(s.hash, k2[:], handshakeHash, "rudp noise server secret", n)
	return client, server
}

func (h *noiseHandshake) complete() bool { return h.done }

// connectionState of a PSK handshake: complete, with the packet
// protection's suite; no certificates, no TLS version.
func (h *noiseHandshake) connectionState() tls.ConnectionState {
	return tls.ConnectionState{HandshakeComplete: h.done, CipherSuite: h.suite}
}

func (h *noiseHandshake) close() {}
