package rudp

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStreamWakesOnDemand: a connection carries the wake channels of
// AcceptStream and OpenStream only once one of them waited (each is 96
// bytes, on both ends of every connection, most of which never open a
// stream), and both calls still work.
func TestStreamWakesOnDemand(t *testing.T) {
	ln, err := Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	c, err := Dial("udp", ln.Addr().String(), nil)
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.AcceptRUDP()
	require.NoError(t, err)
	defer s.Close()
	for name, conn := range map[string]*Conn{"dialed": c, "accepted": s} {
		conn.mu.Lock()
		acceptWake, openWake := conn.acceptWake, conn.openWake
		conn.mu.Unlock()
		require.Nil(t, acceptWake, "%s: AcceptStream's wake channel made before any AcceptStream", name)
		require.Nil(t, openWake, "%s: OpenStream's wake channel made before any OpenStream", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan error, 1)
	go func() {
		st, err := s.AcceptStream(ctx)
		if err == nil {
			st.Close()
		}
		accepted <- err
	}()
	st, err := c.OpenStream(ctx, nil)
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, <-accepted)
}
