package core_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
	"github.com/rudp-go/rudp/internal/testcert"
)

// simTLS is a CA and the client's and server's TLS configs for the
// simulations, whose clock starts at sim.Epoch (the certificates are valid
// around it).
type simTLS struct {
	ca             *testcert.CA
	client, server *tls.Config
}

func newSimTLS(t testing.TB) *simTLS {
	t.Helper()
	from, to := sim.Epoch.AddDate(-1, 0, 0), sim.Epoch.AddDate(1, 0, 0)
	ca, err := testcert.NewCA("rudp sim CA", from, to)
	require.NoError(t, err)
	leaf, err := ca.Leaf([]string{"rudp.test"}, from, to)
	require.NoError(t, err)
	return &simTLS{ca: ca,
		client: &tls.Config{RootCAs: ca.Pool, ServerName: "rudp.test"},
		server: &tls.Config{Certificates: []tls.Certificate{leaf}}}
}

// protectedConfig is epSimConfig protected by tlsConfig or psk.
func protectedConfig(tlsConfig *tls.Config, psk []byte) *core.Config {
	c := *epSimConfig
	c.TLS, c.PSK = tlsConfig, psk
	return &c
}

// secureSim runs clients against a listener, the clients configured by
// ccfg and the listener by scfg, through link, until every client is
// established or ended. Every step checks that no connection is
// established, nor taken by the listener's application, before its
// cryptographic handshake completed.
func secureSim(t testing.TB, seed uint64, link sim.LinkConfig, clients int, ccfg, scfg *core.Config) (*epSim, error) {
	return secureSimWith(t, seed, link, clients, ccfg, core.EndpointConfig{Conn: scfg})
}

// secureSimWith is secureSim with the listener's EndpointConfig (its Conn
// the listener's config).
func secureSimWith(t testing.TB, seed uint64, link sim.LinkConfig, clients int, ccfg *core.Config, ecfg core.EndpointConfig) (*epSim, error) {
	s := newEpSimWith(t, seed, link, clients, ecfg, ccfg)
	s.server.accept = true
	protected := ecfg.Conn.Protection() != core.Plaintext
	s.server.send = func(c *core.Conn) {
		if protected && !c.ConnectionState().HandshakeComplete {
			s.server.fail("the listener's application took connection %x before its handshake completed", c.LocalCID())
		}
	}
	s.clients.send = func(i int, c *core.Conn) {
		if c.Established() && ccfg.Protection() != core.Plaintext && !c.ConnectionState().HandshakeComplete {
			s.server.fail("client %d is established before its handshake completed", i)
		}
	}
	// Until every client and every listener connection is established or
	// ended (a TLS server completes after its client).
	err := s.net.RunUntil(func() bool {
		if s.server.err != nil || !s.settled() {
			return s.server.err != nil
		}
		for _, c := range s.server.all {
			if !c.Established() && !c.Closed() {
				return false
			}
		}
		return true
	}, 2*time.Minute)
	if s.server.err != nil {
		return s, s.server.err
	}
	return s, err
}

// TestSimSecureHandshake: TLS and PSK handshakes of several clients at
// once through loss, duplication and reordering, over many seeds: every
// client gets exactly one connection, established on both sides only once
// the cryptographic handshake completed, with the peer's certificate (TLS).
func TestSimSecureHandshake(t *testing.T) {
	st := newSimTLS(t)
	psk := bytes.Repeat([]byte{0x5a}, 32)
	seeds := 20
	if testing.Short() {
		seeds = 4
	}
	for name, link := range epSimProfiles() {
		for _, mode := range []string{"TLS", "PSK"} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				ccfg, scfg := protectedConfig(st.client, nil), protectedConfig(st.server, nil)
				if mode == "PSK" {
					ccfg, scfg = protectedConfig(nil, psk), protectedConfig(nil, psk)
				}
				epSeeds(t, seeds, func(seed uint64) error {
					seedCrypto(t, seed) // (a TLS run is reproducible from its seed)
					s, err := secureSim(t, seed, link, 3, ccfg, scfg)
					if err != nil {
						return err
					}
					n, err := s.check()
					if err != nil {
						for i, c := range s.clients.conns {
							err = fmt.Errorf("%w; client %d: %v", err, i, c.Err())
						}
						for i, c := range s.server.all {
							err = fmt.Errorf("%w; listener's %d: %v", err, i, c.Err())
						}
						return err
					}
					if n != 3 {
						for i, c := range s.clients.conns {
							if c.Err() != nil {
								return fmt.Errorf("%d of 3 clients established; client %d: %v", n, i, c.Err())
							}
						}
						return fmt.Errorf("%d of 3 clients established", n)
					}
					for i, c := range s.clients.conns {
						cs := c.ConnectionState()
						switch {
						case !cs.HandshakeComplete:
							return fmt.Errorf("client %d: handshake not complete", i)
						case mode == "TLS" && (len(cs.PeerCertificates) != 1 || cs.ServerName != "rudp.test"):
							return fmt.Errorf("client %d: %d peer certificates, server name %q", i, len(cs.PeerCertificates), cs.ServerName)
						}
					}
					return nil
				})
			})
		}
	}
}

// TestSimSecureHandshakeRefused: each failure ends every client with an
// error matching ErrHandshakeFailed that says which, within a few round
// trips (not at the handshake timeout), and the listener keeps no
// connection for it.
func TestSimSecureHandshakeRefused(t *testing.T) {
	st := newSimTLS(t)
	other, err := testcert.NewCA("another CA", sim.Epoch.AddDate(-1, 0, 0), sim.Epoch.AddDate(1, 0, 0))
	require.NoError(t, err)
	psk1, psk2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	var certErr *tls.CertificateVerificationError
	link := sim.LinkConfig{Latency: 10 * time.Millisecond}
	for _, tc := range []struct {
		name       string
		ccfg, scfg *core.Config
		contains   string
		certErr    bool
	}{
		{"untrusted CA", protectedConfig(&tls.Config{RootCAs: other.Pool, ServerName: "rudp.test"}, nil), protectedConfig(st.server, nil), "unknown authority", true},
		{"wrong server name", protectedConfig(&tls.Config{RootCAs: st.ca.Pool, ServerName: "other.test"}, nil), protectedConfig(st.server, nil), "other.test", true},
		{"client certificate required", protectedConfig(st.client, nil), protectedConfig(&tls.Config{Certificates: st.server.Certificates,
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: st.ca.Pool}, nil), "the peer", false},
		{"wrong PSK", protectedConfig(nil, psk1), protectedConfig(nil, psk2), "pre-shared keys differ", false},
		{"TLS client, plaintext listener", protectedConfig(st.client, nil), epSimConfig, "the listener's mode is plaintext", false},
		{"PSK client, TLS listener", protectedConfig(nil, psk1), protectedConfig(st.server, nil), "the listener's mode is TLS", false},
		{"plaintext client, TLS listener", epSimConfig, protectedConfig(st.server, nil), "the listener's mode is TLS", false},
		{"plaintext client, PSK listener", epSimConfig, protectedConfig(nil, psk1), "the listener's mode is a pre-shared key", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seedCrypto(t, 1)
			s, err := secureSim(t, 1, link, 2, tc.ccfg, tc.scfg)
			require.NoError(t, err)
			for _, c := range s.clients.conns {
				require.True(t, c.Closed())
				require.ErrorIs(t, c.Err(), core.ErrHandshakeFailed)
				require.ErrorContains(t, c.Err(), tc.contains)
				require.Equal(t, tc.certErr, errors.As(c.Err(), &certErr), "errors.As(*tls.CertificateVerificationError): %v", c.Err())
			}
			require.Less(t, s.net.Now().Sub(sim.Epoch), time.Second, "refused in a few round trips, not at a timeout")
			// The listener's connections (if any were made) end too.
			require.NoError(t, s.net.RunUntil(func() bool {
				for _, c := range s.server.all {
					if !c.Closed() {
						return false
					}
				}
				return true
			}, time.Minute))
			for _, c := range s.server.all {
				require.ErrorIs(t, c.Err(), core.ErrHandshakeFailed)
				s.server.ep.Update(c)
			}
			require.Zero(t, s.server.ep.Len(), "the listener keeps no connection")
			require.Empty(t, s.server.taken, "and its application took none")
		})
	}
}
