package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/rudp-go/rudp"
)

// rrSize is the ping-pong message size.
const rrSize = 64

// rrWarmup round trips are not counted (connection setup, slow start, JIT of
// the scheduler).
const rrWarmup = 50

// runRR ping-pongs once; with userspace loss, twice: first through the same
// proxy without the loss ("no loss"), so the lossy p99 has its own baseline
// in the same run (issue 12: loss should cost small messages no latency).
func (b *bench) runRR() {
	o := b.opts
	phase := ""
	if o.Env == "" && o.Loss > 0 {
		b.rrPhase("no loss", b.impairmentWith(0))
		phase = fmt.Sprintf("loss %g%%", 100*o.Loss)
	}
	b.rrPhase(phase, b.impairment())
	if o.Redundancy {
		b.rrRedundancyPhase(phase, b.impairment())
	}
}

func (b *bench) rrPhase(phase string, im impairment) {
	b.each("rr", phase, func(t string, r *result) error { return b.rrOnce(t, nil, im, r) })
}

// rrOnce ping-pongs over transport t (rudp with cfg) through im.
func (b *bench) rrOnce(t string, cfg *rudp.Config, im impairment, r *result) error {
	p, err := b.dial(t, cfg, im)
	if err != nil {
		return err
	}
	defer p.Close()
	if t == "udp" {
		return b.rrUDP(p, im, r)
	}
	if err := b.rrStream(t, p, r); err != nil {
		return err
	}
	if t == "rudp" {
		addRedundancyStats(r, p)
	}
	return nil
}

// rrStream ping-pongs 64-byte messages over a byte stream for -duration.
func (b *bench) rrStream(t string, p *pair, r *result) error {
	serverErr := make(chan error, 1)
	go func() {
		buf := make([]byte, rrSize)
		for {
			if _, err := io.ReadFull(p.server, buf); err != nil {
				serverErr <- err
				return
			}
			if _, err := p.server.Write(buf); err != nil {
				serverErr <- err
				return
			}
		}
	}()
	msg := make([]byte, rrSize)
	reply := make([]byte, rrSize)
	samples := make([]time.Duration, 0, 1<<16)
	var w rrWindow
	lastLog := time.Now()
	// One deadline for the whole run, set once: a deadline per round trip
	// would measure SetDeadline as much as the round trip.
	_ = p.client.SetDeadline(time.Now().Add(b.opts.Duration + 30*time.Second))
	for i := 0; w.next(b, i); i++ {
		binary.LittleEndian.PutUint64(msg, uint64(i))
		t0 := time.Now()
		if _, err := p.client.Write(msg); err != nil {
			return fmt.Errorf("round trip %d: write: %w", i, err)
		}
		if _, err := io.ReadFull(p.client, reply); err != nil {
			select {
			case serr := <-serverErr:
				return fmt.Errorf("round trip %d: read: %w (server: %v)", i, err, serr)
			default:
			}
			return fmt.Errorf("round trip %d: read: %w", i, err)
		}
		rtt := time.Since(t0)
		if binary.LittleEndian.Uint64(reply) != uint64(i) {
			return fmt.Errorf("round trip %d: reply out of order", i)
		}
		if i >= rrWarmup {
			samples = append(samples, rtt)
		}
		if time.Since(lastLog) > time.Second {
			lastLog = time.Now()
			b.debugf("  rr %s: %d round trips", t, len(samples))
		}
	}
	w.report(r, samples)
	if t == "rudp" {
		b.addRUDPStats(r, p.client)
	}
	return nil
}

// rrUDP ping-pongs 64-byte datagrams. A datagram lost on the way (under
// impairment) counts as lost after a timeout; late replies are discarded by
// their sequence number.
func (b *bench) rrUDP(p *pair, im impairment, r *result) error {
	go echoUDP(p.udpServer)
	timeout := 200*time.Millisecond + 2*im.rtt()
	msg := make([]byte, rrSize)
	reply := make([]byte, 2048)
	samples := make([]time.Duration, 0, 1<<16)
	var lost int
	var w rrWindow
	for i := 0; w.next(b, i); i++ {
		binary.LittleEndian.PutUint64(msg, uint64(i))
		t0 := time.Now()
		if _, err := p.udpClient.Write(msg); err != nil {
			return fmt.Errorf("round trip %d: write: %w", i, err)
		}
		_ = p.udpClient.SetReadDeadline(t0.Add(timeout))
		for {
			n, err := p.udpClient.Read(reply)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					if i >= rrWarmup {
						lost++
					}
					break
				}
				continue // e.g. ECONNREFUSED reported from an earlier datagram
			}
			if n < 8 || binary.LittleEndian.Uint64(reply) != uint64(i) {
				continue // a late reply to an earlier ping
			}
			if i >= rrWarmup {
				samples = append(samples, time.Since(t0))
			}
			break
		}
	}
	if len(samples) == 0 {
		return errors.New("no reply arrived")
	}
	w.report(r, samples)
	n := float64(len(samples))
	r.add("lost", "%", 100*float64(lost)/(n+float64(lost)), "lower")
	return nil
}

// rrWindow is the measured part of a ping-pong: it opens after rrWarmup
// round trips and closes -duration later; CPU and allocations are counted
// inside it.
type rrWindow struct {
	start, end time.Time
	cpu0       time.Duration
	mem0       memSnapshot
}

// next says whether round trip i is to be made, opening the window when
// the warm-up is over.
func (w *rrWindow) next(b *bench, i int) bool {
	if i == rrWarmup {
		w.start, w.cpu0, w.mem0 = time.Now(), cpuTime(), readMem(false)
		w.end = w.start.Add(b.opts.Duration)
	}
	return (i <= rrWarmup || !time.Now().After(w.end)) && b.ctx.Err() == nil
}

// report closes the window and adds to r the latencies of samples (the
// round trips inside it) and what a round trip cost.
func (w *rrWindow) report(r *result, samples []time.Duration) {
	elapsed := time.Since(w.start)
	cpu, mem1 := cpuTime()-w.cpu0, readMem(false)
	n := float64(len(samples))
	addLatencies(r, samples)
	r.add("round trips/s", "", n/elapsed.Seconds(), "higher")
	r.add("CPU/round trip", "µs", float64(cpu)/float64(time.Microsecond)/n, "lower")
	r.add("allocs/round trip", "", float64(mem1.mallocs-w.mem0.mallocs)/n, "lower")
}

// addRUDPStats adds the connection's own counters, which say why a number is
// what it is (retransmissions, RTT estimate).
func (b *bench) addRUDPStats(r *result, c net.Conn) {
	rc, ok := c.(*rudp.Conn)
	if !ok {
		return
	}
	s := rc.Stats()
	r.add("rudp srtt", "µs", float64(s.RTT.Smoothed)/float64(time.Microsecond), "")
	r.add("rudp pkts sent", "", float64(s.PacketsSent), "")
	r.add("rudp pkts lost", "", float64(s.PacketsLost), "")
	r.add("rudp retransmits", "", float64(s.FragmentsRetransmitted), "")
	r.add("rudp cwnd at end", "KiB", float64(s.CongestionWindow)/1024, "")
}
