package core_test

import (
	"bytes"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// TestHandshakeCost measures each mode's handshake on a clean link with a
// 20 ms round trip: when the client is established (Dial returns) and when
// the listener's connection is, in round trips, and the bytes each side
// sent by then (the Endpoint's Retry included), the first flight's Retry
// exchange among them. It asserts the bounds the modes must keep: one
// round trip beyond plaintext for TLS's client (its Finished acknowledged),
// none for PSK's, and the listener's bytes within 3x the client's.
func TestHandshakeCost(t *testing.T) {
	st := newSimTLS(t)
	psk := bytes.Repeat([]byte{9}, 32)
	const rtt = 20 * time.Millisecond
	link := sim.LinkConfig{Latency: rtt / 2}
	type cost struct {
		client, server     time.Duration
		clientOut, servOut uint64
	}
	measure := func(ccfg, scfg *core.Config) cost {
		// Without path MTU probes, which start at the establishment.
		cc, sc := *ccfg, *scfg
		cc.MaxDatagramSize, sc.MaxDatagramSize = core.MinHelloDatagram, core.MinHelloDatagram
		s, err := secureSim(t, 1, link, 1, &cc, &sc)
		if err != nil {
			t.Fatal(err)
		}
		c := s.clients.conns[0]
		if !c.Established() || len(s.server.all) != 1 {
			t.Fatalf("not established: %v", c.Err())
		}
		var out cost
		out.clientOut = c.Stats().BytesSent
		out.servOut = s.server.all[0].Stats().BytesSent + s.server.ep.Stats().RetriesSent*35
		out.client = s.net.Now().Sub(sim.Epoch)
		return out
	}
	results := map[string]cost{
		"plaintext": measure(epSimConfig, epSimConfig),
		"TLS":       measure(protectedConfig(st.client, nil), protectedConfig(st.server, nil)),
		"PSK":       measure(protectedConfig(nil, psk), protectedConfig(nil, psk)),
	}
	for _, mode := range []string{"plaintext", "TLS", "PSK"} {
		r := results[mode]
		t.Logf("%-9s both established after %v (%.1f RTT); client sent %d bytes, listener %d (Retry included)",
			mode, r.client, float64(r.client)/float64(rtt), r.clientOut, r.servOut)
		if r.servOut > 3*r.clientOut {
			t.Errorf("%s: the listener sent %d bytes for the client's %d: over 3x", mode, r.servOut, r.clientOut)
		}
	}
	if d := results["TLS"].client - results["plaintext"].client; d > rtt+rtt/2 {
		t.Errorf("TLS takes %v more than plaintext: over one round trip", d)
	}
	if d := results["PSK"].client - results["plaintext"].client; d > rtt/2 {
		t.Errorf("PSK takes %v more than plaintext", d)
	}
}

// BenchmarkHandshake is the CPU cost of one connection's handshake, both
// sides, in each mode (a simulated clean link: the protocol's work, not
// the network's): its rate is the handshakes per second one core can do.
func BenchmarkHandshake(b *testing.B) {
	st := newSimTLS(b)
	psk := bytes.Repeat([]byte{9}, 32)
	for _, mode := range []struct {
		name       string
		ccfg, scfg *core.Config
	}{
		{"plaintext", epSimConfig, epSimConfig},
		{"TLS", protectedConfig(st.client, nil), protectedConfig(st.server, nil)},
		{"PSK", protectedConfig(nil, psk), protectedConfig(nil, psk)},
	} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			link := sim.LinkConfig{Latency: time.Millisecond}
			for i := 0; b.Loop(); i++ {
				s, err := secureSim(b, uint64(i), link, 1, mode.ccfg, mode.scfg)
				if err != nil || !s.clients.conns[0].Established() {
					b.Fatal(err, s.clients.conns[0].Err())
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}

// TestHandshakeFigures reports, for each mode, the handshake's round trips
// and what it puts on the wire until both sides are established, each
// direction apart (datagrams and UDP payload bytes, the listener's Retry
// included), on a clean link with a 20 ms round trip and 1200-byte
// datagrams (no path MTU probes): plaintext, PSK, TLS with an ECDSA P-256
// certificate and with an RSA-2048 one (each a one-certificate chain
// signed by an ECDSA P-256 CA). It also reports the per-packet overhead: a
// 100-byte None message's datagram, plaintext and protected. It asserts
// the 3x bound (the listener's bytes within 3x the client's) and that a
// protected datagram is 12 bytes longer than a plaintext one (the 16-byte
// tag for the 4-byte checksum), the message not in it.
func TestHandshakeFigures(t *testing.T) {
	st := newSimTLS(t)
	from, to := sim.Epoch.AddDate(-1, 0, 0), sim.Epoch.AddDate(1, 0, 0)
	rsaKey, err := rsa.GenerateKey(crand.Reader, 2048)
	require.NoError(t, err)
	rsaLeaf, err := st.ca.LeafWithKey([]string{"rudp.test"}, from, to, rsaKey)
	require.NoError(t, err)
	psk := bytes.Repeat([]byte{9}, 32)
	const rtt = 20 * time.Millisecond
	plainLen := 0 // the plaintext mode's datagram of the message
	for _, mode := range []struct {
		name       string
		ccfg, scfg *core.Config
	}{
		{"plaintext", epSimConfig, epSimConfig},
		{"PSK", protectedConfig(nil, psk), protectedConfig(nil, psk)},
		{"TLS ECDSA P-256", protectedConfig(st.client, nil), protectedConfig(st.server, nil)},
		{"TLS RSA-2048", protectedConfig(st.client, nil), protectedConfig(&tls.Config{Certificates: []tls.Certificate{rsaLeaf}}, nil)},
	} {
		seedCrypto(t, 1)
		cc, sc := *mode.ccfg, *mode.scfg
		cc.MaxDatagramSize, sc.MaxDatagramSize = core.MinHelloDatagram, core.MinHelloDatagram
		s := newEpSimWith(t, 1, sim.LinkConfig{Latency: rtt / 2}, 1, core.EndpointConfig{Conn: &sc}, &cc)
		s.server.accept = true
		c := s.clients.conns[0]
		var clientAt, serverAt time.Duration
		var up, down sim.LinkStats
		for clientAt == 0 || serverAt == 0 {
			if !s.net.Step() {
				t.Fatalf("%s: not established: %v", mode.name, c.Err())
			}
			now := s.net.Now().Sub(sim.Epoch)
			if clientAt == 0 && c.Established() {
				clientAt = now
			}
			if serverAt == 0 && len(s.server.all) == 1 && s.server.all[0].Established() {
				serverAt = now
			}
		}
		up, down = s.net.Link(0, 1).Stats(), s.net.Link(1, 0).Stats()
		upBytes, downBytes := up.BytesDelivered-epAddrLen*up.Delivered, down.BytesDelivered-epAddrLen*down.Delivered
		require.Equal(t, up.Sent, up.Delivered, "a clean link")
		t.Logf("%-15s client established after %.1f RTT, listener after %.1f; client->listener %d datagrams, %d bytes; listener->client %d datagrams, %d bytes (%d Retry)",
			mode.name, float64(clientAt)/float64(rtt), float64(serverAt)/float64(rtt), up.Delivered, upBytes, down.Delivered, downBytes, s.server.ep.Stats().RetriesSent)
		if downBytes > 3*upBytes {
			t.Errorf("%s: the listener sent %d bytes for the client's %d: over 3x", mode.name, downBytes, upBytes)
		}
		// The per-packet overhead: one None message of 100 bytes, once
		// nothing else is owed (everything acknowledged).
		require.NoError(t, s.net.RunFor(time.Second))
		msg := bytes.Repeat([]byte{'m'}, 100)
		require.NoError(t, c.Send(core.None, msg))
		buf := make([]byte, 2048)
		n := c.PollTransmit(s.net.Now(), buf)
		require.NotZero(t, n)
		t.Logf("%-15s a 100-byte None message's datagram: %d bytes (%d of header, MSG frame header and checksum or tag)", mode.name, n, n-len(msg))
		if mode.name == "plaintext" {
			plainLen = n
		} else if n != plainLen+16-4 || bytes.Contains(buf[:n], msg) {
			t.Errorf("%s: a %d-byte datagram (plaintext %d, the tag replacing the checksum makes 12 more), the message in the clear %v", mode.name, n, plainLen, bytes.Contains(buf[:n], msg))
		}
	}
}
