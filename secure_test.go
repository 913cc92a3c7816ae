package rudp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/internal/testcert"
)

// secureSetup is a CA made for the test, a server certificate it signs
// for "rudp.test", and the configs of a client that trusts the CA and of
// the server.
type secureSetup struct {
	ca             *testcert.CA
	client, server *tls.Config
	psk            []byte
}

func newSecureSetup(t testing.TB) *secureSetup {
	t.Helper()
	from, to := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	ca, err := testcert.NewCA("rudp test CA", from, to)
	require.NoError(t, err)
	leaf, err := ca.Leaf([]string{"rudp.test"}, from, to)
	require.NoError(t, err)
	return &secureSetup{ca: ca,
		client: &tls.Config{RootCAs: ca.Pool, ServerName: "rudp.test"},
		server: &tls.Config{Certificates: []tls.Certificate{leaf}},
		psk:    bytes.Repeat([]byte{0x42}, 32)}
}

// relayCapture is a UDP relay between a client and a server that keeps every
// datagram it passes, both ways.
type relayCapture struct {
	conn   *net.UDPConn
	server *net.UDPAddr
	mu     sync.Mutex
	seen   [][]byte
	done   chan struct{}
}

func newCapture(t testing.TB, server net.Addr) *relayCapture {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	c := &relayCapture{conn: conn, server: server.(*net.UDPAddr), done: make(chan struct{})}
	go c.run()
	t.Cleanup(func() {
		conn.Close()
		<-c.done
	})
	return c
}

func (c *relayCapture) run() {
	defer close(c.done)
	var client *net.UDPAddr
	buf := make([]byte, 65536)
	for {
		n, from, err := c.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		c.mu.Lock()
		c.seen = append(c.seen, bytes.Clone(buf[:n]))
		c.mu.Unlock()
		to := c.server
		if from.Port == c.server.Port && from.IP.Equal(c.server.IP) {
			to = client
		} else {
			client = from
		}
		if to != nil {
			c.conn.WriteToUDP(buf[:n], to)
		}
	}
}

// all is every byte the relay passed.
func (c *relayCapture) all() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Join(c.seen, nil)
}

// TestSecureTransfer: TLS and PSK connections carry data both ways
// (an echo), report their handshake in ConnectionState, and a capture of
// the transfer (a relay's copy of every datagram, both ways) holds none of
// the plaintext, which a plaintext connection's capture shows.
func TestSecureTransfer(t *testing.T) {
	s := newSecureSetup(t)
	for _, tc := range []struct {
		name           string
		client, server *rudp.Config
	}{
		{"TLS", &rudp.Config{TLS: s.client}, &rudp.Config{TLS: s.server}},
		{"PSK", &rudp.Config{PSK: s.psk}, &rudp.Config{PSK: s.psk}},
		{"plaintext", nil, nil}, // the control: the capture shows it
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := rudp.Listen("udp", "127.0.0.1:0", tc.server)
			require.NoError(t, err)
			defer ln.Close()
			served := make(chan error, 1)
			go func() {
				c, err := ln.AcceptRUDP()
				if err != nil {
					served <- err
					return
				}
				defer c.Close()
				if tc.server != nil && !c.ConnectionState().HandshakeComplete {
					served <- errors.New("accepted before the handshake completed")
					return
				}
				_, err = io.Copy(c, c)
				served <- err
			}()
			relay := newCapture(t, ln.Addr())
			c, err := rudp.Dial("udp", relay.conn.LocalAddr().String(), tc.client)
			require.NoError(t, err)
			cs := c.ConnectionState()
			require.Equal(t, tc.client != nil, cs.HandshakeComplete)
			if tc.name == "TLS" {
				require.Len(t, cs.PeerCertificates, 1)
				require.Equal(t, "rudp.test", cs.PeerCertificates[0].Subject.CommonName)
			}
			msg := bytes.Repeat([]byte("the plaintext nobody on the path may read. "), 3000)
			go func() {
				c.Write(msg)
				c.CloseWrite()
			}()
			got, err := io.ReadAll(c)
			require.NoError(t, err)
			require.Equal(t, msg, got)
			require.NoError(t, c.Close())
			require.NoError(t, <-served)
			captured := relay.all()
			require.Greater(t, len(captured), 2*len(msg), "the relay saw the transfer both ways")
			require.Equal(t, tc.client == nil, bytes.Contains(captured, []byte("the plaintext nobody")), "the capture holds the plaintext")
		})
	}
}

// TestSecureRefused: every failed handshake fails Dial with an error
// matching ErrHandshakeFailed that says which (wrapping crypto/tls's
// error where it applies), in both directions, and the listener keeps no
// connection for it.
func TestSecureRefused(t *testing.T) {
	s := newSecureSetup(t)
	other, err := testcert.NewCA("another CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	require.NoError(t, err)
	expired, err := s.ca.Leaf([]string{"rudp.test"}, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	require.NoError(t, err)
	var certErr *tls.CertificateVerificationError
	for _, tc := range []struct {
		name           string
		client, server *rudp.Config
		contains       string
		certErr        bool
	}{
		{"untrusted CA", &rudp.Config{TLS: &tls.Config{RootCAs: other.Pool, ServerName: "rudp.test"}}, &rudp.Config{TLS: s.server}, "unknown authority", true},
		{"wrong server name", &rudp.Config{TLS: &tls.Config{RootCAs: s.ca.Pool, ServerName: "other.test"}}, &rudp.Config{TLS: s.server}, "other.test", true},
		{"expired certificate", &rudp.Config{TLS: s.client}, &rudp.Config{TLS: &tls.Config{Certificates: []tls.Certificate{expired}}}, "expired", true},
		{"client certificate missing", &rudp.Config{TLS: s.client}, &rudp.Config{TLS: &tls.Config{Certificates: s.server.Certificates,
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: s.ca.Pool}}, "certificate", false},
		{"wrong PSK", &rudp.Config{PSK: bytes.Repeat([]byte{1}, 32)}, &rudp.Config{PSK: s.psk}, "pre-shared keys differ", false},
		{"TLS client, plaintext listener", &rudp.Config{TLS: s.client}, nil, "the listener's mode is plaintext", false},
		{"PSK client, plaintext listener", &rudp.Config{PSK: s.psk}, nil, "the listener's mode is plaintext", false},
		{"plaintext client, TLS listener", nil, &rudp.Config{TLS: s.server}, "the listener's mode is TLS", false},
		{"plaintext client, PSK listener", nil, &rudp.Config{PSK: s.psk}, "the listener's mode is a pre-shared key", false},
		{"PSK client, TLS listener", &rudp.Config{PSK: s.psk}, &rudp.Config{TLS: s.server}, "the listener's mode is TLS", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := rudp.Listen("udp", "127.0.0.1:0", tc.server)
			require.NoError(t, err)
			defer ln.Close()
			accepted := make(chan *rudp.Conn, 1)
			go func() {
				if c, err := ln.AcceptRUDP(); err == nil {
					accepted <- c
					c.Close()
				}
			}()
			_, err = rudp.Dial("udp", ln.Addr().String(), tc.client)
			require.ErrorIs(t, err, rudp.ErrHandshakeFailed)
			require.ErrorContains(t, err, tc.contains)
			require.Equal(t, tc.certErr, errors.As(err, &certErr), "errors.As(*tls.CertificateVerificationError): %v", err)
			// The listener's side ends too (at once, or when the client's
			// CLOSE arrives) and is forgotten.
			require.Eventually(t, func() bool { return rudp.ListenerConns(ln) == 0 }, 10*time.Second, 5*time.Millisecond,
				"the listener keeps a connection: %s", rudp.DebugListener(ln))
			select {
			case c := <-accepted:
				t.Fatalf("the listener's application took a connection (%v)", c.RemoteAddr())
			default:
			}
		})
	}
}

// TestSecureConfig: a bad key or both key sources are errors naming the
// field.
func TestSecureConfig(t *testing.T) {
	_, err := rudp.Dial("udp", "127.0.0.1:9", &rudp.Config{PSK: []byte("short")})
	var ce *rudp.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "PSK", ce.Field)
	require.NotContains(t, err.Error(), "short", "the key's bytes are never shown")
	_, err = rudp.Listen("udp", "127.0.0.1:0", &rudp.Config{PSK: make([]byte, 32), TLS: &tls.Config{}})
	require.ErrorAs(t, err, &ce)
	require.Contains(t, err.Error(), "TLS")
	require.Contains(t, err.Error(), "PSK")
	_, err = rudp.Listen("udp", "127.0.0.1:0", &rudp.Config{TLS: &tls.Config{MaxVersion: tls.VersionTLS12}})
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "TLS.MaxVersion", ce.Field)
}

// TestSecurePacketConn: two PacketConns with the same pre-shared key
// exchange datagrams over protected connections; one with another key
// reaches nobody (its WriteTo reports the failed handshake).
func TestSecurePacketConn(t *testing.T) {
	s := newSecureSetup(t)
	a, err := rudp.ListenPacket("udp", "127.0.0.1:0", &rudp.Config{PSK: s.psk})
	require.NoError(t, err)
	defer a.Close()
	b, err := rudp.ListenPacket("udp", "127.0.0.1:0", &rudp.Config{PSK: s.psk})
	require.NoError(t, err)
	defer b.Close()
	_, err = a.WriteTo([]byte("ping"), b.LocalAddr())
	require.NoError(t, err)
	buf := make([]byte, 64)
	require.NoError(t, b.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, from, err := b.ReadFrom(buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf[:n]))
	_, err = b.WriteTo([]byte("pong"), from)
	require.NoError(t, err)
	require.NoError(t, a.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, _, err = a.ReadFrom(buf)
	require.NoError(t, err)
	require.Equal(t, "pong", string(buf[:n]))

	stranger, err := rudp.ListenPacket("udp", "127.0.0.1:0", &rudp.Config{PSK: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	defer stranger.Close()
	require.Eventually(t, func() bool {
		_, err := stranger.WriteTo([]byte("let me in"), b.LocalAddr())
		return errors.Is(err, rudp.ErrHandshakeFailed)
	}, 10*time.Second, 10*time.Millisecond, "the stranger's WriteTo reports the failed handshake")
}

// TestSecureServerName: a client whose tls.Config has no ServerName
// verifies the server's certificate against the host it dialed, as
// tls.Dial does: "localhost" (Dial, a Dialer, Listener.Dial) and an IP
// literal (the certificate's IP address). The caller's tls.Config is not
// changed. A certificate for another name fails, naming the dialed host.
func TestSecureServerName(t *testing.T) {
	s := newSecureSetup(t)
	leaf, err := s.ca.Leaf([]string{"localhost", "127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	require.NoError(t, err)
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", &rudp.Config{TLS: &tls.Config{Certificates: []tls.Certificate{leaf}}})
	require.NoError(t, err)
	defer ln.Close()
	go closeAccepted(ln)
	port := ln.Addr().(*net.UDPAddr).Port
	clientTLS := &tls.Config{RootCAs: s.ca.Pool}
	cfg := &rudp.Config{TLS: clientTLS}
	via, err := rudp.Listen("udp4", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	defer via.Close()
	for _, tc := range []struct {
		name, host string
		dial       func(addr string) (net.Conn, error)
	}{
		{"Dial", "localhost", func(addr string) (net.Conn, error) { return rudp.Dial("udp4", addr, cfg) }},
		{"Dialer", "localhost", func(addr string) (net.Conn, error) {
			return (&rudp.Dialer{Config: cfg}).DialContext(context.Background(), "tcp4", addr)
		}},
		{"Listener.Dial", "localhost", func(addr string) (net.Conn, error) { return via.Dial("udp4", addr) }},
		{"IP literal", "127.0.0.1", func(addr string) (net.Conn, error) { return rudp.Dial("udp4", addr, cfg) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.dial(net.JoinHostPort(tc.host, strconv.Itoa(port)))
			require.NoError(t, err)
			defer c.Close()
			cs := c.(*rudp.Conn).ConnectionState()
			require.True(t, cs.HandshakeComplete)
			require.Len(t, cs.PeerCertificates, 1)
			if tc.host == "localhost" {
				require.Equal(t, "localhost", cs.ServerName)
			}
		})
	}
	require.Empty(t, clientTLS.ServerName, "the caller's tls.Config changed")
	// The CA's certificate for rudp.test, dialed as localhost: refused.
	other, err := rudp.Listen("udp4", "127.0.0.1:0", &rudp.Config{TLS: s.server})
	require.NoError(t, err)
	defer other.Close()
	_, err = rudp.Dial("udp4", net.JoinHostPort("localhost", strconv.Itoa(other.Addr().(*net.UDPAddr).Port)), cfg)
	var certErr *tls.CertificateVerificationError
	require.ErrorAs(t, err, &certErr)
	require.ErrorContains(t, err, "localhost")
}
