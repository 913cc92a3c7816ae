package rudp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/impair"
)

// TestStressSecondClientWhileReadBlocked: a Listener whose only accepted
// connection's Read waits on the socket accepts a second client promptly,
// and both connections keep working.
func TestStressSecondClientWhileReadBlocked(t *testing.T) {
	for i := range stressIters(8, 3) {
		ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
		require.NoError(t, err)
		c1, err := rudp.Dial("udp", ln.Addr().String(), nil)
		require.NoError(t, err)
		s1, err := ln.AcceptRUDP()
		require.NoError(t, err)
		got1 := make(chan error, 1)
		go func() {
			buf := make([]byte, 5)
			s1.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err := io.ReadFull(s1, buf)
			if err == nil && string(buf) != "hello" {
				err = errors.New("got " + string(buf))
			}
			got1 <- err
		}()
		time.Sleep(time.Duration(i%4) * 3 * time.Millisecond)
		start := time.Now()
		var c2, s2 *rudp.Conn
		within(t, 10*time.Second, "second handshake", func() {
			c2, err = rudp.Dial("udp", ln.Addr().String(), &rudp.Config{HandshakeTimeout: 5 * time.Second})
			require.NoError(t, err)
			s2, err = ln.AcceptRUDP()
			require.NoError(t, err)
		})
		hs := time.Since(start)
		require.Less(t, hs, 500*time.Millisecond, "second handshake took %v", hs)
		within(t, 10*time.Second, "echo on the second connection", func() {
			go io.Copy(s2, s2)
			want := randBytes(32 << 10)
			go c2.Write(want)
			got := make([]byte, len(want))
			c2.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.ReadFull(c2, got)
			require.NoError(t, err)
			require.True(t, bytes.Equal(want, got))
		})
		_, err = c1.Write([]byte("hello"))
		require.NoError(t, err)
		select {
		case err := <-got1:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("first connection's Read did not get its data")
		}
		for _, c := range []*rudp.Conn{c1, c2, s1, s2} {
			c.Close()
		}
		ln.Close()
	}
}

// TestStressListenerDialMixed: connections dialed through a Listener next
// to accepted ones, all echoing numbered messages; the Listener is closed
// while their Reads are blocked; the connections keep working and every
// message arrives exactly once in order.
func TestStressListenerDialMixed(t *testing.T) {
	server, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	client, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	const n = 4
	accepted := make(chan *rudp.Conn, 2*n)
	go func() {
		for {
			c, err := client.AcceptRUDP()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	go func() {
		for {
			c, err := server.AcceptRUDP()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var dialed []*rudp.Conn
	for i := range n {
		// Alternate: the client listener dials the server, the server dials the client listener.
		from, to := client, server
		if i%2 == 1 {
			from, to = server, client
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := from.DialContext(ctx, "udp", to.Addr().String())
		cancel()
		require.NoError(t, err)
		dialed = append(dialed, c)
	}
	var peers []*rudp.Conn
	for range n {
		select {
		case c := <-accepted:
			peers = append(peers, c)
		case <-time.After(10 * time.Second):
			t.Fatal("accept")
		}
	}
	// Echo on the accepted side.
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				k, _, err := p.ReadMessage(buf)
				if err != nil {
					return
				}
				if p.SendMessage(rudp.Delivery, buf[:k]) != nil {
					return
				}
			}
		}()
	}
	msgs := stressIters(300, 60)
	errs := make(chan error, n)
	for _, c := range dialed {
		go func() {
			buf := make([]byte, 64)
			for i := range msgs {
				var b [8]byte
				binary.BigEndian.PutUint64(b[:], uint64(i))
				if err := c.SendMessage(rudp.Delivery, b[:]); err != nil {
					errs <- err
					return
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				k, _, err := c.ReadMessage(buf)
				if err != nil {
					errs <- err
					return
				}
				if k != 8 || binary.BigEndian.Uint64(buf) != uint64(i) {
					errs <- errors.New("out of order or corrupted echo")
					return
				}
				if i == msgs/2 {
					time.Sleep(5 * time.Millisecond) // the Listener closes around here
				}
			}
			errs <- nil
		}()
	}
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, server.Close())
	require.NoError(t, client.Close())
	within(t, 30*time.Second, "echo after the Listeners closed", func() {
		for range n {
			require.NoError(t, <-errs)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range dialed {
		require.NoError(t, c.Shutdown(ctx))
	}
	within(t, 10*time.Second, "echo loops ending", wg.Wait)
	for _, p := range peers {
		p.Close()
	}
}

// TestStressPeerVanishes: the peer's socket goes away (the path closes)
// while a Read waits on the socket; the Read returns an error once the
// connection times out, not never.
func TestStressPeerVanishes(t *testing.T) {
	cfg := &rudp.Config{IdleTimeout: 600 * time.Millisecond, HeartbeatPeriod: 100 * time.Millisecond}
	c1, c2, px, stop := impairedPair(t, cfg, impair.Config{}, impair.Config{})
	defer stop()
	_ = c2
	_, err := c2.Write([]byte("x"))
	require.NoError(t, err)
	buf := make([]byte, 8)
	_, err = io.ReadFull(c1, buf[:1])
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := c1.Read(buf)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	px.Close() // c1's datagrams now meet a closed port (ICMP errors on its connected socket)
	select {
	case err := <-done:
		require.Error(t, err)
		require.False(t, errors.Is(err, net.ErrClosed), "%v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after the peer vanished")
	}
}

// TestStressImpairedHandoffsExactlyOnce: numbered messages through loss,
// duplication and reordering, read by a reader that alternates between
// reading in a loop (direct reads) and pausing longer than rxPoll (the
// reader goroutine takes the socket back), with read deadlines expiring
// in between: each arrives exactly once and in order. Then a byte stream.
func TestStressImpairedHandoffsExactlyOnce(t *testing.T) {
	t.Run("batched", func(t *testing.T) { impairedHandoffs(t, nil) })
	t.Run("unbatched", func(t *testing.T) { impairedHandoffs(t, &rudp.Config{DisableBatchIO: true}) })
}

func impairedHandoffs(t *testing.T, cfg *rudp.Config) {
	up, down := lossyLink(11), lossyLink(12)
	up.Jitter, down.Jitter = 200*time.Microsecond, 200*time.Microsecond
	c1, c2, px, stop := impairedPair(t, cfg, up, down)
	defer stop()
	defer logProxy(t, px)
	msgs := stressIters(3000, 600)
	sendErr := make(chan error, 1)
	go func() {
		var b [8]byte
		for i := range msgs {
			binary.BigEndian.PutUint64(b[:], uint64(i))
			if err := c1.SendMessage(rudp.Delivery, b[:]); err != nil {
				sendErr <- err
				return
			}
			if i%200 == 0 {
				time.Sleep(3 * time.Millisecond)
			}
		}
		sendErr <- nil
	}()
	within(t, 60*time.Second, "impaired numbered messages", func() {
		buf := make([]byte, 64)
		next := 0
		for k := 0; next < msgs; k++ {
			switch k % 97 {
			case 0:
				time.Sleep(4 * time.Millisecond) // longer than rxPoll: the reader takes the socket back
			case 13:
				c2.SetReadDeadline(time.Now().Add(-time.Second))
				_, _, err := c2.ReadMessage(buf)
				if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("read with a past deadline: %v", err)
					return
				}
				if err == nil {
					t.Errorf("a Read with a past deadline returned a message")
					return
				}
			}
			c2.SetReadDeadline(time.Now().Add(time.Duration(k%5+1) * time.Millisecond))
			n, _, err := c2.ReadMessage(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			if n != 8 {
				t.Errorf("message of %d bytes", n)
				return
			}
			if got := binary.BigEndian.Uint64(buf); got != uint64(next) {
				t.Errorf("message %d, want %d", got, next)
				return
			}
			next++
		}
	})
	require.NoError(t, <-sendErr)
	c2.SetReadDeadline(time.Time{})
	// A byte stream, read in odd-sized pieces with pauses.
	want := randBytes(stressIters(512<<10, 128<<10))
	go func() {
		_, err := c1.Write(want)
		sendErr <- err
	}()
	within(t, 60*time.Second, "impaired byte stream", func() {
		got := make([]byte, 0, len(want))
		buf := make([]byte, 1777)
		for k := 0; len(got) < len(want); k++ {
			if k%50 == 0 {
				time.Sleep(3 * time.Millisecond)
			}
			n, err := c2.Read(buf[:1+k%len(buf)])
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			got = append(got, buf[:n]...)
		}
		require.True(t, bytes.Equal(want, got), "stream corrupted")
	})
	require.NoError(t, <-sendErr)
}
