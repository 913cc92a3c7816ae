package rudp_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	"github.com/rudp-go/rudp"
)

// modes runs body in default and in Manual mode.
func modes(t *testing.T, body func(t *testing.T, cfg *rudp.Config)) {
	t.Run("default", func(t *testing.T) { body(t, &rudp.Config{}) })
	t.Run("manual", func(t *testing.T) { body(t, &rudp.Config{Manual: true}) })
}

// pumpUntil pumps (Manual mode) until cond holds or the time is up.
func pumpUntil(d time.Duration, cond func() bool, pumps ...interface{ Pump() error }) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for _, p := range pumps {
			_ = p.Pump()
		}
		if cond() {
			return true
		}
		time.Sleep(200 * time.Microsecond)
	}
	return false
}

// acceptOne accepts one connection from ln in the background; the channel
// is closed without one if Accept fails.
func acceptOne(ln *rudp.Listener) <-chan *rudp.Conn {
	accepted := make(chan *rudp.Conn, 1)
	go func() {
		c, err := ln.AcceptRUDP()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	return accepted
}

// pair dials a listener and returns both ends; stop closes everything and
// (Manual mode) drives the closes to their end.
func pair(t testing.TB, cfg *rudp.Config) (c1, c2 *rudp.Conn, stop func()) {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	accepted := acceptOne(ln)
	c1, err = rudp.Dial("udp", ln.Addr().String(), cfg)
	if err != nil {
		ln.Close()
		<-accepted
		require.NoError(t, err)
	}
	c2 = <-accepted
	require.NotNil(t, c2)
	stop = func() {
		// Both at once: each Close waits until its peer acknowledged what
		// it wrote or closed too, and a test may leave data unread (or, in
		// Manual mode, a socket that only the peer's Close pumps).
		var wg sync.WaitGroup
		for _, c := range []*rudp.Conn{c1, c2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Close()
			}()
		}
		wg.Wait()
		ln.Close()
		if cfg != nil && cfg.Manual {
			// The application's loop keeps pumping until the graceful
			// closes completed (bounded by the core's close timer); the
			// test waits for it at its end, not here.
			drained := make(chan struct{})
			t.Cleanup(func() { <-drained })
			go func() {
				defer close(drained)
				if !pumpUntil(20*time.Second, func() bool {
					lnDone := errors.Is(ln.Pump(), net.ErrClosed) // both pumped every round
					return errors.Is(c1.Pump(), net.ErrClosed) && lnDone
				}) {
					t.Errorf("Manual mode closes did not complete: %v %v %s", c1.Pump(), ln.Pump(), rudp.DebugListener(ln))
				}
			}()
		}
	}
	return c1, c2, stop
}

// TestNettestConn runs x/net/nettest's conformance suite. In Manual mode
// the pipe also gets an application loop pumping both sockets every few
// milliseconds, as a Manual mode program has: BasicIO closes c1 right after
// its last Write and never touches it again, so without a pump nothing
// would deliver c1's remaining data.
func TestNettestConn(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
			c1, c2, stop := pair(t, cfg)
			stopPump := withPump(cfg, c1, c2)
			return c1, c2, func() {
				stopPump()
				stop()
			}, nil
		})
	})
}

func TestEcho(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		c1, c2, stop := pair(t, cfg)
		defer stop()
		want := make([]byte, 1<<20)
		rand.Read(want)
		go func() {
			io.Copy(c2, c2)
			c2.Close()
		}()
		errc := make(chan error, 1)
		go func() {
			_, err := c1.Write(want)
			errc <- err
		}()
		got := make([]byte, len(want))
		_, err := io.ReadFull(c1, got)
		require.NoError(t, err)
		require.NoError(t, <-errc)
		require.True(t, bytes.Equal(got, want))
	})
}

func TestDeadlines(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		c1, _, stop := pair(t, cfg)
		defer stop()
		c1.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		start := time.Now()
		_, err := c1.Read(make([]byte, 10))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout())
		require.Less(t, time.Since(start), time.Second)
	})
}

// TestDialWildcardListenerOtherIP: a listener bound to the wildcard address
// answers from the address its route picks, which need not be the one the
// client dialed (here 127.0.0.1 for 127.0.0.2; a multi-homed server, a
// virtual IP alike). The dialed connection takes replies from it and
// follows it.
func TestDialWildcardListenerOtherIP(t *testing.T) {
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Skipf("127.0.0.2 is not a local address here: %v", err)
	}
	probe.Close()
	ln, err := rudp.Listen("udp4", "0.0.0.0:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.AcceptRUDP()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 16)
		n, err := c.Read(b)
		if err == nil {
			_, _ = c.Write(b[:n])
		}
		_, _ = c.Read(b) // until the client closes
	}()
	port := ln.Addr().(*net.UDPAddr).Port
	c, err := rudp.Dial("udp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)), &rudp.Config{HandshakeTimeout: 2 * time.Second})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(2*time.Second)))
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	b := make([]byte, 16)
	n, err := c.Read(b)
	require.NoError(t, err)
	require.Equal(t, "ping", string(b[:n]))
}
