package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/rudp-go/rudp/impair"
)

// runProxy is the "proxy" subcommand: an impair.Proxy from the command line,
// between any UDP client and server (rudp or not), until ^C.
//
//	rudpbench proxy -listen 127.0.0.1:9001 -to 127.0.0.1:9000 -loss 0.05 -delay 25ms
func runProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rudpbench proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rudpbench proxy -to host:port [-listen host:port] [impairment flags]\n\n"+
			"Relays UDP between clients (who send to -listen) and the server at -to, impairing\n"+
			"each direction as the flags say (each flag applies to both directions), until interrupted.\n\nflags:\n")
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "127.0.0.1:0", "`address` clients send to (port 0: a free port, printed)")
	to := fs.String("to", "", "`address` of the server datagrams are relayed to (required)")
	var c impair.Config
	fs.Float64Var(&c.Loss, "loss", 0, "probability that a datagram is dropped")
	fs.Float64Var(&c.Duplicate, "dup", 0, "probability that a datagram is delivered twice")
	fs.Float64Var(&c.Reorder, "reorder", 0, "probability that a datagram is held back and overtaken")
	fs.Float64Var(&c.Corrupt, "corrupt", 0, "probability that one bit of a datagram is flipped")
	fs.DurationVar(&c.Delay, "delay", 0, "one-way delay (the round trip gains twice this)")
	fs.DurationVar(&c.Jitter, "jitter", 0, "extra uniformly random one-way delay in [0, jitter]")
	rate := fs.String("rate", "", "bottleneck rate, e.g. 100mbit, 1gbit, 12.5MB (bytes/s); empty: unlimited")
	fs.IntVar(&c.QueueBytes, "queue", 0, "bottleneck queue in bytes (0: 64 KiB)")
	fs.IntVar(&c.MaxDatagramSize, "maxdatagram", 0, "largest datagram (UDP payload bytes) relayed, as a path MTU bounds it (1472: an Ethernet path over IPv4); longer ones are dropped; 0: no limit")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the upstream direction's random decisions (downstream: seed+1)")
	every := fs.Duration("stats", 0, "print the counts every `interval` (0: only at exit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("proxy: unexpected argument %q", fs.Arg(0))
	}
	if *to == "" {
		fs.Usage()
		return errors.New("proxy: -to is required")
	}
	if *rate != "" {
		r, err := parseRate(*rate)
		if err != nil {
			return fmt.Errorf("proxy: -rate: %w", err)
		}
		c.Rate = r
	}
	if *every < 0 {
		return fmt.Errorf("proxy: -stats = %v, want >= 0", *every)
	}
	up, down := c, c
	down.Seed = c.Seed + 1
	p, err := impair.NewProxy(*listen, *to, up, down)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	fmt.Fprintf(stdout, "proxy: %s -> %s\n", p.Addr(), *to)

	var tick <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			printProxyStats(stdout, p.Stats())
		case <-ctx.Done():
			// Closed first: its goroutines have counted every datagram they wrote.
			err := p.Close()
			printProxyStats(stdout, p.Stats())
			return err
		}
	}
}

func printProxyStats(w io.Writer, s impair.ProxyStats) {
	dir := func(name string, d impair.Stats) {
		fmt.Fprintf(w, "proxy: %s: %d sent (%d bytes), %d lost, %d dropped by the queue, %d too big, %d duplicated, %d reordered, %d corrupted\n",
			name, d.Sent, d.SentBytes, d.DroppedLoss, d.DroppedQueue, d.DroppedTooBig, d.Duplicated, d.Reordered, d.Corrupted)
	}
	dir("up", s.Up)
	dir("down", s.Down)
}
