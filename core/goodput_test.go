package core_test

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

var goodputFlag = flag.Bool("goodput", false, "print the goodput table (loss x RTT through a simulated bottleneck)")

// goodputBandwidth is the simulated bottleneck: 10 MB/s.
const goodputBandwidth = 10_000_000

// goodput runs a one-way bulk transfer from a to b through a bottleneck of
// goodputBandwidth with a drop-tail queue of one bandwidth-delay product,
// the given random loss after the queue and round-trip time, and returns
// the Delivery bytes per second the receiver read after a warm-up, as a
// fraction of the bottleneck bandwidth.
func goodput(seed uint64, loss float64, rtt, measure time.Duration) (float64, core.Stats, error) {
	bdp := int(goodputBandwidth * rtt.Seconds())
	return goodputQueue(seed, loss, rtt, measure, max(bdp, 16*1200))
}

// goodputQueue is goodput with a bottleneck queue of queueBytes.
func goodputQueue(seed uint64, loss float64, rtt, measure time.Duration, queueBytes int) (float64, core.Stats, error) {
	net := sim.New(seed)
	fwd := sim.LinkConfig{Latency: rtt / 2, Bandwidth: goodputBandwidth, QueueBytes: queueBytes, Loss: loss}
	back := sim.LinkConfig{Latency: rtt / 2}
	mk := func(cid uint64) (*core.Conn, error) {
		return core.NewConn(&core.Config{Rand: rand.NewPCG(seed, cid), InitialRTT: 100 * time.Millisecond}, cid, sim.Epoch)
	}
	ca, err := mk(0xA)
	if err != nil {
		return 0, core.Stats{}, err
	}
	cb, err := mk(0xB)
	if err != nil {
		return 0, core.Stats{}, err
	}
	a := &streamSender{conn: ca, msg: make([]byte, 16<<10)}
	b := &countingReceiver{conn: cb}
	net.AddNode(a)
	net.AddNode(b)
	if err := net.ConnectAsym(0, 1, fwd, back); err != nil {
		return 0, core.Stats{}, err
	}
	warmup := max(2*time.Second, 40*rtt)
	if err := net.RunFor(warmup); err != nil {
		return 0, core.Stats{}, err
	}
	start := b.bytes
	if err := net.RunFor(measure); err != nil {
		return 0, core.Stats{}, err
	}
	if a.err != nil || b.err != nil {
		return 0, core.Stats{}, errors.Join(a.err, b.err)
	}
	rate := float64(b.bytes-start) / measure.Seconds()
	return rate / goodputBandwidth, ca.Stats(), nil
}

// streamSender keeps its send buffer full of Delivery messages.
type streamSender struct {
	conn *core.Conn
	msg  []byte
	err  error
}

func (s *streamSender) act() {
	for s.err == nil {
		err := s.conn.Send(core.Delivery, s.msg)
		if errors.Is(err, core.ErrWouldBlock) {
			return
		}
		s.err = err
	}
}

func (s *streamSender) HandleDatagram(now time.Time, b []byte) { s.conn.HandleDatagram(now, b) }
func (s *streamSender) PollTransmit(now time.Time, b []byte) int {
	s.act()
	return s.conn.PollTransmit(now, b)
}
func (s *streamSender) NextTimeout() time.Time      { return s.conn.NextTimeout() }
func (s *streamSender) HandleTimeout(now time.Time) { s.conn.HandleTimeout(now) }

// countingReceiver reads everything at once and counts the bytes.
type countingReceiver struct {
	conn  *core.Conn
	bytes int
	err   error
}

func (r *countingReceiver) read() {
	for r.err == nil {
		m, err := r.conn.Recv()
		if err != nil {
			r.err = err
			return
		}
		if m.Data == nil {
			return
		}
		r.bytes += len(m.Data)
	}
}

func (r *countingReceiver) HandleDatagram(now time.Time, b []byte) {
	r.conn.HandleDatagram(now, b)
	r.read()
}
func (r *countingReceiver) PollTransmit(now time.Time, b []byte) int {
	return r.conn.PollTransmit(now, b)
}
func (r *countingReceiver) NextTimeout() time.Time      { return r.conn.NextTimeout() }
func (r *countingReceiver) HandleTimeout(now time.Time) { r.conn.HandleTimeout(now) }

// TestGoodputTable prints goodput as a fraction of the bottleneck bandwidth
// for loss 0%, 1%, 5% and RTT 2, 20, 100 ms (run with -goodput; it takes a
// while). It fails only if the transfer itself breaks.
func TestGoodputTable(t *testing.T) {
	if !*goodputFlag {
		t.Skip("run with -goodput to print the table")
	}
	losses := []float64{0, 0.01, 0.05}
	rtts := []time.Duration{2 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond}
	var out strings.Builder
	fmt.Fprintf(&out, "goodput / bottleneck bandwidth (%d MB/s, queue 1 BDP), mean of 3 seeds\n%-8s", goodputBandwidth/1_000_000, "loss")
	for _, rtt := range rtts {
		fmt.Fprintf(&out, " %10s", "RTT "+rtt.String())
	}
	out.WriteString("\n")
	for _, loss := range losses {
		fmt.Fprintf(&out, "%-8s", fmt.Sprintf("%g%%", loss*100))
		for _, rtt := range rtts {
			var sum float64
			const seeds = 3
			for seed := uint64(1); seed <= seeds; seed++ {
				f, st, err := goodput(seed, loss, rtt, max(5*time.Second, 100*rtt))
				if err != nil {
					t.Fatalf("loss %v rtt %v seed %d: %v", loss, rtt, seed, err)
				}
				t.Logf("loss %v rtt %v seed %d: %.3f  cwnd %d lost %d retx %d probes %d srtt %v",
					loss, rtt, seed, f, st.CongestionWindow, st.PacketsLost, st.FragmentsRetransmitted, st.ProbesSent, st.RTT.Smoothed)
				sum += f
			}
			fmt.Fprintf(&out, " %10.3f", sum/seeds)
		}
		out.WriteString("\n")
	}
	t.Log("\n" + out.String())
}

// TestShallowQueueLossRate: with no random loss and a bottleneck queue of
// only a few datagrams (where a queue barely shows in the RTT), the
// loss-tolerant rules must not turn into blasting: the sender's own loss
// rate stays low (NewReno alone: 0.8%, 0.02%, 0.05%).
func TestShallowQueueLossRate(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of simulated bulk transfer")
	}
	t.Parallel()
	for _, rtt := range []time.Duration{2 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond} {
		f, st, err := goodputQueue(1, 0, rtt, max(5*time.Second, 100*rtt), 4*1200)
		if err != nil {
			t.Fatal(err)
		}
		rate := float64(st.PacketsLost) / float64(st.PacketsSent)
		t.Logf("rtt %v queue 4 datagrams: goodput %.3f, loss rate %.4f (%d of %d)", rtt, f, rate, st.PacketsLost, st.PacketsSent)
		if rate > 0.05 {
			t.Errorf("rtt %v: the sender loses %.1f%% of its packets at a shallow queue", rtt, rate*100)
		}
	}
}
