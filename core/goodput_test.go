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

var (
	goodputFlag = flag.Bool("goodput", false, "print the goodput table (loss x RTT through a simulated bottleneck)")
	ccFlag      = flag.String("cc", "", "congestion controllers the goodput tests run, comma-separated: newreno, bbr (default: the library's default)")
)

// controllers are the congestion controllers the goodput tests compare.
var controllers = map[string]func(int) core.CongestionController{
	"newreno": core.NewNewReno,
	"bbr":     core.NewBBR,
}

// selectedControllers returns the controllers -cc names; "" is the default (nil).
func selectedControllers(t *testing.T) []string {
	if *ccFlag == "" {
		return []string{""}
	}
	names := strings.Split(*ccFlag, ",")
	for _, n := range names {
		if _, ok := controllers[n]; !ok {
			t.Fatalf("-cc: no controller %q", n)
		}
	}
	return names
}

// goodputBandwidth is the simulated bottleneck: 10 MB/s.
const goodputBandwidth = 10_000_000

// goodput runs a one-way bulk transfer from a to b through a bottleneck of
// goodputBandwidth with a drop-tail queue of one bandwidth-delay product,
// the given random loss after the queue and round-trip time, and returns
// the Delivery bytes per second the receiver read after a warm-up, as a
// fraction of the bottleneck bandwidth.
func goodput(cc string, seed uint64, loss float64, rtt, measure time.Duration) (float64, core.Stats, error) {
	bdp := int(goodputBandwidth * rtt.Seconds())
	return goodputQueue(cc, seed, loss, rtt, measure, max(bdp, 16*1200))
}

// goodputQueue is goodput with a bottleneck queue of queueBytes.
func goodputQueue(cc string, seed uint64, loss float64, rtt, measure time.Duration, queueBytes int) (float64, core.Stats, error) {
	f, st, _, err := goodputPath(goodputParams{cc: cc, seed: seed, loss: loss, rtt: rtt, measure: measure,
		queueBytes: queueBytes, bandwidth: goodputBandwidth})
	return f, st, err
}

// goodputParams describe a goodputPath run: the path, and the config
// changes each side gets (nil: none).
type goodputParams struct {
	cc               string
	seed             uint64
	loss             float64
	rtt, measure     time.Duration
	queueBytes       int
	bandwidth        int64
	sender, receiver func(*core.Config)
	filter           func(now time.Time, b []byte) bool // sim.LinkConfig.Filter of the forward link
	// stream: the bulk goes on a stream the sender opens (its own flow
	// control, docs/PROTOCOL.md §17.6, on top of the connection's), not on
	// stream 0.
	stream bool
	// total, if not 0, is how many bytes the sender sends in all.
	total int
	// ackJitter is the return link's jitter (sim.LinkConfig.Jitter).
	ackJitter time.Duration
}

// goodputPath is goodput through the bottleneck p describes; it also
// returns the receiver's stats.
func goodputPath(p goodputParams) (float64, core.Stats, core.Stats, error) {
	rtt := p.rtt
	net, a, b, err := newGoodputNet(p)
	if err != nil {
		return 0, core.Stats{}, core.Stats{}, err
	}
	ca, cb := a.conn, b.conn
	warmup := max(2*time.Second, 40*rtt)
	if err := net.RunFor(warmup); err != nil {
		return 0, core.Stats{}, core.Stats{}, err
	}
	start := b.bytes
	if err := net.RunFor(p.measure); err != nil {
		return 0, core.Stats{}, core.Stats{}, err
	}
	if a.err != nil || b.err != nil {
		return 0, core.Stats{}, core.Stats{}, errors.Join(a.err, b.err)
	}
	rate := float64(b.bytes-start) / p.measure.Seconds()
	return rate / float64(p.bandwidth), ca.Stats(), cb.Stats(), nil
}

// newGoodputNet builds the simulated path p describes, with a bulk sender
// (node 0) and a receiver (node 1) on it.
func newGoodputNet(p goodputParams) (*sim.Network, *streamSender, *countingReceiver, error) {
	seed, rtt := p.seed, p.rtt
	net := newSimNet(seed)
	fwd := sim.LinkConfig{Latency: rtt / 2, Bandwidth: p.bandwidth, QueueBytes: p.queueBytes, Loss: p.loss, Filter: p.filter}
	back := sim.LinkConfig{Latency: rtt / 2, Jitter: p.ackJitter}
	mk := func(cid uint64, tweak func(*core.Config)) (*core.Conn, error) {
		cfg := &core.Config{Rand: rand.NewPCG(seed, cid), InitialRTT: 100 * time.Millisecond,
			NewCongestionController: controllers[p.cc]}
		if tweak != nil {
			tweak(cfg)
		}
		return core.NewConn(cfg, cid, sim.Epoch)
	}
	ca, err := mk(0xA, p.sender)
	if err != nil {
		return nil, nil, nil, err
	}
	cb, err := mk(0xB, p.receiver)
	if err != nil {
		return nil, nil, nil, err
	}
	a := &streamSender{conn: ca, msg: make([]byte, 16<<10), open: p.stream, left: p.total}
	b := &countingReceiver{conn: cb}
	net.AddNode(a)
	net.AddNode(b)
	if err := net.ConnectAsym(0, 1, fwd, back); err != nil {
		return nil, nil, nil, err
	}
	return net, a, b, nil
}

// streamSender keeps its send buffer full of Delivery messages, on stream
// 0 or (open) on a stream it opens.
type streamSender struct {
	conn *core.Conn
	msg  []byte
	open bool
	id   uint64
	err  error
	// left, if the sender was given a total, is what it has yet to send:
	// -1 once all was sent; 0 means no total.
	left int
}

func (s *streamSender) act() {
	if s.open && s.id == 0 {
		if !s.conn.Established() {
			return
		}
		s.id, s.err = s.conn.OpenStream(core.Delivery)
	}
	for s.err == nil && s.left >= 0 {
		msg := s.msg
		if s.left > 0 {
			msg = msg[:min(len(msg), s.left)]
		}
		err := s.conn.SendStream(s.id, core.Delivery, msg)
		if errors.Is(err, core.ErrWouldBlock) {
			return
		}
		if s.err = err; err == nil && s.left > 0 {
			if s.left -= len(msg); s.left == 0 {
				s.left = -1
			}
		}
	}
}

func (s *streamSender) HandleDatagram(now time.Time, b []byte) { s.conn.HandleDatagram(now, b) }
func (s *streamSender) PollTransmit(now time.Time, b []byte) int {
	s.act()
	return s.conn.PollTransmit(now, b)
}
func (s *streamSender) NextTimeout() time.Time      { return s.conn.NextTimeout() }
func (s *streamSender) HandleTimeout(now time.Time) { s.conn.HandleTimeout(now) }

// countingReceiver reads everything at once and counts the bytes: stream
// 0's, or the first stream the peer opens.
type countingReceiver struct {
	conn  *core.Conn
	id    uint64
	bytes int
	err   error
}

func (r *countingReceiver) read() {
	if r.id == 0 {
		r.id, _, _ = r.conn.AcceptStream()
	}
	for r.err == nil {
		m, err := r.conn.RecvStream(r.id)
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
// for loss 0%, 1%, 5% and RTT 2, 20, 100 ms (run with -goodput, and -cc to
// compare controllers). It fails only if the transfer itself breaks.
func TestGoodputTable(t *testing.T) {
	if !*goodputFlag {
		t.Skip("run with -goodput to print the table")
	}
	losses := []float64{0, 0.01, 0.05}
	rtts := []time.Duration{2 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond}
	var out strings.Builder
	for _, cc := range selectedControllers(t) {
		fmt.Fprintf(&out, "%s: goodput / bottleneck bandwidth (%d MB/s, queue 1 BDP), mean of 3 seeds\n%-8s",
			ccName(cc), goodputBandwidth/1_000_000, "loss")
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
					f, st, err := goodput(cc, seed, loss, rtt, max(5*time.Second, 100*rtt))
					if err != nil {
						t.Fatalf("%s loss %v rtt %v seed %d: %v", ccName(cc), loss, rtt, seed, err)
					}
					t.Logf("%s loss %v rtt %v seed %d: %.3f  cwnd %d lost %d/%d retx %d probes %d srtt %v",
						ccName(cc), loss, rtt, seed, f, st.CongestionWindow, st.PacketsLost, st.PacketsSent,
						st.FragmentsRetransmitted, st.ProbesSent, st.RTT.Smoothed)
					sum += f
				}
				fmt.Fprintf(&out, " %10.3f", sum/seeds)
			}
			out.WriteString("\n")
		}
	}
	t.Log("\n" + out.String())
}

func ccName(cc string) string {
	if cc == "" {
		return "default"
	}
	return cc
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
	for _, cc := range selectedControllers(t) {
		for _, rtt := range []time.Duration{2 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond} {
			f, st, err := goodputQueue(cc, 1, 0, rtt, max(5*time.Second, 100*rtt), 4*1200)
			if err != nil {
				t.Fatal(err)
			}
			rate := float64(st.PacketsLost) / float64(st.PacketsSent)
			t.Logf("%s rtt %v queue 4 datagrams: goodput %.3f, loss rate %.4f (%d of %d)", ccName(cc), rtt, f, rate, st.PacketsLost, st.PacketsSent)
			if rate > 0.05 {
				t.Errorf("%s rtt %v: the sender loses %.1f%% of its packets at a shallow queue", ccName(cc), rtt, rate*100)
			}
		}
	}
}

// sharedNode is several connections behind one simulated node, so that
// their datagrams share one link and its bottleneck queue (the simulator
// joins nodes point to point). Datagrams are demultiplexed by connection
// ID, and a HELLO (DstCID 0) by its sender's ID. Senders keep their send
// buffers full from their start time on; receivers read everything.
type sharedNode struct {
	conns  []*core.Conn
	peers  map[uint64]int  // the peer's connection ID -> index into conns
	starts []time.Duration // senders: when each begins to send (nil: receivers)
	bytes  []int           // receivers: bytes read per connection
	msg    []byte
	next   int // round-robin position of PollTransmit
	err    error
}

func (s *sharedNode) conn(b []byte) *core.Conn {
	h, body, err := core.ParseHeader(b)
	if err != nil {
		return nil
	}
	for _, c := range s.conns {
		if h.DstCID == c.LocalCID() {
			return c
		}
	}
	if hello, ok := core.PeekHello(body); ok && h.DstCID == 0 {
		if i, ok := s.peers[hello.SrcCID]; ok {
			return s.conns[i]
		}
	}
	return nil
}

func (s *sharedNode) HandleDatagram(now time.Time, b []byte) {
	if c := s.conn(b); c != nil {
		c.HandleDatagram(now, b)
	}
	s.act(now)
}

func (s *sharedNode) act(now time.Time) {
	for i, c := range s.conns {
		if s.starts != nil {
			if now.Sub(sim.Epoch) < s.starts[i] {
				continue
			}
			for s.err == nil {
				err := c.Send(core.Delivery, s.msg)
				if errors.Is(err, core.ErrWouldBlock) {
					break
				}
				s.err = err
			}
			continue
		}
		for s.err == nil {
			m, err := c.Recv()
			if err != nil {
				s.err = err
			}
			if m.Data == nil {
				break
			}
			s.bytes[i] += len(m.Data)
		}
	}
}

// PollTransmit takes turns among the connections, so none gets ahead by
// its position.
func (s *sharedNode) PollTransmit(now time.Time, b []byte) int {
	s.act(now)
	for k := range s.conns {
		i := (s.next + k) % len(s.conns)
		if n := s.conns[i].PollTransmit(now, b); n > 0 {
			s.next = i + 1
			return n
		}
	}
	return 0
}

func (s *sharedNode) NextTimeout() time.Time {
	var next time.Time
	for _, c := range s.conns {
		if t := c.NextTimeout(); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

func (s *sharedNode) HandleTimeout(now time.Time) {
	for _, c := range s.conns {
		if t := c.NextTimeout(); !t.IsZero() && !t.After(now) {
			c.HandleTimeout(now)
		}
	}
	s.act(now)
}

// shareBottleneck runs flows (one controller name each) through one
// bottleneck of goodputBandwidth with a queue of queueBDP bandwidth-delay
// products, flow i starting at starts[i], and returns each flow's share
// of the bottleneck over the last measure of the run.
func shareBottleneck(seed uint64, ccs []string, starts []time.Duration, rtt time.Duration, queueBDP float64, measure time.Duration) ([]float64, error) {
	net := newSimNet(seed)
	bdp := goodputBandwidth * rtt.Seconds()
	fwd := sim.LinkConfig{Latency: rtt / 2, Bandwidth: goodputBandwidth, QueueBytes: max(int(queueBDP*bdp), 4*1200)}
	back := sim.LinkConfig{Latency: rtt / 2}
	snd := &sharedNode{peers: map[uint64]int{}, starts: starts, msg: make([]byte, 16<<10)}
	rcv := &sharedNode{peers: map[uint64]int{}, bytes: make([]int, len(ccs))}
	for i, cc := range ccs {
		cfg := func(cid uint64) *core.Config {
			return &core.Config{Rand: rand.NewPCG(seed, cid), InitialRTT: 100 * time.Millisecond, NewCongestionController: controllers[cc]}
		}
		a, err := core.NewConn(cfg(uint64(0xA0+i)), uint64(0xA0+i), sim.Epoch)
		if err != nil {
			return nil, err
		}
		b, err := core.NewConn(cfg(uint64(0xB0+i)), uint64(0xB0+i), sim.Epoch)
		if err != nil {
			return nil, err
		}
		snd.conns, rcv.conns = append(snd.conns, a), append(rcv.conns, b)
		snd.peers[b.LocalCID()], rcv.peers[a.LocalCID()] = i, i
	}
	net.AddNode(snd)
	net.AddNode(rcv)
	if err := net.ConnectAsym(0, 1, fwd, back); err != nil {
		return nil, err
	}
	var last time.Duration
	for _, s := range starts {
		last = max(last, s)
	}
	if err := net.RunFor(last + max(2*time.Second, 40*rtt)); err != nil {
		return nil, err
	}
	before := append([]int(nil), rcv.bytes...)
	if err := net.RunFor(measure); err != nil {
		return nil, err
	}
	if err := errors.Join(snd.err, rcv.err); err != nil {
		return nil, err
	}
	shares := make([]float64, len(ccs))
	for i := range shares {
		shares[i] = float64(rcv.bytes[i]-before[i]) / measure.Seconds() / goodputBandwidth
	}
	return shares, nil
}

// jain is Jain's fairness index of xs: 1 when equal, 1/n when one takes all.
func jain(xs []float64) float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	if sq == 0 {
		return 0
	}
	return sum * sum / (float64(len(xs)) * sq)
}

// TestFairness shares one bottleneck between two flows, the second starting
// a second later, and reports each flow's share (run with -v). Together
// they must keep the bottleneck busy; where a bound on Jain's index is
// given, they must share it that fairly. The other cases are reported, not
// judged: BBR v1 takes most of the bottleneck from a NewReno flow, and two
// BBR flows converge slowly at a long RTT or a shallow queue.
func TestFairness(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of simulated bulk transfer")
	}
	t.Parallel()
	for _, tc := range []struct {
		ccs      []string
		queueBDP float64
		minJain  float64 // 0: report only
	}{
		{[]string{"newreno", "newreno"}, 1, 0},
		{[]string{"bbr", "bbr"}, 1, 0.9},
		{[]string{"bbr", "bbr"}, 0.1, 0},
		{[]string{"newreno", "bbr"}, 1, 0},
		{[]string{"bbr", "newreno"}, 1, 0},
		{[]string{"newreno", "bbr"}, 0.1, 0},
	} {
		for _, rtt := range []time.Duration{20 * time.Millisecond, 100 * time.Millisecond} {
			name := fmt.Sprintf("%s/queue=%gBDP/rtt=%v", strings.Join(tc.ccs, "+"), tc.queueBDP, rtt)
			shares, err := shareBottleneck(1, tc.ccs, []time.Duration{0, time.Second}, rtt, tc.queueBDP, max(10*time.Second, 100*rtt))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			j := jain(shares)
			t.Logf("%-40s shares %.3f %.3f  total %.3f  jain %.3f", name, shares[0], shares[1], shares[0]+shares[1], j)
			if total := shares[0] + shares[1]; total < 0.9 {
				t.Errorf("%s: the flows use %.3f of the bottleneck, want at least 0.9", name, total)
			}
			if rtt == 20*time.Millisecond && j < tc.minJain {
				t.Errorf("%s: Jain's index %.3f, want at least %.2f", name, j, tc.minJain)
			}
		}
	}
}

// TestGoodputHighBDP: a 50 MB/s bottleneck at 100 ms RTT has a 5 MB
// bandwidth-delay product, more than the initial 4 MiB window, and a loss
// holds back what follows it for more than a round trip. With the default
// configs, the auto-tuned window and the send buffer (whose default fill is
// bounded by the congestion window) must reach what the path needs; a
// window fixed at 4 MiB cannot. (A 4 MiB send buffer, the old default,
// kept 0.836 and 0.815.)
func TestGoodputHighBDP(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of simulated bulk transfer at 50 MB/s")
	}
	t.Parallel()
	const bw = 50_000_000
	rtt := 100 * time.Millisecond
	for _, loss := range []float64{0, 0.01} {
		for _, fixed := range []bool{true, false} {
			recv := func(c *core.Config) {}
			if fixed {
				recv = func(c *core.Config) { c.MaxReceiveWindow = 4 << 20 }
			}
			f, st, rst, err := goodputPath(goodputParams{seed: 1, loss: loss, rtt: rtt, measure: 5 * time.Second,
				queueBytes: int(bw * rtt.Seconds()), bandwidth: bw, receiver: recv})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("loss %v, window fixed %v: goodput %.3f, receive window %d KiB, cwnd %d KiB, lost %d/%d, probes %d, srtt %v",
				loss, fixed, f, rst.ReceiveWindow>>10, st.CongestionWindow>>10, st.PacketsLost, st.PacketsSent, st.ProbesSent, st.RTT.Smoothed)
			// Measured: fixed 0.832 (0%), 0.390 (1%; seeds 1-4: 0.377-0.404,
			// 0.386-0.413 before path MTU discovery); auto-tuned 0.966, 0.955.
			if !fixed && f < 0.9 {
				t.Errorf("loss %v: goodput %.3f of the bottleneck with an auto-tuned window, want >= 0.9", loss, f)
			}
		}
	}
	// On a stream other than 0, whose own window (§17.6) grows up to half
	// of MaxReceiveWindow (the connection's growing to twice it), so that
	// a stream whose reader stops leaves the others half: at 1% loss the
	// default 16 MiB keeps 0.597 (seeds 1-2: 0.597, 0.610; 0.326 while the
	// connection's window did not follow the stream's), 32 MiB 0.927
	// (stream 0: 0.929); without loss both 0.966.
	for _, c := range []struct {
		loss       float64
		maxWindow  int
		atLeast    float64
		measuredAs string
	}{{0, 0, 0.9, "0.966"}, {0.01, 0, 0.5, "0.597"}, {0.01, 32 << 20, 0.9, "0.927"}} {
		f, _, rst, err := goodputPath(goodputParams{seed: 1, loss: c.loss, rtt: rtt, measure: 5 * time.Second,
			queueBytes: int(bw * rtt.Seconds()), bandwidth: bw, stream: true,
			receiver: func(cfg *core.Config) { cfg.MaxReceiveWindow = c.maxWindow }})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("on a stream, loss %v, MaxReceiveWindow %d MiB: goodput %.3f (measured %s), receive window %d KiB", c.loss, c.maxWindow>>20, f, c.measuredAs, rst.ReceiveWindow>>10)
		if f < c.atLeast {
			t.Errorf("on a stream, loss %v, MaxReceiveWindow %d MiB: goodput %.3f, want >= %v", c.loss, c.maxWindow>>20, f, c.atLeast)
		}
	}
}

// TestGoodputBurstLoss: a link that loses datagrams in runs (here a
// bandwidth-delay product at a time, 2% of them in all, as kernel loss
// does to GSO batches on loopback)
// is not a full queue: BBR must not take each run for congestion and cap
// what it keeps in flight.
func TestGoodputBurstLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of simulated bulk transfer")
	}
	t.Parallel()
	for _, rtt := range []time.Duration{2 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond} {
		var sum float64
		const seeds = 3
		for seed := uint64(1); seed <= seeds; seed++ {
			r := rand.New(rand.NewPCG(seed, 0xb0))
			burst, burstLen := 0, max(16, int(goodputBandwidth*rtt.Seconds()/1400))
			drop := func(time.Time, []byte) bool {
				if burst == 0 && r.IntN(50*burstLen) == 0 {
					burst = burstLen
				}
				if burst > 0 {
					burst--
					return false
				}
				return true
			}
			f, st, _, err := goodputPath(goodputParams{seed: seed, rtt: rtt, measure: max(5*time.Second, 100*rtt),
				queueBytes: max(int(goodputBandwidth*rtt.Seconds()), 16*1200), bandwidth: goodputBandwidth, filter: drop})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("rtt %v seed %d: goodput %.3f, cwnd %d KiB, lost %d/%d, probes %d", rtt, seed, f, st.CongestionWindow>>10, st.PacketsLost, st.PacketsSent, st.ProbesSent)
			sum += f
		}
		t.Logf("rtt %v: mean goodput %.3f", rtt, sum/seeds)
		// Measured 0.947, 0.950, 0.937 (0.944, 0.944, 0.936 when every
		// run counted as congestion).
		if sum/seeds < 0.9 {
			t.Errorf("rtt %v: goodput %.3f of the bottleneck under burst loss, want >= 0.9", rtt, sum/seeds)
		}
	}
}
