package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// runDialRR is the "dialrr" scenario: -dialconns clients dial at once, each
// makes -rounds round trips of 64 bytes, and the time until the last one is
// done is what an application that opens many short-lived connections waits.
// Memory per connection is read while all of them are open and have carried
// data (both ends, this process): heap and stacks, and the resident set.
func (b *bench) runDialRR() {
	im := b.impairment()
	b.rep.note("dialrr: memory per connection is read with all K connections open after their round trips, both ends in this process: heap+stacks (after GC) and RSS (VmRSS, which keeps what the Go runtime has not returned to the kernel); kernel socket memory is not counted")
	base := runtime.NumGoroutine()
	b.each("dialrr", "", func(t string, r *result) error {
		if left := settleGoroutines(base, 2*time.Second); left > 0 {
			b.rep.note("dialrr %s: %d goroutines of earlier runs were still alive 2s after their connections were closed", t, left)
		}
		return b.dialRR(t, im, r)
	})
}

func (b *bench) dialRR(t string, im impairment, r *result) error {
	k, rounds := b.opts.DialConns, b.opts.Rounds
	if need, have := 2*uint64(k)+64, fdLimit(); have > 0 && need > have {
		return fmt.Errorf("needs about %d file descriptors for K=%d, the limit is %d (raise ulimit -n)", need, k, have)
	}
	// What earlier runs freed goes back to the kernel first, or it would
	// be reused here and this run's RSS would look smaller than it is.
	debug.FreeOSMemory()
	mem0, rss0 := readMem(true), readRSS()
	stack0 := stackInuse()
	cs, err := b.connSetup(t, im, k)
	if err != nil {
		return err
	}

	// The servers echo every 64-byte message until their peer closes.
	var servers serverEnds
	if cs.accept != nil {
		servers.acceptAll(cs.accept, func(c net.Conn) {
			buf := make([]byte, rrSize)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		})
	}
	defer func() {
		cs.close()
		servers.closeAll()
		servers.wg.Wait()
	}()

	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	clients := make([]net.Conn, k)
	dialTimes := make([]time.Duration, k)
	doneTimes := make([]time.Duration, k)
	var failures atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	var done sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for i := range k {
		done.Add(1)
		go func() {
			defer done.Done()
			c, err := cs.dial(ctx)
			if err != nil {
				fail(err)
				return
			}
			clients[i] = c
			dialTimes[i] = time.Since(start)
			if deadline, ok := ctx.Deadline(); ok {
				_ = c.SetDeadline(deadline)
			}
			if err := roundTrips(t, c, rounds, im); err != nil {
				fail(err)
				return
			}
			doneTimes[i] = time.Since(start)
		}()
	}
	done.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	mem1, rss1 := readMem(true), readRSS()
	stack1 := stackInuse()
	if b.opts.memProfile != "" {
		// What the active connections hold, for go tool pprof -sample_index=inuse_space.
		if err := writeNamedProfile("heap", b.opts.memProfile+".dialrr-"+t); err != nil {
			b.logf("  dialrr %s: heap profile: %v", t, err)
		}
	}
	for _, c := range clients {
		if c != nil {
			c.Close()
		}
	}
	ok := k - int(failures.Load())
	b.logf("  dialrr %s: %d connections with %d round trips each in %.1f ms (%d failed)", t, ok, rounds, float64(elapsed)/float64(time.Millisecond), failures.Load())
	if ok == 0 {
		return fmt.Errorf("no connection succeeded: %v", firstErr.Load())
	}
	if f := failures.Load(); f > 0 {
		b.rep.note("dialrr %s: %d of %d connections failed; first error: %v", t, f, k, firstErr.Load())
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.add("all done", "ms", ms(elapsed), "lower")
	dials := nonZero(dialTimes)
	r.add("dialed p50", "ms", ms(percentile(dials, 0.5)), "lower")
	r.add("dialed p99", "ms", ms(percentile(dials, 0.99)), "lower")
	r.add("done p50", "ms", ms(percentile(nonZero(doneTimes), 0.5)), "lower")
	r.add("failures", "", float64(failures.Load()), "lower")
	// The process's CPU (both ends), which the load of other processes
	// does not inflate as it does the times.
	r.add("CPU/conn", "µs", float64(cpu)/float64(time.Microsecond)/float64(ok), "lower")
	r.add("mem/conn active", "KiB", float64(int64(mem1.inuse)-int64(mem0.inuse))/float64(ok)/1024, "lower")
	// The goroutine stacks in that figure: the servers' echo loops (one
	// a connection for every transport), and rudp's reader goroutine of
	// each dialed socket; a Read that reads its socket itself runs the
	// protocol on its caller's stack.
	r.add("stacks/conn active", "KiB", float64(int64(stack1)-int64(stack0))/float64(ok)/1024, "lower")
	if rss0 > 0 && rss1 > 0 {
		r.add("RSS/conn active", "KiB", float64(rss1-rss0)/float64(ok)/1024, "lower")
	}
	return nil
}

// roundTrips makes n round trips of rrSize bytes over c. Over raw UDP a
// datagram lost on the way is sent again after a timeout, as the raw UDP
// dial does.
func roundTrips(t string, c net.Conn, n int, im impairment) error {
	msg := make([]byte, rrSize)
	reply := make([]byte, 2048)
	for i := range n {
		binary.LittleEndian.PutUint64(msg, uint64(i))
		if t != "udp" {
			if _, err := c.Write(msg); err != nil {
				return fmt.Errorf("round trip %d: write: %w", i, err)
			}
			if _, err := io.ReadFull(c, reply[:rrSize]); err != nil {
				return fmt.Errorf("round trip %d: read: %w", i, err)
			}
			if !bytes.Equal(reply[:rrSize], msg) {
				return fmt.Errorf("round trip %d: reply differs", i)
			}
			continue
		}
		if err := udpRoundTrip(c, msg, reply, 200*time.Millisecond+2*im.rtt()); err != nil {
			return fmt.Errorf("round trip %d: %w", i, err)
		}
	}
	return nil
}

// udpRoundTrip sends msg until its echo arrives, up to 5 times.
func udpRoundTrip(c net.Conn, msg, reply []byte, timeout time.Duration) error {
	for range 5 {
		if _, err := c.Write(msg); err != nil {
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		for {
			n, err := c.Read(reply)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				continue
			}
			if bytes.Equal(reply[:n], msg) {
				return nil
			}
		}
	}
	return errors.New("no echo")
}

// nonZero returns the non-zero durations of d, sorted.
func nonZero(d []time.Duration) []time.Duration {
	out := make([]time.Duration, 0, len(d))
	for _, v := range d {
		if v != 0 {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// stackInuse returns the bytes of goroutine stacks in use.
func stackInuse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.StackInuse
}

// readRSS returns the process's resident set in bytes (Linux: VmRSS in
// /proc/self/status), 0 where it cannot be read.
func readRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 1 {
			return 0
		}
		kib, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0
		}
		return kib << 10
	}
	return 0
}
