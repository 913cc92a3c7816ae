package rudp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/rudp-go/rudp"
)

// Streams carry what runs on a net.Conn unchanged: crypto/tls, and
// net/http with a server whose listener yields the streams of one
// connection and a client that opens one per connection it dials.

// TestStreamTLS: a TLS 1.3 session over a stream, 1 MiB echoed through it,
// while stream 0 carries other data beside it.
func TestStreamTLS(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		opened, accepted, stop := streamPair(t, cfg, nil)
		defer stop()
		cert := selfSigned(t)
		pool := x509.NewCertPool()
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		require.NoError(t, err)
		pool.AddCert(leaf)
		srv := tls.Server(accepted, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
		cli := tls.Client(opened, &tls.Config{RootCAs: pool, ServerName: "rudp.test", MinVersion: tls.VersionTLS13})
		want := make([]byte, 1<<20)
		rand.Read(want)
		var g errgroup.Group
		g.Go(func() error {
			if _, err := io.Copy(srv, srv); err != nil {
				return err
			}
			return srv.CloseWrite() // the client's CloseWrite came through: echo it
		})
		g.Go(func() error {
			if _, err := cli.Write(want); err != nil {
				return err
			}
			return cli.CloseWrite()
		})
		// Stream 0 beside it.
		g.Go(func() error {
			_, err := opened.Conn().Write([]byte("beside"))
			return err
		})
		buf := make([]byte, 6)
		accepted.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadFull(accepted.Conn(), buf)
		require.NoError(t, err)
		require.Equal(t, "beside", string(buf))
		opened.SetReadDeadline(time.Now().Add(20 * time.Second))
		got, err := io.ReadAll(cli)
		require.NoError(t, err)
		require.NoError(t, g.Wait())
		require.True(t, bytes.Equal(want, got), "the echo differs")
		require.Equal(t, tls.VersionTLS13, int(cli.ConnectionState().Version))
	})
}

// streamListener is a net.Listener whose connections are the streams the
// peer of one Conn opens.
type streamListener struct {
	conn   *rudp.Conn
	ctx    context.Context
	cancel context.CancelFunc
}

func newStreamListener(c *rudp.Conn) *streamListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &streamListener{conn: c, ctx: ctx, cancel: cancel}
}

func (l *streamListener) Accept() (net.Conn, error) { return l.conn.AcceptStream(l.ctx) }
func (l *streamListener) Close() error              { l.cancel(); return nil }
func (l *streamListener) Addr() net.Addr            { return l.conn.LocalAddr() }

// TestStreamHTTP: an http.Server serving the streams of one connection
// and an http.Client whose every connection is a stream it opens: requests
// at once on several streams, bodies both ways, each answered on its own.
func TestStreamHTTP(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		c1, c2, stop := pair(t, cfg)
		defer stop()
		defer withPump(cfg, c1, c2)()
		mux := http.NewServeMux()
		mux.HandleFunc("/echo/{name}", func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%s:%s", r.PathValue("name"), body)
		})
		srv := &http.Server{Handler: mux}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(newStreamListener(c2)) }()
		var dialed sync.Map
		tr := &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				s, err := c1.OpenStream(ctx, nil)
				if err == nil {
					dialed.Store(s.ID(), true)
				}
				return s, err
			},
			MaxConnsPerHost: 4,
			// (The default keeps 2 idle connections a host and closes a
			// third that goes idle, so a later request dialed again.)
			MaxIdleConnsPerHost: 4,
		}
		client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		var g errgroup.Group
		for i := range 16 {
			g.Go(func() error {
				body := strings.Repeat(fmt.Sprint(i), 10<<10)
				return postExpect(client, fmt.Sprintf("http://rudp.test/echo/r%d", i), []byte(body), fmt.Sprintf("r%d:%s", i, body))
			})
		}
		require.NoError(t, g.Wait())
		n := 0
		dialed.Range(func(any, any) bool { n++; return true })
		require.Positive(t, n)
		require.LessOrEqual(t, n, 4, "MaxConnsPerHost: streams are reused as connections")
		tr.CloseIdleConnections()
		require.NoError(t, srv.Close())
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	})
}

// TestAcceptStreamManualDrives: in Manual mode nothing reads the socket
// but the application's calls: an AcceptStream waiting for a stream the
// peer opens later reads the socket itself and returns it, and no
// goroutine of the library's runs meanwhile.
func TestAcceptStreamManualDrives(t *testing.T) {
	cfg := &rudp.Config{Manual: true}
	c1, c2, stop := pair(t, cfg)
	defer stop()
	before := settledLibraryGoroutines()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		s   *rudp.Stream
		err error
	}
	accepted := make(chan result, 1)
	waiting := make(chan struct{})
	go func() {
		close(waiting)
		s, err := c2.AcceptStream(ctx)
		accepted <- result{s, err}
	}()
	<-waiting
	// Until the accept is under way (its goroutine in AcceptStream), no
	// stream is opened: it must wait, and so drive the socket itself.
	for !inAcceptStream() {
		runtime.Gosched()
	}
	s1, err := c1.OpenStream(ctx, &rudp.StreamOptions{Guarantee: rudp.Order})
	require.NoError(t, err)
	r := <-accepted
	require.NoError(t, r.err)
	require.Equal(t, s1.ID(), r.s.ID())
	require.Equal(t, rudp.Order, r.s.Guarantee())
	require.LessOrEqual(t, libraryGoroutines(), before, "Manual mode started a goroutine")
	s1.Close()
	r.s.Close()
}

// inAcceptStream reports whether a goroutine is inside Conn.AcceptStream.
func inAcceptStream() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "rudp.(*Conn).AcceptStream")
}

// BenchmarkIdleStream is what a stream opened and left idle costs over
// real sockets, in heap bytes: B/stream a side (the Stream, its view, the
// core's record and the table's place: the opener's and the acceptor's
// cost the same, give or take the opener's STREAM_OPEN until it is
// acknowledged) and B/pair both ends together. Each op opens and accepts
// 1,000 streams on a new connection and waits until nothing is in flight.
func BenchmarkIdleStream(b *testing.B) {
	const n = 1000
	cfg := &rudp.Config{MaxIncomingStreams: n}
	ctx := context.Background()
	var total float64
	for range b.N {
		b.StopTimer()
		c1, c2, stop := pair(b, cfg)
		streams := make([]*rudp.Stream, 0, 2*n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for range n {
			s1, err := c1.OpenStream(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			s2, err := c2.AcceptStream(ctx)
			if err != nil {
				b.Fatal(err)
			}
			streams = append(streams, s1, s2)
		}
		b.StopTimer()
		for end := time.Now().Add(10 * time.Second); c1.Stats().BytesInFlight+c2.Stats().BytesInFlight > 0; {
			if time.Now().After(end) {
				b.Fatal("the STREAM_OPENs were not acknowledged")
			}
			time.Sleep(time.Millisecond)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		total += float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		for _, s := range streams {
			s.Close()
		}
		stop()
	}
	b.ReportMetric(total/float64(b.N), "B/pair")
	b.ReportMetric(total/float64(2*b.N), "B/stream")
}
