// Command http serves and fetches HTTP/1.1 over rudp with net/http,
// unchanged: the server runs on a rudp Listener, the client's Transport
// dials with rudp.Dialer.DialContext (which takes the "tcp" network that
// net/http asks for as UDP).
//
// The client makes -requests requests (200 by default) from 8 workers over
// a few kept-alive connections: GETs, small POSTs echoed back, and every
// -big-every'th (10th) a POST with a 1 MiB body. Every response is checked.
//
//	go run ./examples/http
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rudp-go/rudp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "http:", err)
		os.Exit(1)
	}
}

const (
	workers    = 8
	bigBody    = 1 << 20
	smallBody  = 1000
	greeting   = "hello over rudp\n"
	digestName = "X-Body-Sha256"
)

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	defer func() {
		// After a timeout or ^C, the I/O error it caused (net.ErrClosed)
		// says less than why. (ctx is the timeout's context below.)
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
	}()
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	requests := fs.Int("requests", 200, "number of `requests`")
	bigEvery := fs.Int("big-every", 10, "every `n`th request is a POST with a 1 MiB body")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *requests < 1 || *bigEvery < 1 {
		return errors.New("-requests and -big-every must be at least 1")
	}
	mix := mix{bigEvery: *bigEvery}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	if err != nil {
		return err
	}
	defer ln.Close()
	var accepted atomic.Int64
	srv := &http.Server{
		Handler:           handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
		},
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer srv.Close()
	fmt.Fprintf(out, "server: net/http listening on %s (udp)\n", ln.Addr())

	transport := &http.Transport{
		DialContext:         (&rudp.Dialer{}).DialContext,
		MaxIdleConnsPerHost: workers,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	base := "http://" + ln.Addr().String()

	start := time.Now()
	jobs := make(chan int)
	errs := make([]error, workers)
	var bytesUp, bytesDown atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range jobs {
				up, down, err := request(ctx, client, base, mix, i)
				if err != nil {
					errs[w] = fmt.Errorf("request %d: %w", i, err)
					// Drain the rest so the producer does not block.
					for range jobs {
					}
					return
				}
				bytesUp.Add(int64(up))
				bytesDown.Add(int64(down))
			}
		})
	}
	for i := range *requests {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	elapsed := time.Since(start)
	gets, bigs := mix.count(*requests)
	fmt.Fprintf(out, "client: %d requests (%d GET, %d POST with 1 MiB bodies, %d small POST) by %d workers, all verified in %v\n",
		*requests, gets, bigs, *requests-gets-bigs, workers, elapsed.Round(time.Microsecond))
	fmt.Fprintf(out, "client: %d bytes of bodies sent, %d received\n", bytesUp.Load(), bytesDown.Load())

	transport.CloseIdleConnections()
	shutdownCtx, cancelShutdown := context.WithTimeout(ctx, 10*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: %w", err)
	}
	fmt.Fprintf(out, "server: served them over %d rudp connections, shut down cleanly\n", accepted.Load())
	return nil
}

// mix says what request i is: a 1 MiB POST every bigEvery, else
// alternately a small POST and a GET.
type mix struct{ bigEvery int }

func (m mix) isBig(i int) bool { return i%m.bigEvery == 0 }
func (m mix) isGet(i int) bool { return !m.isBig(i) && i%2 == 1 }

func (m mix) count(n int) (gets, bigs int) {
	for i := range n {
		switch {
		case m.isGet(i):
			gets++
		case m.isBig(i):
			bigs++
		}
	}
	return gets, bigs
}

// handler serves GET /hello and POST /echo, which returns the body with its
// SHA-256 in a header.
func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, greeting)
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sum := sha256.Sum256(body)
		w.Header().Set(digestName, hex.EncodeToString(sum[:]))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})
	return mux
}

// request makes request number i and checks the response.
func request(ctx context.Context, client *http.Client, base string, mix mix, i int) (up, down int, err error) {
	var req *http.Request
	var body []byte
	if mix.isGet(i) {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+"/hello", nil)
	} else {
		n := smallBody
		if mix.isBig(i) {
			n = bigBody
		}
		body = make([]byte, n)
		rand.NewChaCha8([32]byte{byte(i), byte(i >> 8)}).Read(body)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base+"/echo", bytes.NewReader(body))
	}
	if err != nil {
		return 0, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s: %s", resp.Status, got)
	}
	if mix.isGet(i) {
		if string(got) != greeting {
			return 0, 0, fmt.Errorf("GET /hello returned %q", got)
		}
		return 0, len(got), nil
	}
	sum := sha256.Sum256(body)
	if !bytes.Equal(got, body) || resp.Header.Get(digestName) != hex.EncodeToString(sum[:]) {
		return 0, 0, fmt.Errorf("POST /echo of %d bytes came back as %d different bytes", len(body), len(got))
	}
	return len(body), len(got), nil
}
