// Command streams is the yamux example's twin on rudp's own streams: the
// client opens -streams streams (32 by default) on one rudp connection
// with Conn.OpenStream and, on all of them at once, sends -kib KiB (1 MiB
// by default) that the server echoes back; every stream's echo is checked
// byte for byte.
//
// Compared with yamux over one rudp connection (examples/yamux), each
// stream is an ordering domain of its own: a lost datagram holds back only
// the stream whose data it carried, where under yamux it holds back the
// one byte stream every yamux stream is multiplexed on. -loss and -rtt put
// a lossy relay (impair's Proxy) between client and server, as
// the yamux example's flags of the same names do.
//
//	go run ./examples/streams
//	go run ./examples/streams -loss 0.02 -rtt 20ms
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"sync"
	"time"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/impair"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "streams:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	defer func() {
		// After a timeout or ^C, the I/O error it caused (net.ErrClosed)
		// says less than why. (ctx is the timeout's context below.)
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
	}()
	fs := flag.NewFlagSet("streams", flag.ContinueOnError)
	streams := fs.Int("streams", 32, "number of concurrent `streams`")
	sizeKiB := fs.Int("kib", 1024, "`KiB` echoed on each stream")
	loss := fs.Float64("loss", 0, "`probability` that a relay between client and server loses a datagram, each way (0 and -rtt 0: no relay)")
	rtt := fs.Duration("rtt", 0, "round trip `time` the relay adds")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *streams < 1 || *sizeKiB < 1 {
		return errors.New("-streams and -kib must be at least 1")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Fprintf(out, "server: listening on %s (udp), echoing every stream\n", ln.Addr())
	served := make(chan serverResult, 1)
	go func() { served <- serveOne(ctx, ln) }()

	// A lossy relay between client and server, if asked for: the impair
	// package's Proxy, the same you may put under your own tests.
	addr := ln.Addr().String()
	if *loss != 0 || *rtt != 0 {
		link := impair.Config{Loss: *loss, Delay: *rtt / 2} // each way
		up, down := link, link
		up.Seed, down.Seed = 1, 2
		relay, err := impair.NewProxy("127.0.0.1:0", addr, up, down)
		if err != nil {
			return err
		}
		defer relay.Close()
		addr = relay.Addr().String()
		fmt.Fprintf(out, "relay: %s losing %.3g%% of datagrams each way, %v round trip\n", addr, 100**loss, *rtt)
	}
	conn, err := rudp.DialContext(ctx, "udp", addr, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	stopOnCancel := context.AfterFunc(ctx, func() { conn.Close(); ln.Close() })
	defer stopOnCancel()
	fmt.Fprintf(out, "client: one rudp connection to %s, opening %d streams on it\n", conn.RemoteAddr(), *streams)

	start := time.Now()
	errs := make([]error, *streams)
	took := make([]time.Duration, *streams)
	var wg sync.WaitGroup
	for i := range *streams {
		wg.Go(func() {
			errs[i] = echoStream(ctx, conn, i, *sizeKiB<<10)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	elapsed := time.Since(start)
	total := int64(*streams) * int64(*sizeKiB) << 10
	fmt.Fprintf(out, "client: %d streams each echoed %d KiB concurrently, %d KiB verified in %v (%.1f MiB/s each way)\n",
		*streams, *sizeKiB, total>>10, elapsed.Round(time.Microsecond), float64(total)/(1<<20)/elapsed.Seconds())
	slices.Sort(took)
	fmt.Fprintf(out, "client: streams completed: first after %v, median %v, slowest %v\n",
		took[0].Round(time.Microsecond), took[len(took)/2].Round(time.Microsecond), took[len(took)-1].Round(time.Microsecond))
	s := conn.Stats()
	fmt.Fprintf(out, "client: rudp stats: RTT %v, %d packets sent / %d received, %d lost, %d fragments retransmitted\n",
		s.RTT.Smoothed.Round(time.Microsecond), s.PacketsSent, s.PacketsReceived, s.PacketsLost, s.FragmentsRetransmitted)

	// Closing the connection ends the server's AcceptStream.
	if err := conn.Close(); err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	var res serverResult
	select {
	case res = <-served:
	case <-ctx.Done():
		return errors.New("server did not finish")
	}
	if res.err != nil {
		return fmt.Errorf("server: %w", res.err)
	}
	fmt.Fprintf(out, "server: accepted %d streams on one connection, echoed %d KiB, connection ended\n", res.streams, res.echoed>>10)
	return ln.Close()
}

// echoStream opens a stream, sends size pseudo-random bytes while reading the
// echo, and checks it.
func echoStream(ctx context.Context, conn *rudp.Conn, id, size int) error {
	stream, err := conn.OpenStream(ctx, nil) // Delivery: a byte stream
	if err != nil {
		return fmt.Errorf("stream %d: open: %w", id, err)
	}
	defer stream.Close()
	payload := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(id), byte(id >> 8)}).Read(payload)
	wrote := make(chan error, 1)
	go func() {
		for chunk := range slices.Chunk(payload, 32<<10) {
			if _, err := stream.Write(chunk); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- stream.CloseWrite() // the echo keeps coming
	}()
	echo, readErr := io.ReadAll(stream)
	if err := errors.Join(<-wrote, readErr); err != nil {
		return fmt.Errorf("stream %d: %w", id, err)
	}
	if !bytes.Equal(echo, payload) {
		return fmt.Errorf("stream %d: the echo of %d bytes differs from the %d sent", id, len(echo), len(payload))
	}
	return nil
}

type serverResult struct {
	streams int
	echoed  int64
	err     error
}

// serveOne accepts one rudp connection and echoes every stream the client
// opens on it until the client closes the connection.
func serveOne(ctx context.Context, ln *rudp.Listener) serverResult {
	c, err := ln.AcceptRUDP()
	if err != nil {
		return serverResult{err: err}
	}
	defer c.Close()
	var (
		res serverResult
		mu  sync.Mutex
		wg  sync.WaitGroup
	)
	for {
		stream, err := c.AcceptStream(ctx)
		if err != nil {
			break // the client closed the connection
		}
		res.streams++
		wg.Go(func() {
			n, err := io.Copy(stream, stream)
			err = errors.Join(err, stream.Close()) // after io.EOF: ends our side too
			mu.Lock()
			res.echoed += n
			res.err = errors.Join(res.err, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return res
}
