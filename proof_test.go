package rudp_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/rudp-go/rudp"
)

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// writeRead writes data to w on a goroutine of its own and reads as many
// bytes from r (the peer's end, or w itself for an echo): an error unless
// the bytes read are data and the write succeeded.
func writeRead(w io.Writer, r io.Reader, data []byte) error {
	werr := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		werr <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(r, got); err != nil {
		return err
	}
	if !bytes.Equal(data, got) {
		return fmt.Errorf("%d bytes arrived different", len(data))
	}
	return <-werr
}

func TestYamux32Streams(t *testing.T) {
	c1, c2, stop := pair(t, nil)
	defer stop()
	ycfg := yamux.DefaultConfig()
	ycfg.LogOutput = io.Discard
	server, err := yamux.Server(c2, ycfg)
	require.NoError(t, err)
	client, err := yamux.Client(c1, ycfg)
	require.NoError(t, err)
	defer client.Close()
	defer server.Close()
	go func() {
		for {
			s, err := server.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(s, s); s.Close() }()
		}
	}()
	var g errgroup.Group
	for range 32 {
		g.Go(func() error {
			s, err := client.Open()
			if err != nil {
				return err
			}
			defer s.Close()
			return writeRead(s, s, randBytes(1<<20))
		})
	}
	require.NoError(t, g.Wait())
}

func selfSigned(t *testing.T) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "rudp"},
		DNSNames:     []string{"rudp.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLS13Echo4MiB(t *testing.T) {
	c1, c2, stop := pair(t, nil)
	defer stop()
	cert := selfSigned(t)
	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool.AddCert(leaf)
	srv := tls.Server(c2, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	cli := tls.Client(c1, &tls.Config{RootCAs: pool, ServerName: "rudp.test", MinVersion: tls.VersionTLS13})
	go func() { io.Copy(srv, srv); srv.Close() }()
	want := randBytes(4 << 20)
	go cli.Write(want)
	got := make([]byte, len(want))
	_, err := io.ReadFull(cli, got)
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS13), cli.ConnectionState().Version)
	require.True(t, bytes.Equal(got, want))
	cli.Close()
}

func TestHTTP200Requests(t *testing.T) {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	d := &rudp.Dialer{}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var g errgroup.Group
	g.SetLimit(8)
	for i := range 200 {
		g.Go(func() error {
			body := randBytes(100)
			if i%10 == 0 {
				body = randBytes(1 << 20)
			}
			want := fmt.Sprintf("%d %x", len(body), sha256.Sum256(body))
			return postExpect(client, "http://"+ln.Addr().String()+"/", body, want)
		})
	}
	require.NoError(t, g.Wait())
}

// TestGarbageDuringTransfer sends 20,000 random datagrams (some of them
// well-formed HELLOs without a cookie) at a listener while a transfer runs.
func TestGarbageDuringTransfer(t *testing.T) {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan *rudp.Conn, 10)
	go func() {
		for {
			c, err := ln.AcceptRUDP()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	c1, err := rudp.Dial("udp", ln.Addr().String(), nil)
	require.NoError(t, err)
	defer c1.Close()
	c2 := <-accepted
	defer c2.Close()
	go func() { io.Copy(c2, c2); c2.Close() }()

	attacker, err := net.DialUDP("udp", nil, ln.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	defer attacker.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := mrand.New(mrand.NewPCG(1, 2))
		buf := make([]byte, 1500)
		for i := range 20000 {
			n := r.IntN(len(buf))
			for j := range buf[:n] {
				buf[j] = byte(r.Uint32())
			}
			if i%4 == 0 && n > 14 { // plausible header: version 1, data
				buf[0], buf[1] = 1, 1
			}
			attacker.Write(buf[:n])
			if i%200 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	want := randBytes(2 << 20)
	go c1.Write(want)
	got := make([]byte, len(want))
	_, err = io.ReadFull(c1, got)
	require.NoError(t, err)
	require.True(t, bytes.Equal(got, want))
	<-done
	select {
	case c, ok := <-accepted:
		if ok {
			t.Fatalf("bogus connection accepted from %v", c.RemoteAddr())
		}
	case <-time.After(100 * time.Millisecond):
	}
}

// serveEcho echoes every connection ln accepts, until ln is closed.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { io.Copy(c, c); c.Close() }()
	}
}

func TestManyConnections(t *testing.T) {
	n := 500
	if testing.Short() {
		n = 100
	}
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	go serveEcho(ln)
	var g errgroup.Group
	g.SetLimit(100)
	for range n {
		g.Go(func() error {
			c, err := rudp.Dial("udp", ln.Addr().String(), nil)
			if err != nil {
				return err
			}
			defer c.Close()
			return writeRead(c, c, randBytes(10<<10))
		})
	}
	require.NoError(t, g.Wait())
}

// TestManualNoGoroutines: in Manual mode the library starts no goroutine,
// however many connections are set up and driven.
func TestManualNoGoroutines(t *testing.T) {
	// A negative Linger: Close returns at once, and the application's loop
	// (pumpUntil below) completes the closes, as a game loop would.
	cfg := &rudp.Config{Manual: true, Linger: -1}
	ln, err := rudp.Listen("udp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	// Earlier tests' connections may still be closing (default mode):
	// wait for their goroutines to end first.
	require.Eventually(t, func() bool { return libraryGoroutines() == 0 }, 15*time.Second, 20*time.Millisecond)
	before := settledGoroutines()
	var conns []*rudp.Conn
	for range 10 {
		// Dial drives its own socket while it waits; the listener's is
		// driven by Accept here. Only the Dial needs a goroutine (the
		// test's), and it has ended when Dial returns.
		type dialed struct {
			c   *rudp.Conn
			err error
		}
		ch := make(chan dialed, 1)
		go func() { c, err := rudp.Dial("udp", ln.Addr().String(), cfg); ch <- dialed{c, err} }()
		s, err := ln.AcceptRUDP()
		require.NoError(t, err)
		d := <-ch
		require.NoError(t, d.err)
		conns = append(conns, d.c, s)
	}
	require.Zero(t, libraryGoroutines())
	require.LessOrEqual(t, settledGoroutines(), before)
	for round := range 20 {
		for i := 0; i < len(conns); i += 2 {
			msg := fmt.Appendf(nil, "ping %4d", round)
			_, err := conns[i].Write(msg)
			require.NoError(t, err)
			buf := make([]byte, len(msg))
			_, err = io.ReadFull(conns[i+1], buf)
			require.NoError(t, err)
			require.Equal(t, msg, buf)
			require.Zero(t, libraryGoroutines())
		}
	}
	for _, c := range conns {
		c.Close()
	}
	ln.Close()
	require.True(t, pumpUntil(20*time.Second, func() bool { // a bound, not a measure: loaded machines are slow
		done := errors.Is(ln.Pump(), net.ErrClosed)
		for i := 0; i < len(conns); i += 2 {
			done = errors.Is(conns[i].Pump(), net.ErrClosed) && done
		}
		return done
	}), "%s", rudp.DebugListener(ln))
	require.LessOrEqual(t, runtime.NumGoroutine(), before)
}

// libraryGoroutines counts the goroutines the library started: those
// running rudp code that no test function started.
func libraryGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/rudp-go/rudp.") && !strings.Contains(g, "rudp_test.") {
			n++
		}
	}
	return n
}

// settledGoroutines waits for goroutines of earlier tests to end and
// returns how many are left.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

func TestDialSilentPortTimesOut(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		defer silent.Close()
		cfg.HandshakeTimeout = 200 * time.Millisecond
		start := time.Now()
		_, err = rudp.Dial("udp", silent.LocalAddr().String(), cfg)
		require.Error(t, err)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout(), "%v", err)
		require.Less(t, time.Since(start), 2*time.Second)
	})
}

func TestDialContextCancel(t *testing.T) {
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer silent.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = rudp.DialContext(ctx, "udp", silent.LocalAddr().String(), nil)
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), time.Second)
}

func TestAcceptQueueOverflowRefused(t *testing.T) {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", &rudp.Config{AcceptBacklog: 1})
	require.NoError(t, err)
	defer ln.Close()
	c1, err := rudp.Dial("udp", ln.Addr().String(), nil)
	require.NoError(t, err)
	defer c1.Close()
	start := time.Now()
	_, err = rudp.Dial("udp", ln.Addr().String(), &rudp.Config{HandshakeTimeout: 5 * time.Second})
	require.ErrorIs(t, err, rudp.ErrRefused)
	require.Less(t, time.Since(start), time.Second)
}

// TestCloseUnblocks: Close unblocks a pending Read and Write at once,
// although it then waits (the peer reads nothing, so what the Write queued
// can never all be delivered) until its linger time, and fails.
func TestCloseUnblocks(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		// A window far smaller than what one Write queues at once: the
		// peer reads nothing, so once the writer queued anything, the rest
		// can never be delivered.
		cfg.MaxMessageSize, cfg.ReceiveWindow, cfg.MaxReceiveWindow = 16<<10, 64<<10, 64<<10
		c1, _, stop := pair(t, cfg)
		defer stop()
		const linger = time.Second
		require.NoError(t, c1.SetLinger(linger))
		var wg sync.WaitGroup
		wg.Add(2)
		var rerr, werr error
		go func() {
			defer wg.Done()
			_, rerr = c1.Read(make([]byte, 10))
		}()
		go func() {
			defer wg.Done()
			big := make([]byte, 1<<20)
			for werr == nil {
				_, werr = c1.Write(big) // the peer does not read: fills up
			}
		}()
		// Write queues as much as the send buffer takes (at least 384 KiB)
		// before it sends: once a message went out, more than the peer's
		// window is queued, and the graceful close cannot complete. (A
		// fixed 200 ms was not always enough for the writer under the race
		// detector on a loaded machine: all it wrote fit in the peer's
		// window, and Close returned nil.)
		require.Eventually(t, func() bool { return c1.Stats().MessagesSent > 0 }, 20*time.Second, time.Millisecond,
			"the writer sent nothing")
		start := time.Now()
		closed := make(chan error, 1)
		go func() { closed <- c1.Close() }()
		wg.Wait()
		// Read and Write return at once, not when Close does after the linger.
		require.Less(t, time.Since(start), linger)
		require.ErrorIs(t, rerr, net.ErrClosed)
		require.ErrorIs(t, werr, net.ErrClosed)
		_, err := c1.Read(make([]byte, 1))
		require.ErrorIs(t, err, net.ErrClosed)
		require.ErrorIs(t, <-closed, os.ErrDeadlineExceeded)
		require.GreaterOrEqual(t, time.Since(start), linger)
	})
}

func TestEOFAfterPeerClose(t *testing.T) {
	c1, c2, stop := pair(t, nil)
	defer stop()
	want := randBytes(100 << 10)
	go func() { c1.Write(want); c1.Close() }()
	got, err := io.ReadAll(c2)
	require.NoError(t, err)
	require.True(t, bytes.Equal(got, want))
	_, err = c2.Read(make([]byte, 1))
	require.Equal(t, io.EOF, err)
}

func TestWriteDeadlineBackpressure(t *testing.T) {
	c1, _, stop := pair(t, &rudp.Config{SendBufferSize: 1 << 20, ReceiveWindow: 1<<20 + 256 + 1<<14, MaxMessageSize: 1 << 20})
	defer stop()
	c1.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	var err error
	total := 0
	for err == nil {
		var n int
		n, err = c1.Write(make([]byte, 64<<10))
		total += n
	}
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Less(t, total, 4<<20) // bounded by the buffers, not by memory
}

func TestMessageMode(t *testing.T) {
	for _, g := range []rudp.Guarantee{rudp.Order, rudp.None} {
		t.Run(g.String(), func(t *testing.T) {
			c1, c2, stop := pair(t, &rudp.Config{Guarantee: g})
			defer stop()
			_, err := c1.Write([]byte("hello, world"))
			require.NoError(t, err)
			small := make([]byte, 5)
			c2.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err = c2.Read(small)
			require.ErrorIs(t, err, rudp.ErrBufferTooSmall)
			buf := make([]byte, 100)
			n, err := c2.Read(buf)
			require.NoError(t, err)
			require.Equal(t, "hello, world", string(buf[:n]))
		})
	}
}

func TestPacketConnPair(t *testing.T) {
	a, err := rudp.ListenPacket("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer a.Close()
	b, err := rudp.ListenPacket("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer b.Close()
	for i := range 50 {
		msg := fmt.Appendf(nil, "message %d", i)
		_, err := a.WriteTo(msg, b.LocalAddr())
		require.NoError(t, err)
	}
	buf := make([]byte, 100)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range 50 {
		n, from, err := b.ReadFrom(buf)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("message %d", i), string(buf[:n]))
		_, err = b.WriteTo(buf[:n], from) // reply over the same connection
		require.NoError(t, err)
	}
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range 50 {
		n, from, err := a.ReadFrom(buf)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("message %d", i), string(buf[:n]))
		require.Equal(t, b.LocalAddr().(*net.UDPAddr).Port, from.(*net.UDPAddr).Port)
	}
}

func TestPacketConnToListener(t *testing.T) {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", &rudp.Config{Guarantee: rudp.Order})
	require.NoError(t, err)
	defer ln.Close()
	pc, err := rudp.ListenPacket("udp", "127.0.0.1:0", &rudp.Config{Guarantee: rudp.Order})
	require.NoError(t, err)
	defer pc.Close()
	_, err = pc.WriteTo([]byte("hi listener"), ln.Addr())
	require.NoError(t, err)
	c, err := ln.Accept()
	require.NoError(t, err)
	defer c.Close()
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "hi listener", string(buf[:n]))
	_, err = c.Write([]byte("hi packetconn"))
	require.NoError(t, err)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err = pc.ReadFrom(buf)
	require.NoError(t, err)
	require.Equal(t, "hi packetconn", string(buf[:n]))
}

// postExpect POSTs body to url and checks that the response body is want.
func postExpect(client *http.Client, url string, body []byte, want string) error {
	resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("POST %s: got %d bytes %.40q, want %d bytes %.40q", url, len(got), got, len(want), want)
	}
	return nil
}
