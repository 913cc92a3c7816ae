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
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/examples/internal/demo"
)

func main() { demo.Main("streams", run) }

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("streams", flag.ContinueOnError)
	streams := fs.Int("streams", 32, "number of concurrent `streams`")
	sizeKiB := fs.Int("kib", 1024, "`KiB` echoed on each stream")
	var link demo.Link
	link.Flags(fs)
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *streams < 1 || *sizeKiB < 1 {
		return errors.New("-streams and -kib must be at least 1")
	}
	if err := link.Check(); err != nil {
		return err
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

	addr, closeRelay, err := link.Relay(ln.Addr().String(), out)
	if err != nil {
		return err
	}
	defer closeRelay()
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
		return demo.Fail(ctx, fmt.Errorf("client: %w", err))
	}
	elapsed := time.Since(start)
	total := int64(*streams) * int64(*sizeKiB) << 10
	fmt.Fprintf(out, "client: %d streams each echoed %s concurrently, %s verified in %v (%.1f MiB/s each way)\n",
		*streams, demo.Size(int64(*sizeKiB)<<10), demo.Size(total), demo.Round(elapsed), float64(total)/(1<<20)/elapsed.Seconds())
	fmt.Fprintf(out, "client: %s\n", demo.Completions(took))
	s := conn.Stats()
	fmt.Fprintf(out, "client: rudp stats: RTT %v, %d packets sent / %d received, %d lost, %d fragments retransmitted\n",
		demo.Round(s.RTT.Smoothed), s.PacketsSent, s.PacketsReceived, s.PacketsLost, s.FragmentsRetransmitted)

	// Closing the connection ends the server's AcceptStream.
	if err := conn.Close(); err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	var res serverResult
	select {
	case res = <-served:
	case <-ctx.Done():
		return demo.Fail(ctx, errors.New("server did not finish"))
	}
	if res.err != nil {
		return demo.Fail(ctx, fmt.Errorf("server: %w", res.err))
	}
	fmt.Fprintf(out, "server: accepted %d streams on one connection, echoed %s, connection ended\n", res.streams, demo.Size(res.echoed))
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
	if i := demo.FirstDifference(echo, payload); i >= 0 {
		return fmt.Errorf("stream %d: echo of %d bytes differs from the %d sent at byte %d", id, len(echo), len(payload), i)
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
