package rudp_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/core"
)

// waitStats polls stats until ok holds, failing t (with the last counts)
// if it does not within a generous bound: it waits on the condition, not
// on a guess of how long the datagrams take.
func waitStats(t *testing.T, what string, stats func() rudp.SocketStats, ok func(rudp.SocketStats) bool) rudp.SocketStats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := stats()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never reached; stats %+v", what, s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestListenerStats moves every counter of Listener.Stats a test on
// loopback can reach: connections accepted and dialed, handshakes completed
// and failed, Retries, refusals for each of the Listener's causes, and
// datagrams dropped as malformed, unknown and truncated, and answered by a
// stateless reset.
func TestListenerStats(t *testing.T) {
	// (DisableGSO also keeps UDP GRO off, so a datagram longer than
	// MaxDatagramSize is truncated by the read, not coalesced; set, it
	// does not follow the route, which would make it the largest.)
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", &rudp.Config{AcceptBacklog: 1, DisableGSO: true, MaxDatagramSize: 1452})
	require.NoError(t, err)
	defer ln.Close()
	client, err := rudp.Listen("udp4", "127.0.0.1:0", nil) // dials through its socket
	require.NoError(t, err)
	defer client.Close()
	addr := ln.Addr().String()

	c1, err := client.Dial("udp4", addr)
	require.NoError(t, err)
	defer c1.Close()
	s := waitStats(t, "the first connection", ln.Stats, func(s rudp.SocketStats) bool {
		return s.Accepted == 1 && s.HandshakesCompleted == 1
	})
	require.Equal(t, 1, s.Conns)
	require.NotZero(t, s.RetriesSent, "every first HELLO gets a Retry")
	require.NotZero(t, s.DatagramsReceived)
	cs := client.Stats()
	require.Equal(t, uint64(1), cs.Dialed)
	require.Equal(t, uint64(1), cs.HandshakesCompleted)
	require.Equal(t, 1, cs.Conns)
	require.Zero(t, cs.Accepted)

	// The first waits in Accept: AcceptBacklog 1 is spent.
	_, err = client.Dial("udp4", addr)
	require.ErrorIs(t, err, rudp.ErrRefused)
	s = ln.Stats()
	require.Equal(t, uint64(1), s.RefusedBacklog)
	require.Equal(t, uint64(1), s.Refused)
	waitStats(t, "the refused dial's failed handshake", client.Stats, func(s rudp.SocketStats) bool { return s.HandshakesFailed == 1 })

	// Hostile and stray datagrams, each dropped or answered by its cause.
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer sock.Close()
	to := ln.Addr().(*net.UDPAddr)
	send := func(p []byte) {
		_, err := sock.WriteToUDP(p, to)
		require.NoError(t, err)
	}
	send([]byte("garbage"))
	waitStats(t, "a malformed datagram", ln.Stats, func(s rudp.SocketStats) bool { return s.DroppedMalformed == 1 })
	send(rawPacket(core.PacketRetry, 42, 1, 20))
	waitStats(t, "a Retry for no connection", ln.Stats, func(s rudp.SocketStats) bool { return s.DroppedUnknown == 1 })
	send(rawPacket(core.PacketData, 42, 1, 20))
	waitStats(t, "a packet for no connection", ln.Stats, func(s rudp.SocketStats) bool { return s.ResetsSent == 1 })
	send(make([]byte, 4000)) // over the 1452-byte MaxDatagramSize the socket reads
	waitStats(t, "a truncated datagram", ln.Stats, func(s rudp.SocketStats) bool { return s.DroppedTruncated == 1 })

	// Closed: the accepted connection keeps the socket open, and a new
	// client is refused for the close.
	sc, err := ln.Accept()
	require.NoError(t, err)
	defer sc.Close()
	require.NoError(t, ln.Close())
	_, err = client.Dial("udp4", addr)
	require.ErrorIs(t, err, rudp.ErrRefused)
	s = ln.Stats()
	require.Equal(t, uint64(1), s.RefusedClosed)
	require.Equal(t, uint64(2), s.Refused)
	require.Equal(t, uint64(1), s.Accepted, "a refused attempt is not counted as accepted")
}

// TestListenerStatsHostShare: once half the accept queue waits, a host
// that holds its share of it (AcceptBacklog/16, at least 8) is refused.
func TestListenerStatsHostShare(t *testing.T) {
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", &rudp.Config{AcceptBacklog: 16})
	require.NoError(t, err)
	defer ln.Close()
	client, err := rudp.Listen("udp4", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer client.Close()
	for i := range 8 {
		c, err := client.Dial("udp4", ln.Addr().String())
		require.NoError(t, err, "dial %d", i)
		defer c.Close()
	}
	_, err = client.Dial("udp4", ln.Addr().String())
	require.ErrorIs(t, err, rudp.ErrRefused)
	s := ln.Stats()
	require.Equal(t, uint64(1), s.RefusedHostShare)
	require.Zero(t, s.RefusedBacklog)
	require.Equal(t, uint64(8), s.Accepted)
}

// TestPacketConnStats: a PacketConn counts the peers it adopted and the
// ones it refused, for MaxPeers and for MaxPeersPerHost; the peers' side
// counts its dials.
func TestPacketConnStats(t *testing.T) {
	for _, tt := range []struct {
		name     string
		cfg      rudp.Config
		refused  func(rudp.SocketStats) uint64
		whyField string
	}{
		{"MaxPeers", rudp.Config{MaxPeers: 1}, func(s rudp.SocketStats) uint64 { return s.RefusedPeers }, "RefusedPeers"},
		{"MaxPeersPerHost", rudp.Config{MaxPeers: 4, MaxPeersPerHost: 1}, func(s rudp.SocketStats) uint64 { return s.RefusedPeersPerHost }, "RefusedPeersPerHost"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := rudp.ListenPacket("udp4", "127.0.0.1:0", &tt.cfg)
			require.NoError(t, err)
			defer p.Close()
			a, err := rudp.ListenPacket("udp4", "127.0.0.1:0", nil)
			require.NoError(t, err)
			defer a.Close()
			b, err := rudp.ListenPacket("udp4", "127.0.0.1:0", nil)
			require.NoError(t, err)
			defer b.Close()

			_, err = a.WriteTo([]byte("a"), p.LocalAddr())
			require.NoError(t, err)
			buf := make([]byte, 16)
			require.NoError(t, p.SetReadDeadline(time.Now().Add(20*time.Second)))
			_, from, err := p.ReadFrom(buf)
			require.NoError(t, err)
			require.Equal(t, a.LocalAddr().String(), from.String())
			s := waitStats(t, "the first peer", p.Stats, func(s rudp.SocketStats) bool { return s.HandshakesCompleted == 1 })
			require.Equal(t, uint64(1), s.Accepted)
			require.Equal(t, 1, s.Conns)
			require.Equal(t, uint64(1), a.Stats().Dialed)

			// The second peer finds no room (the first is not idle).
			_, err = b.WriteTo([]byte("b"), p.LocalAddr())
			require.NoError(t, err)
			s = waitStats(t, tt.whyField, p.Stats, func(s rudp.SocketStats) bool { return tt.refused(s) == 1 })
			require.Equal(t, uint64(1), s.Refused)
			require.Equal(t, uint64(1), s.Accepted)
			// b learns it at its next WriteTo.
			waitStats(t, "the refused peer's failed handshake", b.Stats, func(s rudp.SocketStats) bool { return s.HandshakesFailed == 1 })
			_, err = b.WriteTo([]byte("b"), p.LocalAddr())
			require.True(t, errors.Is(err, rudp.ErrRefused), "%v", err)
		})
	}
}
