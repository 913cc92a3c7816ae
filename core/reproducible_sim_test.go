package core_test

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// seedCrypto makes the process's implicit cryptographic randomness
// (crypto/rand, and what crypto/ecdh, crypto/ecdsa, crypto/mlkem draw
// themselves since Go 1.26, ignoring the rand they are passed) a stream
// from seed, for the rest of t (testing/cryptotest.SetGlobalRandom; t and
// its ancestors must not be parallel). A TLS handshake in the simulator is
// then reproducible from the seed; see TestSimSecureReproducible.
func seedCrypto(t *testing.T, seed uint64) {
	cryptotest.SetGlobalRandom(t, seed)
}

// transcript runs a protected handshake of two clients and a message each
// way through 5% loss, and returns the SHA-256 of every datagram the
// link carried, in order: the run's fingerprint, byte for byte.
func transcript(t *testing.T, seed uint64, ccfg, scfg *core.Config) [sha256.Size]byte {
	t.Helper()
	h := sha256.New()
	link := sim.LinkConfig{Latency: 10 * time.Millisecond, Loss: 0.05,
		Filter: func(_ time.Time, b []byte) bool { h.Write(b); return true }}
	s, err := secureSim(t, seed, link, 2, ccfg, scfg)
	require.NoError(t, err)
	for _, c := range s.clients.conns {
		require.True(t, c.Established(), "%v", c.Err())
		require.NoError(t, c.Send(core.Delivery, []byte("ping")))
		s.clients.set.touch(c)
	}
	require.NoError(t, s.net.RunFor(time.Second))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// TestSimSecureReproducible: what a seed reproduces of a protected
// simulation, byte for byte (every datagram on the link). A PSK run is
// reproducible from the seed alone: the Noise handshake draws its
// ephemeral keys from the connection's injected randomness. A TLS run is
// reproducible only with the process's implicit randomness seeded too
// (seedCrypto): since Go 1.26, crypto/tls passes tls.Config.Rand (the
// connection's) to crypto/ecdh, which ignores it for the X25519 share, and
// the ECDSA signature and the server's ML-KEM encapsulation draw from the
// process's source; only the hello randoms and the client's ML-KEM seed
// come from Config.Rand. Without seedCrypto two TLS runs of a seed differ
// in their bytes (logged), and may differ in their packets' sizes (an
// ECDSA signature's DER encoding varies by a byte or two).
func TestSimSecureReproducible(t *testing.T) {
	st := newSimTLS(t)
	psk := bytes.Repeat([]byte{0x5a}, 32)
	const seed = 7
	t.Run("PSK", func(t *testing.T) {
		a := transcript(t, seed, protectedConfig(nil, psk), protectedConfig(nil, psk))
		b := transcript(t, seed, protectedConfig(nil, psk), protectedConfig(nil, psk))
		require.Equal(t, a, b, "two PSK runs of one seed differ")
	})
	t.Run("TLS", func(t *testing.T) {
		ccfg, scfg := protectedConfig(st.client, nil), protectedConfig(st.server, nil)
		// Config.Rand alone (the connections' injected randomness): the
		// process's randomness is crypto/rand's.
		a := transcript(t, seed, ccfg, scfg)
		b := transcript(t, seed, ccfg, scfg)
		require.NotEqual(t, a, b, "two TLS runs of one seed are equal without seedCrypto: crypto/tls takes Config.Rand for all its randomness again, and the core's docs (Config.TLS) should say so")
		seedCrypto(t, seed)
		a = transcript(t, seed, ccfg, scfg)
		seedCrypto(t, seed)
		b = transcript(t, seed, ccfg, scfg)
		require.Equal(t, a, b, "two TLS runs of one seed, the process's randomness seeded, differ")
	})
}
