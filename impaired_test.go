package rudp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/impair"
)

// lossyLink is the impairment the guarantees are proven through over real
// sockets, applied to each direction with its own seed: 5% loss, 2%
// duplication, 5% reordering.
func lossyLink(seed uint64) impair.Config {
	return impair.Config{Seed: seed, Loss: 0.05, Duplicate: 0.02, Reorder: 0.05}
}

// mildLink is the impairment timing-sensitive suites (nettest) run over:
// 1% loss and some reordering.
func mildLink(seed uint64) impair.Config {
	return impair.Config{Seed: seed, Loss: 0.01, Reorder: 0.02}
}

// impairedPair is pair with an impair.Proxy between the two sockets: the
// client dials the proxy, which relays to the listener through up and
// back through down. stop shuts both ends down gracefully (driving the
// sockets in Manual mode, since Shutdown pumps while it waits), then
// closes the listener and the proxy.
func impairedPair(t testing.TB, cfg *rudp.Config, up, down impair.Config) (c1, c2 *rudp.Conn, px *impair.Proxy, stop func()) {
	t.Helper()
	ln, err := rudp.Listen("udp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	px, err = impair.NewProxy("127.0.0.1:0", ln.Addr().String(), up, down)
	if err != nil {
		ln.Close()
		require.NoError(t, err)
	}
	accepted := acceptOne(ln)
	c1, err = rudp.Dial("udp", px.Addr().String(), cfg)
	if err != nil {
		ln.Close()
		<-accepted
		px.Close()
		require.NoError(t, err)
	}
	c2 = <-accepted
	require.NotNil(t, c2)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for _, c := range []*rudp.Conn{c1, c2} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = c.Shutdown(ctx) // a peer that already ended is fine
				}()
			}
			wg.Wait()
			ln.Close()
			px.Close()
		})
	}
	t.Cleanup(stop)
	return c1, c2, px, stop
}

// logProxy reports what the proxy did to the datagrams, to show that the
// impairment was really there.
func logProxy(t *testing.T, px *impair.Proxy) {
	s := px.Stats()
	t.Logf("proxy up: sent %d, lost %d, duplicated %d, reordered %d; down: sent %d, lost %d, duplicated %d, reordered %d",
		s.Up.Sent, s.Up.DroppedLoss, s.Up.Duplicated, s.Up.Reordered,
		s.Down.Sent, s.Down.DroppedLoss, s.Down.Duplicated, s.Down.Reordered)
}

// TestImpairedDelivery8MiB proves Delivery (exactly once, in order): through a
// seeded impairment between the sockets (5% loss, 2% duplication, 5%
// reordering each way) an 8 MiB byte stream arrives intact, then io.EOF.
func TestImpairedDelivery8MiB(t *testing.T) {
	size := 8 << 20
	if testing.Short() {
		size = 2 << 20
	}
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		// Ethernet-sized datagrams: in loopback's 64 KiB ones, 2 MiB is
		// some 40 datagrams, too few for every impairment to show.
		cfg.MaxDatagramSize = 1452
		c1, c2, px, stop := impairedPair(t, cfg, lossyLink(1), lossyLink(2))
		defer stop()
		if cfg.Manual {
			// The receiver's loop goes on pumping after it read io.EOF,
			// as an application's would: the sender's Shutdown waits for
			// the acknowledgement of its close from there.
			defer appLoop(c2)()
		}
		want := randBytes(size)
		wantSum := sha256.Sum256(want)

		start := time.Now()
		arrived := make(chan struct{})
		sent := make(chan error, 1)
		go func() {
			if _, err := c1.Write(want); err != nil {
				sent <- err
				return
			}
			sent <- shutdownWhenRead(c1, arrived)
		}()
		c2.SetReadDeadline(time.Now().Add(60 * time.Second))
		h := &countingHash{Hash: sha256.New(), want: int64(size), reached: arrived}
		n, err := io.Copy(h, c2) // to io.EOF
		require.NoError(t, err)
		elapsed := time.Since(start)
		require.NoError(t, <-sent)
		require.Equal(t, int64(size), n)
		require.Equal(t, wantSum[:], h.Sum(nil), "the stream arrived altered")

		st := c1.Stats()
		t.Logf("%d MiB in %v (%.1f MiB/s); sender: %d packets sent, %d lost, %d retransmitted, srtt %v",
			size>>20, elapsed.Round(time.Millisecond), float64(size)/(1<<20)/elapsed.Seconds(),
			st.PacketsSent, st.PacketsLost, st.FragmentsRetransmitted, st.RTT.Smoothed)
		logProxy(t, px)
		s := px.Stats()
		require.NotZero(t, s.Up.DroppedLoss, "the link lost nothing")
		require.NotZero(t, s.Up.Duplicated, "the link duplicated nothing")
		require.NotZero(t, s.Up.Reordered, "the link reordered nothing")
	})
}

// TestImpairedOrderStrictlyIncreasing proves Order: through
// the same impairment, numbered Order messages arrive strictly increasing
// (never duplicated, never after a newer one), and most of them arrive. A
// final Delivery message marks the end: it is yielded in order with the
// Order messages, so nothing sent before it can follow it.
func TestImpairedOrderStrictlyIncreasing(t *testing.T) {
	const size = 500
	count := 20000
	if testing.Short() {
		count = 5000
	}
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		c1, c2, px, stop := impairedPair(t, cfg, lossyLink(3), lossyLink(4))
		defer stop()
		if cfg.Manual {
			// The receiver's loop goes on pumping after it read io.EOF,
			// as an application's would: the sender's Shutdown waits for
			// the acknowledgement of its close from there.
			defer appLoop(c2)()
		}

		start := time.Now()
		arrived := make(chan struct{})
		sent := make(chan error, 1)
		go func() {
			msg := make([]byte, size)
			for i := range count {
				binary.BigEndian.PutUint32(msg, uint32(i+1))
				if err := c1.SendMessage(rudp.Order, msg); err != nil {
					sent <- err
					return
				}
			}
			if err := c1.SendMessage(rudp.Delivery, []byte("end")); err != nil {
				sent <- err
				return
			}
			// Done sending: close once the end arrived.
			sent <- shutdownWhenRead(c1, arrived)
		}()

		c2.SetReadDeadline(time.Now().Add(60 * time.Second))
		buf := make([]byte, size)
		var last uint32
		got := 0
		for {
			n, g, err := c2.ReadMessage(buf)
			require.NoError(t, err)
			if g == rudp.Delivery {
				require.Equal(t, "end", string(buf[:n]))
				close(arrived)
				break
			}
			require.Equal(t, rudp.Order, g)
			require.Equal(t, size, n)
			seq := binary.BigEndian.Uint32(buf)
			require.Greater(t, seq, last, "Order message %d yielded after %d", seq, last)
			require.LessOrEqual(t, seq, uint32(count))
			last = seq
			got++
		}
		// The sender closes after the end: reading on (which also drives
		// the socket in Manual mode) meets io.EOF, with nothing in between.
		_, _, err := c2.ReadMessage(buf)
		require.ErrorIs(t, err, io.EOF)
		require.NoError(t, <-sent)
		frac := float64(got) / float64(count)
		st := c2.Stats()
		t.Logf("Order: %d of %d messages delivered (%.1f%%), strictly increasing, in %v; receiver dropped %d stale, %d duplicate packets",
			got, count, 100*frac, time.Since(start).Round(time.Millisecond), st.StaleDropped, st.DuplicatesDropped)
		logProxy(t, px)
		require.Greater(t, frac, 0.5, "most Order messages should arrive")
	})
}

// countingHash is a hash that closes reached once want bytes were written.
type countingHash struct {
	hash.Hash
	n, want int64
	reached chan struct{}
}

func (h *countingHash) Write(p []byte) (int, error) {
	before := h.n
	h.n += int64(len(p))
	if before < h.want && h.n >= h.want {
		close(h.reached)
	}
	return h.Hash.Write(p)
}

// shutdownWhenRead closes c gracefully once read is closed (the peer's
// application read everything), pumping c meanwhile (Manual mode; in
// default mode Pump does nothing) as an application's loop would: Close
// bounds a graceful close by a linger time, which a slow run might spend
// on the send buffer's last megabytes. It gives up after 60 s.
func shutdownWhenRead(c *rudp.Conn, read <-chan struct{}) error {
	end := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-read:
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			return c.Shutdown(ctx)
		case <-time.After(500 * time.Microsecond):
			if time.Now().After(end) {
				return errors.New("the peer did not read everything within 60s")
			}
			_ = c.Pump()
		}
	}
}

// transport makes a connected pair over one kind of path.
type transport struct {
	name string
	pair func(t *testing.T, cfg *rudp.Config) (c1, c2 *rudp.Conn, stop func())
}

var transports = []transport{
	{"udp", func(t *testing.T, cfg *rudp.Config) (*rudp.Conn, *rudp.Conn, func()) {
		return pair(t, cfg)
	}},
	{"impaired-udp", func(t *testing.T, cfg *rudp.Config) (*rudp.Conn, *rudp.Conn, func()) {
		c1, c2, _, stop := impairedPair(t, cfg, lossyLink(5), lossyLink(6))
		return c1, c2, stop
	}},
}

// TestConformanceTransports runs the same echo body (a byte stream both
// ways, then messages of every guarantee) over real UDP and impaired UDP,
// in both modes.
func TestConformanceTransports(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			modes(t, func(t *testing.T, cfg *rudp.Config) {
				c1, c2, stop := tr.pair(t, cfg)
				defer stop()
				if cfg.Manual {
					defer appLoop(c1, c2)()
				}
				echoBody(t, c1, c2)
			})
		})
	}
}

// echoBody: c2 echoes 256 KiB of stream back to c1, then c1's Delivery and
// Order messages arrive whole and in order.
func echoBody(t *testing.T, c1, c2 *rudp.Conn) {
	want := randBytes(256 << 10)
	echoed := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		total := 0
		for total < len(want) {
			n, err := c2.Read(buf)
			if err != nil {
				echoed <- err
				return
			}
			if _, err := c2.Write(buf[:n]); err != nil {
				echoed <- err
				return
			}
			total += n
		}
		echoed <- nil
	}()
	wrote := make(chan error, 1)
	go func() {
		_, err := c1.Write(want)
		wrote <- err
	}()
	c1.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, len(want))
	_, err := io.ReadFull(c1, got)
	require.NoError(t, err)
	require.NoError(t, <-wrote)
	require.NoError(t, <-echoed)
	require.True(t, bytes.Equal(got, want), "echo differs")

	// Messages: Delivery ones all arrive; Order ones may be lost but never
	// come after the Delivery message sent after them.
	for i := range 20 {
		g := rudp.Delivery
		if i%2 == 1 {
			g = rudp.Order
		}
		require.NoError(t, c1.SendMessage(g, []byte{byte(i)}))
	}
	c2.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 16)
	next := 0
	for next < 19 {
		n, g, err := c2.ReadMessage(buf)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		i := int(buf[0])
		require.GreaterOrEqual(t, i, next, "message %d after %d", i, next-1)
		if g == rudp.Delivery {
			require.Zero(t, i%2)
		}
		next = i + 1
	}
	c1.SetReadDeadline(time.Time{})
	c2.SetReadDeadline(time.Time{})
}

// TestNettestConnImpaired runs x/net/nettest's conformance suite over the
// impaired proxy path with mild impairment (1% loss, 2% reordering). In
// Manual mode the pipe gets an application loop pumping both sockets, as
// in TestNettestConn.
func TestNettestConnImpaired(t *testing.T) {
	if testing.Short() {
		t.Skip("nettest's timing-bound subtests over a lossy path: skipped in -short")
	}
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		seed := uint64(10)
		nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
			seed += 2
			c1, c2, _, stop := impairedPair(t, cfg, mildLink(seed), mildLink(seed+1))
			if !cfg.Manual {
				return c1, c2, stop, nil
			}
			stopLoop := appLoop(c1, c2)
			return c1, c2, func() {
				stopLoop()
				stop()
			}, nil
		})
	})
}

// appLoop is a Manual mode application's loop: it pumps the connections
// (or listeners) every few milliseconds, so that handshakes,
// retransmissions and acknowledgements go out while no blocking call
// drives the socket. The returned func stops it.
func appLoop(conns ...interface{ Pump() error }) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, c := range conns {
					_ = c.Pump()
				}
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// errIsClosedOrEOF reports an error a reader of a connection the other
// side ended may see.
func errIsClosedOrEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, rudp.ErrRefused) || errors.Is(err, rudp.ErrAborted)
}
