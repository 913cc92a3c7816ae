package rudp_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// Adversarial stress tests of direct reads (direct.go): the socket handed
// between the reader goroutine and blocked Reads.

// within runs f and fails the test (with all goroutines' stacks) if it does
// not return within d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("%s: still running after %v\n%s", what, d, buf[:n])
	}
}

func stressIters(long, short int) int {
	if testing.Short() {
		return short
	}
	return long
}

// TestStressWakeLatencyAfterQuiet: a Read blocked while the peer is silent
// for longer than rxPoll (so the reader goroutine stops polling) returns
// promptly once the peer sends.
func TestStressWakeLatencyAfterQuiet(t *testing.T) {
	c1, c2, stop := pair(t, nil)
	defer stop()
	var lat []time.Duration
	within(t, 30*time.Second, "ping-pong after quiet periods", func() {
		buf := make([]byte, 16)
		for i := range stressIters(20, 6) {
			got := make(chan time.Time, 1)
			go func() {
				c1.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, err := c1.Read(buf)
				if err != nil || n != 1 {
					t.Errorf("read %d: %d %v", i, n, err)
				}
				got <- time.Now()
			}()
			time.Sleep(time.Duration(5+i%3*10) * time.Millisecond) // quiet: longer than rxPoll
			sent := time.Now()
			if _, err := c2.Write([]byte{byte(i)}); err != nil {
				t.Errorf("write: %v", err)
			}
			lat = append(lat, (<-got).Sub(sent))
		}
	})
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("latency after quiet: min %v median %v max %v", lat[0], lat[len(lat)/2], lat[len(lat)-1])
	require.Less(t, lat[len(lat)/2], 100*time.Millisecond, "median wake latency")
	require.Less(t, lat[len(lat)-1], time.Second, "max wake latency")
}

// TestStressConcurrentReaders: several goroutines Read (whole messages)
// from one Conn at once; every message reaches exactly one of them, and
// none stays unread while a Read waits.
func TestStressConcurrentReaders(t *testing.T) {
	for _, burst := range []int{1, 4, 32} {
		t.Run(fmt.Sprint("burst", burst), func(t *testing.T) {
			c1, c2, stop := pair(t, nil)
			defer stop()
			const readers = 4
			total := stressIters(400, 100) / burst * burst
			var mu sync.Mutex
			seen := make(map[uint32]int)
			var count atomic.Int32
			var wg sync.WaitGroup
			for range readers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 64)
					for {
						n, _, err := c1.ReadMessage(buf)
						if err != nil {
							return
						}
						if n != 4 {
							t.Errorf("message of %d bytes", n)
							return
						}
						mu.Lock()
						seen[binary.BigEndian.Uint32(buf)]++
						mu.Unlock()
						count.Add(1)
					}
				}()
			}
			within(t, 20*time.Second, "sending and reading", func() {
				var b [4]byte
				for i := 0; i < total; i += burst {
					for j := range burst {
						binary.BigEndian.PutUint32(b[:], uint32(i+j))
						require.NoError(t, c2.SendMessage(rudp.Delivery, b[:]))
					}
					// Each burst must be read before the next: a Read left
					// waiting while a message sits unread shows up here.
					deadline := time.Now().Add(3 * time.Second)
					for int(count.Load()) < i+burst {
						if time.Now().After(deadline) {
							t.Errorf("burst at %d: %d of %d messages read after 3s", i, count.Load(), i+burst)
							return
						}
						time.Sleep(50 * time.Microsecond)
					}
				}
			})
			c1.Close()
			within(t, 5*time.Second, "readers returning after Close", wg.Wait)
			mu.Lock()
			defer mu.Unlock()
			if int(count.Load()) == total {
				for i := range total {
					require.Equal(t, 1, seen[uint32(i)], "message %d", i)
				}
			}
		})
	}
}

// TestStressReadWriteDeadlineClose: Read, Write, SetReadDeadline churn and
// Close on the same Conn from different goroutines; every call returns.
func TestStressReadWriteDeadlineClose(t *testing.T) {
	for i := range stressIters(10, 4) {
		func() {
			var cfg *rudp.Config
			if i%2 == 1 {
				cfg = &rudp.Config{DisableBatchIO: true}
			}
			c1, c2, stop := pair(t, cfg)
			defer stop()
			var wg sync.WaitGroup
			quit := make(chan struct{})
			go io.Copy(io.Discard, c2)
			echo := make(chan struct{})
			go func() { // the peer sends a trickle
				defer close(echo)
				b := make([]byte, 100)
				for {
					select {
					case <-quit:
						return
					default:
					}
					if _, err := c2.Write(b); err != nil {
						return
					}
					time.Sleep(time.Duration(i%3) * time.Millisecond)
				}
			}()
			for range 3 {
				wg.Add(1)
				go func() { // readers
					defer wg.Done()
					buf := make([]byte, 37)
					for {
						_, err := c1.Read(buf)
						if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
							return
						}
						if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
							t.Errorf("read: %v", err)
							return
						}
					}
				}()
			}
			wg.Add(1)
			go func() { // writer
				defer wg.Done()
				b := make([]byte, 1000)
				for {
					if _, err := c1.Write(b); err != nil {
						return
					}
				}
			}()
			wg.Add(1)
			go func() { // deadline churn: past, far future, soon, none
				defer wg.Done()
				for k := 0; ; k++ {
					var d time.Time
					switch k % 4 {
					case 0:
						d = time.Now().Add(-time.Second)
					case 1:
						d = time.Now().Add(time.Hour)
					case 2:
						d = time.Now().Add(time.Duration(k%5) * 100 * time.Microsecond)
					}
					if c1.SetReadDeadline(d) != nil {
						return
					}
					time.Sleep(time.Duration(k%3) * 300 * time.Microsecond)
				}
			}()
			time.Sleep(time.Duration(20+i*7) * time.Millisecond)
			require.NoError(t, c1.Close())
			within(t, 10*time.Second, "Read/Write/SetReadDeadline after Close", wg.Wait)
			close(quit)
			c2.Close()
			within(t, 10*time.Second, "peer writer", func() { <-echo })
		}()
	}
}

// TestStressDeadlineMovedWhileBlocked: a Read blocked on the socket returns
// at the deadline it has now: moved earlier, moved into the past, moved
// later then earlier again.
func TestStressDeadlineMovedWhileBlocked(t *testing.T) {
	c1, _, stop := pair(t, nil)
	defer stop()
	buf := make([]byte, 8)
	for i := range stressIters(20, 5) {
		c1.SetReadDeadline(time.Now().Add(time.Hour))
		done := make(chan time.Time, 1)
		go func() {
			_, err := c1.Read(buf)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("read %d: %v", i, err)
			}
			done <- time.Now()
		}()
		time.Sleep(time.Duration(1+i%4) * time.Millisecond)
		var want time.Time
		switch i % 3 {
		case 0:
			want = time.Now().Add(-time.Millisecond)
		case 1:
			want = time.Now().Add(20 * time.Millisecond)
		case 2:
			c1.SetReadDeadline(time.Now().Add(time.Minute))
			time.Sleep(3 * time.Millisecond)
			want = time.Now().Add(10 * time.Millisecond)
		}
		c1.SetReadDeadline(want)
		select {
		case at := <-done:
			require.False(t, at.Before(want), "returned before its deadline")
			require.Less(t, at.Sub(want), time.Second, "iteration %d", i)
		case <-time.After(10 * time.Second):
			t.Fatalf("iteration %d: Read did not return at its moved deadline", i)
		}
	}
}

// TestStressCloseDuringDirectRead: Close from another goroutine while the
// Read is inside the socket read, after various delays.
func TestStressCloseDuringDirectRead(t *testing.T) {
	for i := range stressIters(20, 5) {
		c1, _, stop := pair(t, nil)
		done := make(chan error, 1)
		go func() {
			_, err := c1.Read(make([]byte, 8))
			done <- err
		}()
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		require.NoError(t, c1.Close())
		select {
		case err := <-done:
			require.ErrorIs(t, err, net.ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatalf("iteration %d: Close did not unblock Read", i)
		}
		stop()
	}
}

// TestStressUnreadAfterReadStillAcks: a connection that was read directly,
// then not at all (with a read deadline left in place), still acknowledges
// its peer's data: the peer's Shutdown completes.
func TestStressUnreadAfterReadStillAcks(t *testing.T) {
	for i := range stressIters(6, 2) {
		c1, c2, stop := pair(t, nil)
		buf := make([]byte, 4)
		for range 20 {
			_, err := c2.Write([]byte("ping"))
			require.NoError(t, err)
			c1.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadFull(c1, buf)
			require.NoError(t, err)
		}
		if i%2 == 1 {
			// A Read that times out on the socket, then nobody reads.
			c1.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
			_, err := c1.Read(buf)
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		}
		_, err := c2.Write(randBytes(128 << 10))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, c2.Shutdown(ctx), "iteration %d", i)
		cancel()
		stop()
	}
}
