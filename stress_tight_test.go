package rudp_test

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStressTightDeadlinesStream: a byte stream read with read deadlines
// of 0 to 300 µs (most Reads time out inside the socket read, some in the
// middle of a batch) arrives whole, in order, exactly once.
func TestStressTightDeadlinesStream(t *testing.T) {
	c1, c2, stop := pair(t, nil)
	defer stop()
	want := randBytes(stressIters(4<<20, 1<<20))
	sent := make(chan error, 1)
	go func() {
		for off := 0; off < len(want); off += 50000 {
			if _, err := c1.Write(want[off:min(off+50000, len(want))]); err != nil {
				sent <- err
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
		sent <- nil
	}()
	timeouts := 0
	within(t, 60*time.Second, "tight-deadline reads", func() {
		got := make([]byte, 0, len(want))
		buf := make([]byte, 3000)
		for k := 0; len(got) < len(want); k++ {
			c2.SetReadDeadline(time.Now().Add(time.Duration(k%7) * 50 * time.Microsecond))
			n, err := c2.Read(buf[:1+(k*131)%len(buf)])
			if errors.Is(err, os.ErrDeadlineExceeded) {
				timeouts++
				continue
			}
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			got = append(got, buf[:n]...)
		}
		require.True(t, bytes.Equal(want, got), "stream corrupted")
	})
	require.NoError(t, <-sent)
	t.Logf("%d reads timed out", timeouts)
}
