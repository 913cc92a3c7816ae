package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/rudp-go/rudp"
)

// The shard scenario: -streams connections move -size MiB between them at
// once to a server in a process of its own (so that the server's CPU is
// measured alone), whose rudp Listener serves the port with 1 socket and
// then with -sockets (Config.Sockets: SO_REUSEPORT, steered by connection
// ID); TCP's 16 streams to one listener are the baseline of the same run.
// Each connection sends an 8-byte length, then that many bytes; the server
// answers one byte once it read them all. Goodput is the bytes over the
// time from the first write to the last answer; the server's CPU is its
// getrusage (user + system, which includes the softirq work the kernel
// charged to it) from its first read to its last answer.

// shardServerCmd is the hidden subcommand the scenario runs its server
// process with: "rudpbench shardserver -transport T -sockets N -streams K".
const shardServerCmd = "shardserver"

func (b *bench) runShard() {
	size := int64(b.opts.SizeMiB) << 20
	phases := []int{1}
	if b.opts.Sockets > 1 {
		phases = append(phases, b.opts.Sockets)
	}
	b.rep.note("shard: the server runs in a process of its own; its CPU figures are that process's getrusage (user + system, with the softirq work charged to it), the client's this one's")
	var rudpRuns []*result
	for _, sockets := range phases {
		phase := fmt.Sprintf("%d streams, %d socket", b.opts.Streams, sockets)
		if sockets > 1 {
			phase += "s"
		}
		// TCP (one listener) runs in every phase: each table has its
		// baseline of the same minute.
		for _, t := range b.opts.Transports {
			if t == "udp" || b.ctx.Err() != nil {
				continue // raw UDP has no connections to spread
			}
			r := &result{Scenario: "shard", Phase: phase, Transport: t}
			b.logf("shard [%s] %s ...", phase, t)
			if err := b.shardRun(t, sockets, size, r); err != nil {
				r.Error = err.Error()
				r.Metrics = nil
				b.logf("shard [%s] %s: %v", phase, t, err)
			}
			b.rep.Results = append(b.rep.Results, r)
			if t == "rudp" {
				rudpRuns = append(rudpRuns, r)
			}
		}
	}
	if len(rudpRuns) == 2 && rudpRuns[0].Error == "" && rudpRuns[1].Error == "" {
		r := &result{Scenario: "shard", Phase: fmt.Sprintf("%d sockets vs 1", b.opts.Sockets), Transport: "rudp"}
		for _, name := range []string{"goodput", "server CPU/GiB", "client CPU/GiB"} {
			one, _ := rudpRuns[0].get(name)
			more, _ := rudpRuns[1].get(name)
			if one > 0 {
				r.add(name+" ratio", "x", more/one, "")
			}
		}
		b.rep.Results = append(b.rep.Results, r)
	}
}

// shardRun starts the server process, runs the transfer and records it.
func (b *bench) shardRun(t string, sockets int, size int64, r *result) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.timeLimit(size)+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, shardServerCmd, "-transport", t,
		"-sockets", fmt.Sprint(sockets), "-streams", fmt.Sprint(b.opts.Streams))
	cmd.Stderr = b.progress
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	addr, err := shardLine(lines, "addr ")
	if err != nil {
		return err
	}
	conns := make([]net.Conn, b.opts.Streams)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		if t == "tcp" {
			conns[i], err = net.Dial("tcp", addr)
		} else {
			conns[i], err = rudp.Dial("udp", addr, b.shardConfig(1))
		}
		if err != nil {
			return fmt.Errorf("dial %d: %w", i, err)
		}
	}
	each := size / int64(len(conns))
	cpu0 := cpuTime()
	start := time.Now()
	errs := make(chan error, len(conns))
	for _, c := range conns {
		go func() { errs <- shardSend(c, each, start.Add(b.timeLimit(size))) }()
	}
	for range conns {
		if err := <-errs; err != nil {
			return err
		}
	}
	elapsed := time.Since(start)
	clientCPU := cpuTime() - cpu0
	serverCPU, err := shardLine(lines, "cpu ")
	if err != nil {
		return err
	}
	var server time.Duration
	if server, err = time.ParseDuration(serverCPU); err != nil {
		return fmt.Errorf("server CPU %q: %w", serverCPU, err)
	}
	total := each * int64(len(conns))
	gib := float64(total) / (1 << 30)
	r.add("goodput", "Mbit/s", mbit(total, elapsed), "higher")
	r.add("time", "s", elapsed.Seconds(), "lower")
	r.add("server CPU/GiB", "s", server.Seconds()/gib, "lower")
	r.add("server CPU", "cores", server.Seconds()/elapsed.Seconds(), "")
	r.add("client CPU/GiB", "s", clientCPU.Seconds()/gib, "lower")
	return nil
}

// shardConfig is the rudp Config of the scenario's ends (the flags that
// apply to every rudp run: -nogso, -psk, -datagram), with sockets.
func (b *bench) shardConfig(sockets int) *rudp.Config {
	c := &rudp.Config{DisableGSO: b.opts.NoGSO, MaxDatagramSize: b.opts.Datagram}
	if b.opts.PSK {
		c.PSK = benchPSK[:]
	}
	if sockets > 1 {
		c.Sockets = sockets
	}
	return c
}

// shardSend sends n bytes, preceded by their count, and waits for the
// server's one-byte answer.
func shardSend(c net.Conn, n int64, deadline time.Time) error {
	_ = c.SetDeadline(deadline)
	buf := make([]byte, bulkWrite)
	binary.BigEndian.PutUint64(buf, uint64(n))
	if _, err := c.Write(buf[:8]); err != nil {
		return err
	}
	for sent := int64(0); sent < n; {
		k, err := c.Write(buf[:min(int64(len(buf)), n-sent)])
		sent += int64(k)
		if err != nil {
			return err
		}
	}
	_, err := io.ReadFull(c, buf[:1])
	return err
}

// shardLine reads the server process's next line, which must start with
// prefix, and returns the rest.
func shardLine(lines *bufio.Scanner, prefix string) (string, error) {
	if !lines.Scan() {
		return "", fmt.Errorf("the server process ended: %v", lines.Err())
	}
	rest, ok := strings.CutPrefix(lines.Text(), prefix)
	if !ok {
		return "", fmt.Errorf("the server process said %q, want %q...", lines.Text(), prefix)
	}
	return rest, nil
}

// runShardServer is the server process of the shard scenario: it listens
// on loopback, prints "addr A", serves -streams connections (each an
// 8-byte count, that many bytes, a one-byte answer), prints "cpu D" (its
// CPU time from the first connection's first bytes to the last answer),
// and exits when its stdin closes.
func runShardServer(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(shardServerCmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	transport := fs.String("transport", "rudp", "rudp or tcp")
	sockets := fs.Int("sockets", 1, "rudp: Config.Sockets")
	streams := fs.Int("streams", 16, "connections to serve")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ln net.Listener
	var err error
	if *transport == "tcp" {
		ln, err = net.Listen("tcp", loopback)
	} else {
		b := &bench{opts: &options{}}
		ln, err = rudp.Listen("udp", loopback, b.shardConfig(*sockets))
	}
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Fprintf(stdout, "addr %s\n", ln.Addr())
	var (
		once  sync.Once
		cpu0  time.Duration
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for range *streams {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		wg.Go(func() {
			if err := shardReceive(c, func() { once.Do(func() { cpu0 = cpuTime() }) }); err != nil {
				errMu.Lock()
				if first == nil {
					first = err
				}
				errMu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	fmt.Fprintf(stdout, "cpu %v\n", cpuTime()-cpu0)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// shardReceive reads one connection's count and bytes (started, once the
// count arrived) and answers.
func shardReceive(c net.Conn, started func()) error {
	buf := make([]byte, 256<<10)
	if _, err := io.ReadFull(c, buf[:8]); err != nil {
		return err
	}
	started()
	for left := int64(binary.BigEndian.Uint64(buf)); left > 0; {
		k, err := c.Read(buf[:min(int64(len(buf)), left)])
		left -= int64(k)
		if err != nil && left > 0 {
			return err
		}
	}
	_, err := c.Write([]byte{1})
	return err
}
