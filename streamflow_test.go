package rudp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// TestStreamFlowStalledReader: per-stream flow control over real sockets
// (docs/PROTOCOL.md §17.6). Two streams; the reader of A stops. A's writer
// blocks at A's own credit and send buffer, and its Write returns at its
// deadline with an error matching os.ErrDeadlineExceeded, while a transfer
// larger than the whole connection window completes on B. Then A is read:
// everything written on it arrives. The connection's window (512 KiB) is
// smaller than what A's writer can queue, so with a connection window alone
// A's unread data would fill it and stop B.
func TestStreamFlowStalledReader(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		cfg.ReceiveWindow, cfg.MaxReceiveWindow = 512<<10, 512<<10
		cfg.StreamReceiveWindow = 64 << 10
		cfg.SendBufferSize = 1 << 20
		c1, c2, stop := pair(t, cfg)
		defer stop()
		defer withPump(cfg, c1, c2)()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a1, err := c1.OpenStream(ctx, nil)
		require.NoError(t, err)
		b1, err := c1.OpenStream(ctx, nil)
		require.NoError(t, err)
		a2, err := c2.AcceptStream(ctx)
		require.NoError(t, err)
		b2, err := c2.AcceptStream(ctx)
		require.NoError(t, err)
		require.Equal(t, a1.ID(), a2.ID())

		// A: more than its credit and send buffer can ever take while
		// nobody reads it, so the Write can only end at its deadline.
		aData := make([]byte, 4<<20)
		rand.Read(aData)
		type result struct {
			n   int
			err error
		}
		aDone := make(chan result, 1)
		require.NoError(t, a1.SetWriteDeadline(time.Now().Add(500*time.Millisecond)))
		go func() {
			n, err := a1.Write(aData)
			aDone <- result{n, err}
		}()

		// B: twice the connection window, written and read whole.
		bData := make([]byte, 1<<20)
		rand.Read(bData)
		bDone := make(chan error, 1)
		go func() {
			_, err := b1.Write(bData)
			if err == nil {
				err = b1.CloseWrite()
			}
			bDone <- err
		}()
		require.NoError(t, b2.SetReadDeadline(time.Now().Add(20*time.Second)))
		got, err := io.ReadAll(b2)
		require.NoError(t, err, "stream B stalled beside A, whose reader stopped")
		require.True(t, bytes.Equal(bData, got))
		require.NoError(t, <-bDone)

		r := <-aDone
		require.ErrorIs(t, r.err, os.ErrDeadlineExceeded)
		require.Less(t, r.n, len(aData))

		// A's reader comes back: what the Write took arrives, in order.
		require.NoError(t, a1.CloseWrite())
		require.NoError(t, a2.SetReadDeadline(time.Now().Add(20*time.Second)))
		got, err = io.ReadAll(a2)
		require.NoError(t, err)
		require.Equal(t, r.n, len(got))
		require.True(t, bytes.Equal(aData[:r.n], got))
	})
}
