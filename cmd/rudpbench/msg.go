package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/rudp-go/rudp"
)

// msgSize is the size of one small message (a game-state update, a quote).
const msgSize = 64

// defaultMsgLoss is the msg scenario's impaired phase when no impairment flag
// is given.
const defaultMsgLoss = 0.05

func (b *bench) runMsg() {
	o := b.opts
	if o.Env != "" {
		// The impairment is applied outside the process (netns): one phase.
		b.msgPhase("", b.impairment())
		return
	}
	b.msgPhase("clean", impairment{})
	im := b.impairment()
	phase := describeImpairment(o)
	if !im.active {
		im = b.impairmentWith(defaultMsgLoss)
		phase = fmt.Sprintf("loss %g%%", 100*defaultMsgLoss)
	} else if o.Loss > 0 && !o.impairedBeyondLoss() {
		phase = fmt.Sprintf("loss %g%%", 100*o.Loss)
	}
	b.msgPhase(phase, im)
}

func (o *options) impairedBeyondLoss() bool {
	return o.Dup > 0 || o.Reorder > 0 || o.Delay > 0 || o.Jitter > 0 || o.Rate > 0
}

// msgTracker records what the receiver saw.
type msgTracker struct {
	epoch      time.Time
	seen       []bool
	latencies  []time.Duration
	maxSeq     int64
	late       int // arrived after a newer message (an Order violation for rudp)
	duplicates int
}

func newMsgTracker(epoch time.Time, total int) *msgTracker {
	return &msgTracker{epoch: epoch, seen: make([]bool, total), latencies: make([]time.Duration, 0, total), maxSeq: -1}
}

func (m *msgTracker) record(p []byte) {
	if len(p) < 16 {
		return
	}
	seq := int64(binary.LittleEndian.Uint64(p))
	sent := time.Duration(binary.LittleEndian.Uint64(p[8:]))
	if seq < 0 || seq >= int64(len(m.seen)) {
		return
	}
	if m.seen[seq] {
		m.duplicates++
		return
	}
	m.seen[seq] = true
	m.latencies = append(m.latencies, time.Since(m.epoch)-sent)
	if seq < m.maxSeq {
		m.late++
	} else {
		m.maxSeq = seq
	}
}

func (b *bench) msgPhase(phase string, im impairment) {
	cfg := &rudp.Config{Guarantee: rudp.Order}
	b.each("msg", phase, func(t string, r *result) error {
		p, err := b.dial(t, cfg, im)
		if err != nil {
			return err
		}
		defer p.Close()
		if t == "tcp" && im.active && im.up.Loss > 0 {
			b.rep.note("msg [%s] tcp: the relay cannot lose bytes of a TCP stream, so TCP ran without loss; use -netns for a fair comparison", phase)
		}
		return b.msgRun(t, p, im, r)
	})
}

// msgRun sends -msgrate messages per second for -duration and measures the
// one-way delivery latency of each message that arrives.
func (b *bench) msgRun(t string, p *pair, im impairment, r *result) error {
	total := int(b.opts.Duration.Seconds() * float64(b.opts.MsgRate))
	total = max(total, 10)
	interval := time.Second / time.Duration(b.opts.MsgRate)
	epoch := time.Now()
	tr := newMsgTracker(epoch, total)

	recvDone := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			var n int
			var err error
			switch t {
			case "rudp":
				n, _, err = p.server.(*rudp.Conn).ReadMessage(buf)
			case "tcp":
				n, err = io.ReadFull(p.server, buf[:msgSize])
			default:
				n, _, err = p.udpServer.ReadFrom(buf)
			}
			if err != nil {
				recvDone <- err
				return
			}
			tr.record(buf[:n])
		}
	}()

	msg := make([]byte, msgSize)
	cpu0, mem0 := cpuTime(), readMem(false)
	start := time.Now()
	var sendErr error
	for i := 0; i < total && b.ctx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		binary.LittleEndian.PutUint64(msg, uint64(i))
		binary.LittleEndian.PutUint64(msg[8:], uint64(time.Since(epoch)))
		var err error
		switch t {
		case "rudp":
			err = p.client.(*rudp.Conn).SendMessage(rudp.Order, msg)
		case "tcp":
			_, err = p.client.Write(msg)
		default:
			_, err = p.udpClient.Write(msg)
		}
		if err != nil && t != "udp" {
			sendErr = fmt.Errorf("message %d: %w", i, err)
			break
		}
	}
	// Let the last messages arrive, then stop the receiver.
	time.Sleep(100*time.Millisecond + im.rtt())
	cpu, mem1 := cpuTime()-cpu0, readMem(false)
	if p.server != nil {
		_ = p.server.SetReadDeadline(time.Now())
	} else {
		_ = p.udpServer.SetReadDeadline(time.Now())
	}
	rerr := <-recvDone
	if sendErr != nil {
		return sendErr
	}
	if len(tr.latencies) == 0 {
		return fmt.Errorf("no message arrived (receiver: %v)", rerr)
	}
	addLatencies(r, tr.latencies)
	r.add("delivered", "%", 100*float64(len(tr.latencies))/float64(total), "higher")
	r.add("late (order)", "", float64(tr.late), "lower")
	r.add("duplicates", "", float64(tr.duplicates), "lower")
	r.add("CPU/msg", "µs", float64(cpu)/float64(time.Microsecond)/float64(total), "lower")
	r.add("allocs/msg", "", float64(mem1.mallocs-mem0.mallocs)/float64(total), "lower")
	if t == "rudp" {
		b.addRUDPStats(r, p.client)
	}
	return nil
}
