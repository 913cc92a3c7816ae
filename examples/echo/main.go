// Command echo is the smallest complete rudp program: a server and a client
// in one process, talking over real UDP on loopback.
//
// The server listens on 127.0.0.1 (a free port), accepts a connection and
// echoes every byte back. The client dials it, writes -n messages of -size
// bytes while reading the echo concurrently, checks that every byte came
// back intact and in order, prints the connection's statistics and closes.
// With the default Config a rudp connection is a reliable ordered byte
// stream, exactly like TCP: the code below is the code you would write for
// net.Listen("tcp", …) and net.Dial("tcp", …).
//
//	go run ./examples/echo
//	go run ./examples/echo -n 10000 -size 1400
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"slices"
	"time"

	"github.com/rudp-go/rudp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// serverResult is what the echo server reports when its connection ends.
type serverResult struct {
	peer   net.Addr
	echoed int64
	err    error
}

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	defer func() {
		// After a timeout or ^C, the I/O error it caused (net.ErrClosed)
		// says less than why. (ctx is the timeout's context below.)
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
	}()
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	messages := fs.Int("n", 1000, "number of `messages` the client sends")
	size := fs.Int("size", 1024, "`bytes` per message")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *messages < 1 || *size < 1 {
		return errors.New("-n and -size must be at least 1")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	// The server: a nil Config means the defaults (Delivery: a reliable byte stream).
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Fprintf(out, "server: listening on %s (udp)\n", ln.Addr())

	served := make(chan serverResult, 1)
	go func() { served <- serveOne(ln) }()

	// The client.
	start := time.Now()
	conn, err := rudp.DialContext(ctx, "udp", ln.Addr().String(), nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Whatever blocks below (Write, Read, Accept) returns once ctx ends.
	stopOnCancel := context.AfterFunc(ctx, func() { conn.Close(); ln.Close() })
	defer stopOnCancel()
	fmt.Fprintf(out, "client: connected to %s from local port %d in %v (two round trips: the server first hands out an address-validation cookie)\n",
		conn.RemoteAddr(), conn.LocalAddr().(*net.UDPAddr).Port, time.Since(start).Round(time.Microsecond))

	// Pseudo-random payload, so that a misplaced or corrupted byte cannot go unnoticed.
	payload := make([]byte, *messages**size)
	rand.NewChaCha8([32]byte{'e', 'c', 'h', 'o'}).Read(payload)

	// Write and read at the same time: the server echoes as it receives, and
	// a client that wrote everything before reading would stall once the
	// buffers in both directions are full (as it would over TCP).
	start = time.Now()
	wrote := make(chan error, 1)
	go func() {
		for msg := range slices.Chunk(payload, *size) {
			if _, err := conn.Write(msg); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	echo := make([]byte, len(payload))
	_, readErr := io.ReadFull(conn, echo)
	writeErr := <-wrote
	if err := errors.Join(writeErr, readErr); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if !bytes.Equal(payload, echo) {
		return errors.New("client: the echo differs from what was sent")
	}
	elapsed := time.Since(start)
	fmt.Fprintf(out, "client: sent %d messages / %d bytes, echoed back intact in %v (%.1f MiB/s each way)\n",
		*messages, len(payload), elapsed.Round(time.Microsecond), float64(len(payload))/(1<<20)/elapsed.Seconds())
	printStats(out, "client", conn.Stats())

	// A graceful close: the server reads io.EOF after the last byte.
	if err := conn.Close(); err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	fmt.Fprintln(out, "client: closed")
	var res serverResult
	select {
	case res = <-served:
	case <-ctx.Done():
		return errors.New("server did not finish")
	}
	if res.err != nil {
		return fmt.Errorf("server: %w", res.err)
	}
	if res.echoed != int64(len(payload)) {
		return fmt.Errorf("server: echoed %d bytes, want %d", res.echoed, len(payload))
	}
	fmt.Fprintf(out, "server: echoed %d bytes to %s, then read EOF and closed\n", res.echoed, res.peer)
	return ln.Close()
}

// serveOne accepts one connection and echoes it until the client closes.
func serveOne(ln *rudp.Listener) serverResult {
	c, err := ln.Accept()
	if err != nil {
		return serverResult{err: err}
	}
	n, err := io.Copy(c, c) // returns nil at io.EOF: the client closed gracefully
	return serverResult{peer: c.RemoteAddr(), echoed: n, err: errors.Join(err, c.Close())}
}

func printStats(out io.Writer, who string, s rudp.Stats) {
	fmt.Fprintf(out, "%s: stats: RTT %v (min %v), %d packets sent / %d received, %d lost, %d fragments retransmitted, congestion window %d bytes\n",
		who, s.RTT.Smoothed.Round(time.Microsecond), s.RTT.Min.Round(time.Microsecond), s.PacketsSent, s.PacketsReceived,
		s.PacketsLost, s.FragmentsRetransmitted, s.CongestionWindow)
}
