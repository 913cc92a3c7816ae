package rudp_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/impair"
)

// sharedPair is pair with the client's side dialed through a Listener of
// its own (Listener.DialContext), next to an idle connection on the same
// socket, so that the socket is demultiplexed on both sides. With px the
// client dials through that proxy.
func sharedPair(t testing.TB, cfg *rudp.Config, up, down *impair.Config) (c1, c2 *rudp.Conn, stop func()) {
	t.Helper()
	server, err := rudp.Listen("udp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	client, err := rudp.Listen("udp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	addr := server.Addr().String()
	var px *impair.Proxy
	if up != nil {
		px, err = impair.NewProxy("127.0.0.1:0", addr, *up, *down)
		require.NoError(t, err)
		addr = px.Addr().String()
	}
	accepted := make(chan *rudp.Conn, 2)
	go func() {
		for range 2 {
			c, err := server.AcceptRUDP()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() *rudp.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if cfg != nil && cfg.Manual {
			// Nobody pumps the server's socket but the handshake's wait.
			defer appLoop(server)()
		}
		c, err := client.DialContext(ctx, "udp", addr)
		require.NoError(t, err)
		return c
	}
	idle := dial()
	c1 = dial()
	idlePeer, c2 := <-accepted, <-accepted
	require.NotNil(t, c2)
	require.Equal(t, client.Addr().String(), c1.LocalAddr().String(), "dialed through the listener's socket")
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for _, c := range []*rudp.Conn{c1, c2, idle, idlePeer} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = c.Shutdown(ctx)
				}()
			}
			wg.Wait()
			client.Close()
			server.Close()
			if px != nil {
				px.Close()
			}
		})
	}
	t.Cleanup(stop)
	return c1, c2, stop
}

func init() {
	transports = append(transports,
		transport{"shared-socket", func(t *testing.T, cfg *rudp.Config) (*rudp.Conn, *rudp.Conn, func()) {
			return sharedPair(t, cfg, nil, nil)
		}},
		transport{"impaired-shared-socket", func(t *testing.T, cfg *rudp.Config) (*rudp.Conn, *rudp.Conn, func()) {
			up, down := lossyLink(7), lossyLink(8)
			return sharedPair(t, cfg, &up, &down)
		}},
	)
}

// TestListenerDialShares: connections dialed through one Listener share
// its socket and its reader goroutine, and each carries its own stream.
func TestListenerDialShares(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 50
	}
	server, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer server.Close()
	go serveEcho(server)
	client, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer client.Close()

	before := libraryGoroutines()
	conns := make([]*rudp.Conn, n)
	var g errgroup.Group
	g.SetLimit(50)
	for i := range conns {
		g.Go(func() (err error) {
			conns[i], err = client.Dial("udp", server.Addr().String())
			return err
		})
	}
	require.NoError(t, g.Wait())
	// Idle: the client side added no goroutine per connection (the
	// server side runs one echo goroutine per connection, started by this
	// test, and the same single reader).
	time.Sleep(50 * time.Millisecond)
	require.Less(t, libraryGoroutines()-before, n/2, "a goroutine per dialed connection")
	for i, c := range conns {
		require.Equal(t, client.Addr().String(), c.LocalAddr().String())
		g.Go(func() error {
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			return writeRead(c, c, randBytes(8<<10+i))
		})
	}
	require.NoError(t, g.Wait())
}

// TestDialerListener: a Dialer with a Listener dials through its socket,
// "tcp" included (as http.Transport asks).
func TestDialerListener(t *testing.T) {
	server, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer server.Close()
	client, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer client.Close()
	go func() {
		c, err := server.Accept()
		if err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	d := &rudp.Dialer{Listener: client}
	c, err := d.DialContext(context.Background(), "tcp", server.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, client.Addr().String(), c.LocalAddr().String())
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf))
}

// TestListenerDialErrors: a closed Listener dials nothing; an IPv4
// listener cannot reach an IPv6 address; a silent peer times out.
func TestListenerDialErrors(t *testing.T) {
	client, err := rudp.Listen("udp4", "127.0.0.1:0", &rudp.Config{HandshakeTimeout: 300 * time.Millisecond})
	require.NoError(t, err)

	_, err = client.Dial("udp", "[::1]:9")
	var addrErr *net.AddrError
	require.ErrorAs(t, err, &addrErr)

	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer silent.Close()
	_, err = client.Dial("udp", silent.LocalAddr().String())
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "%v", err)

	require.NoError(t, client.Close())
	_, err = client.Dial("udp", silent.LocalAddr().String())
	require.ErrorIs(t, err, net.ErrClosed)
}

// TestListenerDialOutlivesClose: a dialed connection stays usable after its
// Listener is closed, as accepted ones do.
func TestListenerDialOutlivesClose(t *testing.T) {
	server, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer server.Close()
	go func() {
		c, err := server.Accept()
		if err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	client, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	c, err := client.Dial("udp", server.Addr().String())
	require.NoError(t, err)
	require.NoError(t, client.Close())
	_, err = c.Write([]byte("still here"))
	require.NoError(t, err)
	buf := make([]byte, 10)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "still here", string(buf))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Shutdown(ctx))
}

// TestUnreadConnectionStillAcknowledges: once its application stops
// reading, a dialed connection's socket (read by a blocked Read itself
// while there was one) is read by the reader goroutine again, so the peer's
// data is still acknowledged: the peer's Shutdown completes.
func TestUnreadConnectionStillAcknowledges(t *testing.T) {
	c1, c2, stop := pair(t, nil)
	defer stop()
	_, err := c2.Write([]byte("x"))
	require.NoError(t, err)
	buf := make([]byte, 1)
	c1.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadFull(c1, buf) // a Read that waited on the socket itself
	require.NoError(t, err)
	// c1 reads no more.
	_, err = c2.Write(randBytes(256 << 10))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c2.Shutdown(ctx))
}

// TestDirectReadUnblocks: a Read waiting on its socket itself returns at
// its deadline, when the deadline is moved earlier, and at Close.
func TestDirectReadUnblocks(t *testing.T) {
	c1, _, stop := pair(t, nil)
	defer stop()
	buf := make([]byte, 8)
	c1.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c1.Read(buf)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)

	c1.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c1.Read(buf)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c1.SetReadDeadline(time.Now().Add(-time.Second))
	select {
	case err := <-done:
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	case <-time.After(5 * time.Second):
		t.Fatal("moving the deadline did not unblock Read")
	}

	c1.SetReadDeadline(time.Time{})
	go func() {
		_, err := c1.Read(buf)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, c1.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
}

// TestDirectReadSecondConnection: while the only connection's Read waits
// on the listener's socket itself, a second client connects and is served
// (the waiting Read handles its datagrams), then the first Read still gets
// its data.
func TestDirectReadSecondConnection(t *testing.T) {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	c1, err := rudp.Dial("udp", ln.Addr().String(), nil)
	require.NoError(t, err)
	defer c1.Close()
	s1, err := ln.AcceptRUDP()
	require.NoError(t, err)
	defer s1.Close()
	got1 := make(chan string, 1)
	go func() {
		buf := make([]byte, 5)
		s1.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(s1, buf); err != nil {
			got1 <- err.Error()
			return
		}
		got1 <- string(buf)
	}()
	time.Sleep(20 * time.Millisecond) // s1's Read now waits on the socket

	c2, err := rudp.Dial("udp", ln.Addr().String(), nil)
	require.NoError(t, err)
	defer c2.Close()
	s2, err := ln.AcceptRUDP()
	require.NoError(t, err)
	defer s2.Close()
	go io.Copy(s2, s2)
	want := randBytes(64 << 10)
	go c2.Write(want)
	got := make([]byte, len(want))
	c2.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.ReadFull(c2, got)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got))

	_, err = c1.Write([]byte("hello"))
	require.NoError(t, err)
	require.Equal(t, "hello", <-got1)
}
