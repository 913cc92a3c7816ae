package rudp_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// TestBatchIOModes moves a bulk stream over loopback with every I/O path:
// batched with GSO (the default on Linux), batched without GSO, one
// datagram per call, and to a listener whose datagrams are shorter than
// the dialer's (its receive buffers start too small and must grow).
func TestBatchIOModes(t *testing.T) {
	for _, tc := range []struct {
		name           string
		listen, dialer rudp.Config
	}{
		{"default", rudp.Config{}, rudp.Config{}},
		{"no-gso", rudp.Config{DisableGSO: true}, rudp.Config{DisableGSO: true}},
		{"no-batch", rudp.Config{DisableBatchIO: true}, rudp.Config{DisableBatchIO: true}},
		{"mixed", rudp.Config{DisableBatchIO: true}, rudp.Config{}},
		{"longer-peer-datagrams", rudp.Config{}, rudp.Config{MaxDatagramSize: 1400}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := rudp.Listen("udp", "127.0.0.1:0", &tc.listen)
			require.NoError(t, err)
			defer ln.Close()
			c, err := rudp.Dial("udp", ln.Addr().String(), &tc.dialer)
			require.NoError(t, err)
			defer c.Close()
			s, err := ln.AcceptRUDP()
			require.NoError(t, err)
			defer s.Close()

			data := make([]byte, 4<<20)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			deadline := time.Now().Add(30 * time.Second)
			require.NoError(t, c.SetDeadline(deadline))
			require.NoError(t, s.SetDeadline(deadline))
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(data)
				errc <- err
			}()
			got := make([]byte, len(data))
			_, err = io.ReadFull(s, got)
			require.NoError(t, err)
			require.NoError(t, <-errc)
			require.True(t, bytes.Equal(data, got), "stream corrupted")
		})
	}
}
