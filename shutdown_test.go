package rudp_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// TestShutdownDeliversEverything: Shutdown returns only once the peer has
// acknowledged every byte, so a program may exit right after it.
func TestShutdownDeliversEverything(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		c1, c2, stop := pair(t, cfg)
		defer stop()
		if cfg.Manual {
			// The receiving application's loop goes on pumping after its
			// reader saw io.EOF, as a game loop would: the close's last
			// acknowledgement comes from there (without it the close
			// ends only at its timer, seconds under the race detector).
			defer appLoop(c2)()
		}
		payload := randBytes(3 << 20)
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(c2)
			got <- b
		}()
		writeDone := make(chan error, 1)
		go func() {
			_, err := c1.Write(payload)
			writeDone <- err
		}()
		require.NoError(t, <-writeDone)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, c1.Shutdown(ctx))
		// Everything was acknowledged: the peer holds it all, and reads it
		// to the end even though our side is gone.
		select {
		case b := <-got:
			require.True(t, bytes.Equal(payload, b), "got %d bytes, want %d", len(b), len(payload))
		case <-time.After(20 * time.Second):
			t.Fatal("peer did not read to EOF")
		}
	})
}

// TestShutdownContextAborts: a close that cannot complete ends when the
// context does, with the context's error. The peer never reads, so its
// receive window (4 MiB) takes less than the 8 MiB queued for it and the
// close can never finish flushing.
func TestShutdownContextAborts(t *testing.T) {
	c1, c2, stop := pair(t, &rudp.Config{})
	defer stop()
	big := randBytes(8 << 20)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = c1.Write(big) // blocks on backpressure until Shutdown closes
	}()
	// Wait until the sender is held by flow control: the peer's window is
	// used up (a message a datagram, of about 1350 bytes, is charged 1627,
	// so the window takes about 83% of its size in data) and nothing more
	// goes for a while. Only then is the rest of what the Write queued (the
	// core keeps a bounded amount queued beyond what was sent) certain not
	// to fit: waiting for a fixed share of the window instead let a fast
	// machine send what was queued within the 100 ms, and Shutdown rightly
	// returned nil.
	window := uint64(c2.Stats().ReceiveWindow)
	for end, last := time.Now().Add(30*time.Second), uint64(0); ; time.Sleep(50 * time.Millisecond) {
		sent := c1.Stats().BytesSent
		if sent >= window*4/5 && sent == last {
			break
		}
		last = sent
		require.True(t, time.Now().Before(end), "sent %d of the peer's %d-byte window", sent, window)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c1.Shutdown(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
	<-wrote
}

// TestTryReadMessage: a game loop's non-blocking read returns nothing when
// nothing is ready, then the messages once they arrive.
func TestTryReadMessage(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		c1, c2, stop := pair(t, cfg)
		defer stop()
		buf := make([]byte, 64)
		n, g, err := c2.TryReadMessage(buf)
		require.NoError(t, err)
		require.Zero(t, n)
		require.Zero(t, g)
		require.NoError(t, c1.SendMessage(rudp.Order, []byte("frame 1")))
		var got string
		require.True(t, pumpUntil(5*time.Second, func() bool {
			n, g, err = c2.TryReadMessage(buf)
			require.NoError(t, err)
			if g != 0 {
				got = string(buf[:n])
				return true
			}
			return false
		}, c1, c2))
		require.Equal(t, "frame 1", got)
		require.Equal(t, rudp.Order, g)
	})
}
