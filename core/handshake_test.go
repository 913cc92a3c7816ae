package core

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rudp-go/rudp/internal/testcert"
	"github.com/rudp-go/rudp/internal/testhooks"
)

// hsSide is one side of a handshake driven in memory: it keeps what the
// handshake hands out (CRYPTO streams per level, secrets, the peer's
// transport parameters), as a connection does.
type hsSide struct {
	h          handshaker
	streams    [3]cryptoStream
	read       [3][]byte
	write      [3][]byte
	readSuite  [3]uint16
	writeSuite [3]uint16
	params     *transportParams
	err        error
}

func (s *hsSide) writeCrypto(l keyLevel, p []byte) { s.streams[l].write(p) }

func (s *hsSide) readSecret(l keyLevel, suite uint16, secret []byte) error {
	s.read[l], s.readSuite[l] = slices.Clone(secret), suite
	return nil
}

func (s *hsSide) writeSecret(l keyLevel, suite uint16, secret []byte) error {
	s.write[l], s.writeSuite[l] = slices.Clone(secret), suite
	return nil
}

func (s *hsSide) peerParams(p *transportParams) error {
	cp := *p
	cp.hello.Cookie = slices.Clone(p.hello.Cookie)
	s.params = &cp
	return nil
}

// hsPacket is one CRYPTO frame in flight.
type hsPacket struct {
	level keyLevel
	r     byteRange
	b     []byte
}

// pumpHandshake runs the handshake between client and server through a
// link that loses, duplicates and reorders the CRYPTO frames with the
// given probability each, until both completed and nothing is owed, or a
// side failed; it returns the first error and the rounds it took. A frame
// at a level whose read secret the receiver does not have yet is lost (a
// packet it cannot open), as on the wire.
func pumpHandshake(t *testing.T, rng *rand.Rand, client, server *hsSide, p float64, frameSize int) (int, error) {
	t.Helper()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	if err := client.h.start(now); err != nil {
		return 0, err
	}
	if err := server.h.start(now); err != nil {
		return 0, err
	}
	for round := 1; round <= 200; round++ {
		progress := false
		for _, dir := range [2][2]*hsSide{{client, server}, {server, client}} {
			from, to := dir[0], dir[1]
			var flight []hsPacket
			for l := levelInitial; l <= levelApp; l++ {
				for from.streams[l].pending() {
					buf := make([]byte, frameSize)
					n, r := from.streams[l].appendFrame(buf, 0, frameSize, l)
					require.NotZero(t, n, "a frame fits in %d bytes", frameSize)
					flight = append(flight, hsPacket{l, r, buf[:n]})
					if rng.Float64() < p {
						flight = append(flight, flight[len(flight)-1]) // duplicated
					}
				}
			}
			if len(flight) > 0 {
				progress = true
			}
			if rng.Float64() < p {
				rng.Shuffle(len(flight), func(i, j int) { flight[i], flight[j] = flight[j], flight[i] })
			}
			for _, pkt := range flight {
				if rng.Float64() < p || (pkt.level != levelInitial && to.read[pkt.level] == nil) {
					from.streams[pkt.level].onLost(pkt.r)
					continue
				}
				var f frame
				n, err := decodeCrypto(pkt.b, &f)
				require.NoError(t, err)
				require.Equal(t, len(pkt.b), n)
				l := pkt.level
				ok, err := to.streams[l].receive(&f.crypto, func(d []byte) error { return to.h.handleData(now, l, d) })
				if err != nil {
					to.err = err
					return round, err
				}
				if ok {
					from.streams[l].onAcked(pkt.r)
				} else {
					from.streams[l].onLost(pkt.r)
				}
			}
		}
		if !progress && client.h.complete() && server.h.complete() {
			return round, nil
		}
		now = now.Add(10 * time.Millisecond)
	}
	return 200, errors.New("the handshake did not complete in 200 rounds")
}

// testParams are a side's transport parameters.
func testParams(server bool, cid uint64, cookie []byte) []byte {
	return appendTransportParams(nil, &transportParams{server: server, hello: HelloFrame{
		SrcCID: cid, InitialSeq: uint32(cid), MaxData: 1 << 20, MaxAckDelay: 1000,
		MaxMessageSize: 1 << 20, MaxDatagramSize: 1452, Cookie: cookie,
	}})
}

// tlsPair makes a TLS client and server over the two configs.
func tlsPair(rng *rand.Rand, cc, sc *tls.Config) (client, server *hsSide) {
	client, server = new(hsSide), new(hsSide)
	client.h = newTLSHandshake(cc, false, rng, testParams(false, 11, []byte("cookie")), client)
	server.h = newTLSHandshake(sc, true, rng, testParams(true, 22, []byte("cookie")), server)
	return client, server
}

// noisePair makes a PSK client and server over the two keys.
func noisePair(t *testing.T, rng *rand.Rand, ck, sk []byte) (client, server *hsSide) {
	client, server = new(hsSide), new(hsSide)
	var err error
	client.h, err = newNoiseHandshake(ck, false, 11, rng, testParams(false, 11, []byte("cookie")), client)
	require.NoError(t, err)
	server.h, err = newNoiseHandshake(sk, true, 11, rng, testParams(true, 22, []byte("cookie")), server)
	require.NoError(t, err)
	return client, server
}

// testTLS is a CA, a server certificate for "rudp.test" and the configs of
// a client that trusts the CA and of the server.
type testTLS struct {
	ca     *testcert.CA
	client *tls.Config
	server *tls.Config
}

func newTestTLS(t *testing.T) *testTLS {
	t.Helper()
	from, to := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := testcert.NewCA("rudp test CA", from, to)
	require.NoError(t, err)
	leaf, err := ca.Leaf([]string{"rudp.test"}, from, to)
	require.NoError(t, err)
	return &testTLS{
		ca:     ca,
		client: &tls.Config{RootCAs: ca.Pool, ServerName: "rudp.test"},
		server: &tls.Config{Certificates: []tls.Certificate{leaf}},
	}
}

// checkKeys asserts that both sides completed with matching secrets at
// every level they keyed, and the peer's transport parameters.
func checkKeys(t *testing.T, client, server *hsSide) {
	t.Helper()
	require.True(t, client.h.complete())
	require.True(t, server.h.complete())
	for l := levelHandshake; l <= levelApp; l++ {
		require.Equal(t, client.write[l], server.read[l], "level %d client to server", l)
		require.Equal(t, server.write[l], client.read[l], "level %d server to client", l)
		require.Equal(t, client.writeSuite[l], server.readSuite[l])
	}
	require.Len(t, client.write[levelApp], 32)
	require.NotEqual(t, client.write[levelApp], client.read[levelApp])
	require.NotNil(t, client.params)
	require.NotNil(t, server.params)
	require.True(t, client.params.server)
	require.False(t, server.params.server)
	require.Equal(t, uint64(22), client.params.hello.SrcCID)
	require.Equal(t, uint64(11), server.params.hello.SrcCID)
	require.Equal(t, []byte("cookie"), server.params.hello.Cookie)
	for _, s := range []*hsSide{client, server} {
		for l := range s.streams {
			require.False(t, s.streams[l].pending())
			require.Nil(t, s.streams[l].held, "level %d holds nothing once done", l)
		}
	}
}

// TestHandshakeInMemory runs both handshakes through a clean link and
// through one losing, duplicating and reordering 20% of the CRYPTO frames,
// over many seeds, with frames small enough that every flight spans
// several: both sides complete with the same secrets and each other's
// transport parameters.
func TestHandshakeInMemory(t *testing.T) {
	defer goleak.VerifyNone(t)
	tt := newTestTLS(t)
	psk := bytes.Repeat([]byte{7}, 32)
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	for _, p := range []float64{0, 0.2} {
		for seed := range uint64(seeds) {
			rng := rand.New(rand.NewPCG(seed, 1))
			frame := 200 + rng.IntN(1000)
			client, server := tlsPair(rng, tt.client, tt.server)
			_, err := pumpHandshake(t, rng, client, server, p, frame)
			require.NoError(t, err, "TLS seed %d loss %v", seed, p)
			checkKeys(t, client, server)
			cs := client.h.connectionState()
			require.Equal(t, uint16(tls.VersionTLS13), cs.Version)
			require.Len(t, cs.PeerCertificates, 1)
			client.h.close()
			server.h.close()

			client, server = noisePair(t, rng, psk, psk)
			_, err = pumpHandshake(t, rng, client, server, p, frame)
			require.NoError(t, err, "PSK seed %d loss %v", seed, p)
			checkKeys(t, client, server)
			require.Equal(t, uint16(noiseSuite), client.h.connectionState().CipherSuite)
		}
	}
}

// TestHandshakeSizes reports each handshake's flights: the bytes each side
// sends and the round trips, on a clean link.
func TestHandshakeSizes(t *testing.T) {
	defer goleak.VerifyNone(t)
	tt := newTestTLS(t)
	rng := rand.New(rand.NewPCG(1, 2))
	client, server := tlsPair(rng, tt.client, tt.server)
	sizes := func(s *hsSide) (n [3]uint64) {
		for l := range s.streams {
			n[l] = s.streams[l].outBase
		}
		return n
	}
	rounds, err := pumpHandshake(t, rng, client, server, 0, 1100)
	require.NoError(t, err)
	c, s := sizes(client), sizes(server)
	t.Logf("TLS: %d rounds; client initial %d handshake %d bytes; server initial %d handshake %d bytes", rounds, c[0], c[1], s[0], s[1])
	require.Greater(t, c[0], uint64(1200), "Go's ClientHello with its post-quantum key share spans datagrams")
	client.h.close()
	server.h.close()

	client, server = noisePair(t, rng, make([]byte, 32), make([]byte, 32))
	rounds, err = pumpHandshake(t, rng, client, server, 0, 1100)
	require.NoError(t, err)
	c, s = sizes(client), sizes(server)
	t.Logf("PSK: %d rounds; client %d bytes, server %d bytes", rounds, c[0], s[0])
	require.Less(t, c[0], uint64(200))
}

// TestHandshakeFailures: each failure fails the side that finds it with an
// error matching ErrHandshakeFailed and saying which (crypto/tls's error
// wrapped, so errors.As finds it); the crypto/tls goroutines end.
func TestHandshakeFailures(t *testing.T) {
	defer goleak.VerifyNone(t)
	tt := newTestTLS(t)
	other, err := testcert.NewCA("another CA", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	expired, err := tt.ca.Leaf([]string{"rudp.test"}, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	var certErr *tls.CertificateVerificationError
	for _, tc := range []struct {
		name     string
		client   func(c *tls.Config)
		server   func(c *tls.Config)
		failing  string // "client" or "server": the side that finds it
		contains string
		certErr  bool
	}{
		{name: "untrusted CA", client: func(c *tls.Config) { c.RootCAs = other.Pool }, failing: "client", contains: "unknown authority", certErr: true},
		{name: "wrong server name", client: func(c *tls.Config) { c.ServerName = "other.test" }, failing: "client", contains: "other.test", certErr: true},
		{name: "expired certificate", server: func(c *tls.Config) { c.Certificates = []tls.Certificate{expired} }, failing: "client", contains: "expired", certErr: true},
		{name: "client certificate missing", server: func(c *tls.Config) {
			c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, tt.ca.Pool
		}, failing: "server", contains: "certificate"},
		{name: "no common ALPN", client: func(c *tls.Config) { c.NextProtos = []string{"a"} }, server: func(c *tls.Config) { c.NextProtos = []string{"b"} }, failing: "server", contains: "protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := tt.client.Clone(), tt.server.Clone()
			if tc.client != nil {
				tc.client(cc)
			}
			if tc.server != nil {
				tc.server(sc)
			}
			client, server := tlsPair(rand.New(rand.NewPCG(3, 4)), cc, sc)
			defer client.h.close()
			defer server.h.close()
			_, err := pumpHandshake(t, rand.New(rand.NewPCG(5, 6)), client, server, 0, 1100)
			require.ErrorIs(t, err, ErrHandshakeFailed)
			require.ErrorContains(t, err, tc.contains)
			failing := map[string]*hsSide{"client": client, "server": server}[tc.failing]
			require.Equal(t, err, failing.err, "found by the %s", tc.failing)
			require.Equal(t, tc.certErr, errors.As(err, &certErr), "errors.As(*tls.CertificateVerificationError)")
			var alert tls.AlertError
			require.True(t, errors.As(err, &alert), "errors.As(tls.AlertError): the alert the peer is told")
		})
	}
	t.Run("wrong PSK", func(t *testing.T) {
		client, server := noisePair(t, rand.New(rand.NewPCG(3, 4)), bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32))
		_, err := pumpHandshake(t, rand.New(rand.NewPCG(5, 6)), client, server, 0, 1100)
		require.ErrorIs(t, err, ErrHandshakeFailed)
		require.ErrorContains(t, err, "pre-shared keys differ")
		require.Equal(t, err, server.err, "the server finds it at the first message")
		require.Nil(t, server.write[levelApp], "and keys nothing")
	})
	t.Run("PSK prologue binds the client's ID", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		key := bytes.Repeat([]byte{1}, 32)
		client, server := new(hsSide), new(hsSide)
		client.h, err = newNoiseHandshake(key, false, 11, rng, testParams(false, 11, nil), client)
		require.NoError(t, err)
		server.h, err = newNoiseHandshake(key, true, 12, rng, testParams(true, 22, nil), server)
		require.NoError(t, err)
		_, err := pumpHandshake(t, rng, client, server, 0, 1100)
		require.ErrorIs(t, err, ErrHandshakeFailed)
		require.Equal(t, err, server.err)
	})
}

// TestCryptoFrame: the CRYPTO frame re-encodes to its own bytes, every
// shorter prefix fails, and an end beyond maxCryptoOffset is refused.
func TestCryptoFrame(t *testing.T) {
	for _, tc := range []struct {
		off  uint64
		data []byte
	}{{0, nil}, {0, []byte("client hello")}, {1 << 14, bytes.Repeat([]byte{9}, 300)}, {maxCryptoOffset - 1, []byte{1}}} {
		b := appendCryptoFrame(nil, levelHandshake, tc.off, tc.data)
		var f frame
		n, err := decodeCrypto(b, &f)
		require.NoError(t, err)
		require.Equal(t, len(b), n)
		require.Equal(t, tc.off, f.crypto.offset)
		require.Equal(t, levelHandshake, f.crypto.level)
		require.Equal(t, len(tc.data), len(f.crypto.data))
		for i := 1; i < len(b); i++ { // (decoders see at least the type byte)
			_, err := decodeCrypto(b[:i], &f)
			require.Error(t, err, "prefix of %d bytes", i)
		}
	}
	var f frame
	_, err := decodeCrypto(appendCryptoFrame(nil, levelApp, maxCryptoOffset, []byte{1}), &f)
	require.ErrorIs(t, err, errBadFrame)
	_, err = decodeCrypto([]byte{frameCrypto, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, &f)
	require.ErrorIs(t, err, errBadFrame)
	_, err = decodeCrypto(appendCryptoFrame(nil, levelApp+1, 0, []byte{1}), &f)
	require.ErrorIs(t, err, errBadFrame, "no such level")
}

// TestCryptoStream: bytes written arrive once each, in order, through
// frames lost, duplicated and reordered; the sender forgets what was
// acknowledged; a frame ending beyond the window is refused and nothing
// is held for it.
func TestCryptoStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	want := make([]byte, 20000)
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	for seed := range 50 {
		rng := rand.New(rand.NewPCG(uint64(seed), 9))
		var tx, rx cryptoStream
		tx.write(want[:7000])
		tx.write(want[7000:])
		var got []byte
		deliver := func(d []byte) error { got = append(got, d...); return nil }
		for rounds := 0; tx.pending() || tx.outBase < uint64(len(want)); rounds++ {
			require.Less(t, rounds, 1000)
			var flight []hsPacket
			for tx.pending() {
				buf := make([]byte, 100+rng.IntN(1500))
				n, r := tx.appendFrame(buf, 0, len(buf), levelInitial)
				flight = append(flight, hsPacket{r: r, b: buf[:n]})
			}
			rng.Shuffle(len(flight), func(i, j int) { flight[i], flight[j] = flight[j], flight[i] })
			for _, p := range flight {
				if rng.IntN(4) == 0 {
					tx.onLost(p.r)
					continue
				}
				var f frame
				_, err := decodeCrypto(p.b, &f)
				require.NoError(t, err)
				for range 1 + rng.IntN(2) { // sometimes twice
					ok, err := rx.receive(&f.crypto, deliver)
					require.NoError(t, err)
					require.True(t, ok)
				}
				tx.onAcked(p.r)
			}
		}
		require.Equal(t, want, got, "seed %d", seed)
		require.Nil(t, tx.out)
		require.Nil(t, rx.held)
	}

	var rx cryptoStream
	f := cryptoFrame{offset: cryptoWindow - 10, data: make([]byte, 11)}
	ok, err := rx.receive(&f, func([]byte) error { t.Fatal("delivered"); return nil })
	require.NoError(t, err)
	require.False(t, ok, "beyond the window: refused")
	require.Nil(t, rx.held)
	f.data = f.data[:10]
	ok, _ = rx.receive(&f, func([]byte) error { t.Fatal("delivered"); return nil })
	require.True(t, ok, "up to the window: held")
	require.Len(t, rx.held, cryptoWindow)
}

// TestTransportParams: the encoding round-trips, every shorter prefix and
// a longer input fail, and matchHello finds each kind of difference.
func TestTransportParams(t *testing.T) {
	p := transportParams{server: true, hello: HelloFrame{SrcCID: 5, InitialSeq: 6, MaxData: 7, MaxAckDelay: 8,
		MaxMessageSize: 9, MaxDatagramSize: 1452, Cookie: []byte("cookie")}}
	copy(p.resetToken[:], "the reset token!")
	b := appendTransportParams(nil, &p)
	require.Equal(t, "the reset token!", string(b[len(b)-ResetTokenLen:]), "the token ends the parameters")
	got, err := parseTransportParams(b)
	require.NoError(t, err)
	require.Equal(t, p, got)
	for i := range b {
		_, err := parseTransportParams(b[:i])
		require.Error(t, err, "prefix of %d bytes", i)
	}
	_, err = parseTransportParams(append(b, 0))
	require.Error(t, err)

	h := p.hello
	require.NoError(t, p.matchHello(&h, true))
	h.MaxData = 1 << 30 // credit grows: not compared
	h.Cookie = nil      // the client checks the cookie (Conn.peerParams)
	require.NoError(t, p.matchHello(&h, true))
	require.ErrorIs(t, p.matchHello(&h, false), ErrHandshakeFailed)
	h.Protection = ProtectionTLS // a downgrade (or upgrade) in the clear
	require.ErrorIs(t, p.matchHello(&h, true), ErrHandshakeFailed)
	h.Protection = Plaintext
	h.MaxDatagramSize = 1400
	require.ErrorIs(t, p.matchHello(&h, true), ErrHandshakeFailed)
}

func FuzzCryptoFrame(f *testing.F) {
	f.Add(appendCryptoFrame(nil, levelInitial, 0, []byte("hello")))
	f.Add(appendCryptoFrame(nil, levelHandshake, 70000, []byte{1, 2, 3}))
	f.Add([]byte{frameCrypto, 0, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != frameCrypto {
			return // (decodeFrame dispatches on the type byte)
		}
		var fr frame
		n, err := decodeCrypto(b, &fr)
		if err != nil {
			return
		}
		if end := fr.crypto.offset + uint64(len(fr.crypto.data)); end > maxCryptoOffset {
			t.Fatalf("end %d accepted", end)
		}
		if again := appendCryptoFrame(nil, fr.crypto.level, fr.crypto.offset, fr.crypto.data); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
		// Whatever the frame says, a receiver holds at most its window.
		var rx cryptoStream
		if _, err := rx.receive(&fr.crypto, func([]byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if len(rx.held) > cryptoWindow {
			t.Fatalf("holds %d bytes", len(rx.held))
		}
	})
}

func FuzzTransportParams(f *testing.F) {
	f.Add(testParams(false, 1, nil))
	f.Add(testParams(true, 2, []byte("cookie")))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseTransportParams(b)
		if err != nil {
			return
		}
		if again := appendTransportParams(nil, &p); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
		}
	})
}

// FuzzNoiseMessages feeds a PSK server's handshake arbitrary bytes as the
// client's first flight (the u16-length framing and the Noise message):
// it fails the handshake or completes it, never panics, and holds no more
// than one message's worth.
func FuzzNoiseMessages(f *testing.F) {
	psk := bytes.Repeat([]byte{7}, 32)
	client := new(hsSide)
	h, err := newNoiseHandshake(psk, false, 11, rand.New(rand.NewPCG(1, 2)), testParams(false, 11, nil), client)
	if err != nil {
		f.Fatal(err)
	}
	client.h = h
	if err := h.start(time.Time{}); err != nil {
		f.Fatal(err)
	}
	first := client.streams[levelInitial].out
	f.Add(bytes.Clone(first))
	f.Add(first[:len(first)/2])
	f.Add([]byte{0xff, 0xff, 1, 2, 3})
	f.Add(append(bytes.Clone(first), 0, 1, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		server := new(hsSide)
		h, err := newNoiseHandshake(psk, true, 11, rand.New(rand.NewPCG(3, 4)), testParams(true, 22, nil), server)
		if err != nil {
			t.Fatal(err)
		}
		server.h = h
		if err := h.handleData(time.Time{}, levelInitial, b); err != nil {
			if !errors.Is(err, ErrHandshakeFailed) {
				t.Fatalf("an error not matching ErrHandshakeFailed: %v", err)
			}
			return
		}
		if len(h.in) > 2+noiseMaxMessage {
			t.Fatalf("holds %d bytes", len(h.in))
		}
	})
}

// TestPSKSuiteHook: testhooks.PSKSuite (how BenchmarkBulkProtected measures
// every suite over sockets) makes a PSK handshake key that suite, with
// secrets of its hash's length, both sides alike; unset, the suite is
// noiseSuite again.
func TestPSKSuiteHook(t *testing.T) {
	defer goleak.VerifyNone(t)
	psk := bytes.Repeat([]byte{7}, 32)
	for _, suite := range append(slices.Clone(testSuites), 0) {
		t.Run(fmt.Sprintf("%#04x", suite), func(t *testing.T) {
			restore := testhooks.SetPSKSuite(suite)
			defer restore()
			want := suite
			if suite == 0 {
				want = noiseSuite
			}
			rng := rand.New(rand.NewPCG(1, 2))
			client, server := noisePair(t, rng, psk, psk)
			_, err := pumpHandshake(t, rng, client, server, 0, 1000)
			require.NoError(t, err)
			for _, s := range []*hsSide{client, server} {
				require.Equal(t, want, s.h.connectionState().CipherSuite)
				require.Equal(t, want, s.writeSuite[levelApp])
				require.Equal(t, want, s.readSuite[levelApp])
				require.Len(t, s.write[levelApp], suiteByID(want).hash().Size())
			}
			require.Equal(t, client.write[levelApp], server.read[levelApp])
			require.Equal(t, server.write[levelApp], client.read[levelApp])
		})
	}
}
