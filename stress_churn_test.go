package rudp_test

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// TestStressPingPongWhileConnsChurn: one connection of a Listener ping-pongs
// (a Read with a fresh deadline before each, the net.Conn habit) while other
// clients connect and go away, so that the socket goes from one connection
// to several and back (direct reads on and off); no round trip stalls.
func TestStressPingPongWhileConnsChurn(t *testing.T) {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	c, err := rudp.Dial("udp", ln.Addr().String(), nil)
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.AcceptRUDP()
	require.NoError(t, err)
	defer s.Close()
	// The server side echoes; its Reads are the direct ones on the listener's socket.
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		buf := make([]byte, 64)
		for {
			s.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, err := s.Read(buf)
			if err != nil {
				return
			}
			if _, err := s.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	stopChurn := make(chan struct{})
	var churn, acceptLoop sync.WaitGroup
	churn.Add(1)
	acceptLoop.Add(1)
	go func() { // the server's other connections come and go
		defer churn.Done()
		for {
			select {
			case <-stopChurn:
				return
			default:
			}
			o, err := rudp.Dial("udp", ln.Addr().String(), &rudp.Config{HandshakeTimeout: 5 * time.Second})
			if err != nil {
				t.Errorf("churn dial: %v", err)
				return
			}
			time.Sleep(time.Millisecond)
			o.Close()
			time.Sleep(3 * time.Millisecond)
		}
	}()
	go func() {
		defer acceptLoop.Done()
		for {
			o, err := ln.AcceptRUDP()
			if err != nil {
				return
			}
			go func() {
				// Read until the peer's close: the accepted side ends too.
				_, _ = io.Copy(io.Discard, o)
				o.Close()
			}()
		}
	}()
	var worst time.Duration
	within(t, 60*time.Second, "ping-pong", func() {
		buf := make([]byte, 8)
		for i := range stressIters(2000, 400) {
			start := time.Now()
			if _, err := c.Write([]byte{byte(i)}); err != nil {
				t.Errorf("write: %v", err)
				return
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil || n != 1 || buf[0] != byte(i) {
				t.Errorf("round %d: %d %v", i, n, err)
				return
			}
			worst = max(worst, time.Since(start))
		}
	})
	t.Logf("worst round trip: %v", worst)
	close(stopChurn)
	within(t, 10*time.Second, "churn", churn.Wait)
	ln.Close() // ends the accept loop
	within(t, 10*time.Second, "accept loop", acceptLoop.Wait)
	require.Less(t, worst, 2*time.Second)
	s.Close()
	within(t, 10*time.Second, "echo", func() { <-echoDone })
}

// TestStressBlockedReadKeepsAlive: a Read that waits on the socket for many
// idle timeouts' worth of heartbeats keeps its connection alive (the
// peer's pings are answered by the waiting Read), then gets its data.
// (A 1 s idle timeout: with 300 ms, a loaded machine that stalled the
// process for a quarter of a second failed it.)
func TestStressBlockedReadKeepsAlive(t *testing.T) {
	cfg := &rudp.Config{IdleTimeout: time.Second, HeartbeatPeriod: 100 * time.Millisecond}
	c1, c2, stop := pair(t, cfg)
	defer stop()
	for _, c := range []*rudp.Conn{c1, c2} {
		done := make(chan error, 1)
		other := c2
		if c == c2 {
			other = c1
		}
		go func() {
			buf := make([]byte, 8)
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err := io.ReadFull(c, buf[:2])
			done <- err
		}()
		time.Sleep(stressDur(2500*time.Millisecond, 1200*time.Millisecond))
		_, err := other.Write([]byte("ok"))
		require.NoError(t, err)
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Read did not return")
		}
	}
}

func stressDur(long, short time.Duration) time.Duration {
	if testing.Short() {
		return short
	}
	return long
}
