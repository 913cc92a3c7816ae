package rudp_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/impair"
)

// TestRedundancyImpaired: over real sockets through 10% loss and 5 ms of
// delay each way, a ping-pong with redundancy (Config.Redundancy on stream
// 0, StreamOptions.Redundancy on a stream, Stream.SetRedundancy on the
// accepting side) gets every pong back once and intact, and the counters
// show the copies went and that some arrived when their original did not.
// Nothing here is timed: each round trip waits for its reply.
func TestRedundancyImpaired(t *testing.T) {
	link := func(seed uint64) impair.Config {
		return impair.Config{Seed: seed, Loss: 0.10, Delay: 5 * time.Millisecond}
	}
	c1, c2, px, _ := impairedPair(t, &rudp.Config{Redundancy: true}, link(21), link(22))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s1, err := c1.OpenStream(ctx, &rudp.StreamOptions{Redundancy: true})
	require.NoError(t, err)
	s2, err := c2.AcceptStream(ctx)
	require.NoError(t, err)
	require.NoError(t, s2.SetRedundancy(true))
	const rounds = 60
	for _, end := range []struct {
		name           string
		client, server net.Conn
	}{{"stream 0", c1, c2}, {"stream", s1, s2}} {
		echoed := make(chan error, 1)
		go func() {
			buf := make([]byte, 64)
			for range rounds {
				if _, err := io.ReadFull(end.server, buf); err != nil {
					echoed <- err
					return
				}
				if _, err := end.server.Write(buf); err != nil {
					echoed <- err
					return
				}
			}
			echoed <- nil
		}()
		require.NoError(t, end.client.SetDeadline(time.Now().Add(60*time.Second)))
		ping, pong := make([]byte, 64), make([]byte, 64)
		for i := range rounds {
			binary.BigEndian.PutUint64(ping, uint64(i))
			_, err := end.client.Write(ping)
			require.NoError(t, err, "%s: round trip %d", end.name, i)
			_, err = io.ReadFull(end.client, pong)
			require.NoError(t, err, "%s: round trip %d", end.name, i)
			require.Equal(t, ping, pong, "%s: round trip %d", end.name, i)
		}
		require.NoError(t, <-echoed, end.name)
	}
	logProxy(t, px)
	for name, c := range map[string]*rudp.Conn{"client": c1, "server": c2} {
		s := c.Stats()
		t.Logf("%s: sent %d bytes, %d as copies (%d copy-only packets), %d copies useful, %d retransmissions",
			name, s.BytesSent, s.RedundantBytesSent, s.RedundantPacketsSent, s.RedundantUseful, s.FragmentsRetransmitted)
		require.NotZero(t, s.RedundantBytesSent, "%s sent no copy", name)
	}
	if px.Stats().Up.DroppedLoss > 0 {
		// (Each of the client's 120 pings is lost with 10%, its copy
		// arrives with 90%: a useful copy is all but certain.)
		require.NotZero(t, c1.Stats().RedundantUseful, "the proxy dropped pings, yet no copy was useful")
	}
	require.NoError(t, c1.SetRedundancy(false))
	require.NoError(t, s1.Close())
	require.NoError(t, c1.Close())
	err = c1.SetRedundancy(true)
	require.True(t, errors.Is(err, net.ErrClosed), "SetRedundancy after Close: %v", err)
}
