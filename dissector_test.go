package rudp_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/internal/capture"
)

// TestWiresharkDissectorSockets captures a bulk transfer between a
// listener and a dialed connection, as the root package's sockets send it
// (a Retry first; on Linux runs of datagrams in UDP GSO buffers, which a
// capture on the sending host shows whole: docs/PROTOCOL.md §1), and checks
// that the dissector (contrib/wireshark/rudp.lua) shows every datagram as
// rudp with no expert mark, cuts every GSO buffer into its datagrams, and
// finds as many datagrams from each side as its Stats say it sent.
// core's TestWiresharkDissector checks each frame against core's decoder.
func TestWiresharkDissectorSockets(t *testing.T) {
	tcpdump, tshark := capture.Tools(t)

	free, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	port := free.LocalAddr().(*net.UDPAddr).Port
	require.NoError(t, free.Close())
	capt := capture.Start(t, tcpdump, port)
	// The goroutines that are not the sockets'.
	notSockets := goleak.IgnoreCurrent()
	ln, err := rudp.Listen("udp", fmt.Sprintf("127.0.0.1:%d", port), nil)
	require.NoError(t, err)
	defer ln.Close()

	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	type result struct {
		n    int64
		conn *rudp.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.AcceptRUDP()
		if err != nil {
			done <- result{err: err}
			return
		}
		n, err := io.Copy(io.Discard, c)
		if err == nil {
			err = c.Close()
		}
		done <- result{n, c, err}
	}()
	c, err := rudp.Dial("udp", ln.Addr().String(), nil)
	require.NoError(t, err)
	for range 2 {
		_, err = c.Write(payload)
		require.NoError(t, err)
	}
	require.NoError(t, c.Close())
	server := <-done
	require.NoError(t, server.err)
	require.EqualValues(t, 2*len(payload), server.n)
	require.NoError(t, ln.Close())
	// The second closer lingers after its Close returned, answering the
	// first's CLOSE: count its datagrams once both connections have
	// ended, their sockets' goroutines with them.
	for deadline := time.Now().Add(30 * time.Second); goleak.Find(notSockets) != nil; {
		require.True(t, time.Now().Before(deadline), "the connections never ended: %v", goleak.Find(notSockets))
	}
	capt.Stop(t)

	// Per side, the datagrams of each packet type: Data packets are the
	// connection's (its Stats count them); a Retry, or a Reset answering a
	// packet that arrived after the connection was forgotten, the socket's.
	clientPort := c.LocalAddr().(*net.UDPAddr).Port
	types := map[int]map[string]int{clientPort: {}, port: {}}
	gsoBuffers := 0
	for _, r := range capture.Fields(t, tshark, capt.Path) {
		if r.SrcPort == capt.BeaconPort() {
			continue // the markers
		}
		require.Equal(t, "rudp", r.Protocol, "every datagram is dissected as rudp: %+v", r)
		require.Empty(t, r.Expert, "no expert mark: %+v", r)
		require.NotEmpty(t, r.Types, "%+v", r)
		require.Contains(t, types, r.SrcPort, "a datagram from a third port: %+v", r)
		if strings.HasPrefix(r.Info, "GSO") {
			gsoBuffers++
		}
		for _, typ := range r.Types {
			types[r.SrcPort][typ]++
		}
	}
	require.EqualValues(t, c.Stats().PacketsSent, types[clientPort]["1"], "the client's Data packets: %v", types)
	require.EqualValues(t, server.conn.Stats().PacketsSent, types[port]["1"], "the server's Data packets: %v", types)
	retries := types[port]["2"]
	require.Positive(t, retries, "the listener answered the first HELLO with a Retry")
	t.Logf("datagrams by port and type %v, %d GSO buffers split", types, gsoBuffers)
}
