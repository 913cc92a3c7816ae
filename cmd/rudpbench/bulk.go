package main

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// bulkWrite is the size of each Write of the stream transports.
const bulkWrite = 64 << 10

// udpDatagram is the raw UDP baseline's payload: one send call each.
const udpDatagram = 1200

// gsoSegment and gsoSegments are udpgso's datagrams (the most a 1500-byte
// path carries over IPv4) and how many one send call passes (64 KiB).
const (
	gsoSegment  = 1472
	gsoSegments = 44
)

func (b *bench) runBulk() {
	im := b.impairment()
	size := int64(b.opts.SizeMiB) << 20
	b.each("bulk", "", func(t string, r *result) error {
		p, err := b.dial(t, nil, im)
		if err != nil {
			return err
		}
		defer p.Close()
		switch t {
		case "udp":
			return b.bulkUDP(p, size, im, r, 0)
		case "udpgso":
			if err := enableGRO(p.udpServer); err != nil {
				return err
			}
			return b.bulkUDP(p, size, im, r, gsoSegment)
		}
		return b.bulkStream(t, p, size, im, r)
	})
}

// timeLimit bounds a transfer of size bytes so a stalled one never hangs.
func (b *bench) timeLimit(size int64) time.Duration { return limitAt(size, b.opts.Rate) }

// limitAt bounds a transfer of size bytes through a bottleneck of rate
// bytes/s (0: none).
func limitAt(size, rate int64) time.Duration {
	d := 30 * time.Second
	if rate > 0 {
		d += time.Duration(float64(size) / float64(rate) * 3 * float64(time.Second))
	}
	return d
}

// progressTicker prints how far a long transfer is, once a second, until stop
// is closed.
func (b *bench) progressTicker(label string, got *atomic.Int64, total int64, start time.Time, stop <-chan struct{}) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
			n := got.Load()
			b.logf("  %s: %.1f/%d MiB, %.0f Mbit/s", label, float64(n)/(1<<20), total>>20, mbit(n, time.Since(start)))
		}
	}
}

// bulkStream moves size bytes from client to server over a byte stream and
// times it at the receiver.
func (b *bench) bulkStream(t string, p *pair, size int64, im impairment, r *result) error {
	limit := b.timeLimit(size)
	if im.active && im.up.Rate > 0 {
		limit = max(limit, limitAt(size, im.up.Rate))
	}
	var got atomic.Int64
	type outcome struct {
		n   int64
		at  time.Time
		err error
	}
	done := make(chan outcome, 1)
	start := time.Now()
	_ = p.server.SetReadDeadline(start.Add(limit))
	_ = p.client.SetWriteDeadline(start.Add(limit))
	cpu0, mem0 := markCPU(), readMem(false)
	go func() {
		buf := make([]byte, 256<<10)
		var n int64
		for n < size {
			k, err := p.server.Read(buf)
			n += int64(k)
			got.Store(n)
			if err != nil {
				if errors.Is(err, io.EOF) && n >= size {
					break
				}
				done <- outcome{n, time.Now(), err}
				return
			}
		}
		done <- outcome{n, time.Now(), nil}
	}()
	stop := make(chan struct{})
	go b.progressTicker("bulk "+t, &got, size, start, stop)
	defer close(stop)

	buf := make([]byte, bulkWrite)
	var writeErr error
	for sent := int64(0); sent < size; {
		k := int(min(int64(len(buf)), size-sent))
		n, err := p.client.Write(buf[:k])
		sent += int64(n)
		if err != nil {
			writeErr = err
			break
		}
	}
	o := <-done
	cpu1 := markCPU()
	if o.err != nil {
		return fmt.Errorf("receiver stopped after %d of %d bytes: %v (sender: %v)", o.n, size, o.err, writeErr)
	}
	elapsed := o.at.Sub(start)
	r.add("goodput", "Mbit/s", mbit(o.n, elapsed), "higher")
	r.add("time", "s", elapsed.Seconds(), "lower")
	cpu := addCPUPerGiB(r, cpu0, cpu1, o.n)
	mem1 := readMem(false)
	r.add("CPU", "cores", cpu.Seconds()/elapsed.Seconds(), "")
	r.add("allocs/MiB", "", float64(mem1.mallocs-mem0.mallocs)/(float64(o.n)/(1<<20)), "lower")
	if t == "rudp" {
		b.addRUDPStats(r, p.client)
	}
	return nil
}

// bulkUDP blasts size bytes of 1200-byte datagrams, one send call each, and
// counts what arrives. Datagrams lost to full socket buffers are simply not
// counted: goodput is the delivered rate. With seg set (udpgso) the
// datagrams are seg bytes, sent gsoSegments to a call (UDP_SEGMENT), and
// the receiver reads them coalesced (UDP_GRO).
func (b *bench) bulkUDP(p *pair, size int64, im impairment, r *result, seg int) error {
	var got atomic.Int64
	var last atomic.Int64 // unix nanoseconds of the last arrival
	var recvd atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		oob := make([]byte, groControlSpace)
		for {
			n, oobn, _, _, err := p.udpServer.ReadMsgUDP(buf, oob)
			if err != nil {
				return
			}
			got.Add(int64(n))
			k := 1
			if s := groSegment(oob[:oobn]); s > 0 {
				k = (n + s - 1) / s
			}
			recvd.Add(int64(k))
			last.Store(time.Now().UnixNano())
		}
	}()
	stop := make(chan struct{})
	start := time.Now()
	go b.progressTicker("bulk udp", &got, size, start, stop)
	cpu0, mem0 := markCPU(), readMem(false)
	dgram, per, oob := make([]byte, udpDatagram), 1, []byte(nil)
	if seg > 0 {
		dgram, per, oob = make([]byte, seg*gsoSegments), gsoSegments, gsoControl(seg)
	}
	count := size / int64(len(dgram)/per) / int64(per) * int64(per)
	for sent := int64(0); sent < count; sent += int64(per) {
		// ENOBUFS and the like are the nature of a blast: count as lost.
		if oob == nil {
			_, _ = p.udpClient.Write(dgram)
		} else {
			_, _, _ = p.udpClient.WriteMsgUDP(dgram, oob, nil)
		}
	}
	sendEnd := time.Now()
	// Wait for stragglers: until nothing arrived for 200 ms (plus the
	// impairment's delay).
	quiet := 200*time.Millisecond + im.rtt()
	for {
		time.Sleep(20 * time.Millisecond)
		l := time.Unix(0, last.Load())
		if time.Since(l) > quiet && time.Since(sendEnd) > quiet {
			break
		}
	}
	cpu1 := markCPU()
	mem1 := readMem(false)
	close(stop)
	_ = p.udpServer.SetReadDeadline(time.Now())
	<-done
	n := got.Load()
	if n == 0 {
		return errors.New("no datagram arrived")
	}
	elapsed := time.Unix(0, last.Load()).Sub(start)
	r.add("goodput", "Mbit/s", mbit(n, elapsed), "higher")
	r.add("time", "s", elapsed.Seconds(), "lower")
	cpu := addCPUPerGiB(r, cpu0, cpu1, n)
	r.add("CPU", "cores", cpu.Seconds()/cpu1.at.Sub(start).Seconds(), "")
	r.add("allocs/MiB", "", float64(mem1.mallocs-mem0.mallocs)/(float64(n)/(1<<20)), "lower")
	r.add("delivered", "%", 100*float64(recvd.Load())/float64(count), "higher")
	r.add("send rate", "Mbit/s", mbit(count*int64(len(dgram)/per), sendEnd.Sub(start)), "")
	return nil
}
