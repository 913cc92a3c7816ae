package core_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// The streams' promise that nothing on one stream waits for another, in
// the simulator: a game's state updates (small Order messages, every 16 ms)
// beside a chat or download stream (Delivery messages of a datagram each,
// every 5 ms) over a 50 ms round trip, where the link drops some datagrams
// that carry only the other stream's data. On streams of their own the
// state updates' latency is that of the loss-free run (within a packet's
// time); on one stream, as the issue measured, each such loss holds back
// the updates sent after the lost message for a retransmission.

// isoNode is one side of the isolation run: the sender (send true) or the
// receiver, which records each state update's latency.
type isoNode struct {
	conn    *core.Conn
	send    bool
	streams bool // state and bulk on streams of their own (else both on stream 0)
	state   uint64
	bulk    uint64

	nextState, nextBulk time.Time
	sentState, sentBulk int
	total               int // state updates to send

	latencies []time.Duration // receiver: each state update's latency
	bulkGot   int
	err       error
}

const (
	isoStateEvery = 16 * time.Millisecond
	isoBulkEvery  = 5 * time.Millisecond
	isoBulkSize   = 1000
	isoStateSize  = 64
)

func (n *isoNode) fail(err error) {
	if n.err == nil {
		n.err = err
	}
}

func (n *isoNode) act(now time.Time) {
	c := n.conn
	if !c.Established() {
		return
	}
	if n.send && n.streams && n.state == 0 {
		var err error
		if n.state, err = c.OpenStream(core.Order); err != nil {
			n.fail(err)
		}
		if n.bulk, err = c.OpenStream(core.Delivery); err != nil {
			n.fail(err)
		}
	}
	if !n.send {
		for {
			if _, _, ok := c.AcceptStream(); !ok {
				break
			}
		}
		n.read(now)
		return
	}
	for n.sentState < n.total && !now.Before(n.nextState) {
		msg := bytes.Repeat([]byte{'S'}, isoStateSize)
		binary.BigEndian.PutUint64(msg, uint64(now.Sub(sim.Epoch)))
		if err := c.SendStream(n.state, core.Order, msg); err != nil {
			n.fail(err)
		}
		n.sentState++
		n.nextState = n.nextState.Add(isoStateEvery)
	}
	for n.sentState < n.total && !now.Before(n.nextBulk) {
		if err := c.SendStream(n.bulk, core.Delivery, bytes.Repeat([]byte{'B'}, isoBulkSize)); err != nil && !errors.Is(err, core.ErrWouldBlock) {
			n.fail(err)
		}
		n.sentBulk++
		n.nextBulk = n.nextBulk.Add(isoBulkEvery)
	}
}

// read takes what the receiver has: state updates on their stream (0, or
// the first accepted), bulk on the other.
func (n *isoNode) read(now time.Time) {
	c := n.conn
	ids := []uint64{0}
	if n.streams {
		ids = []uint64{1, 3} // the peer's (its connection ID is the larger): state, bulk
	}
	for _, id := range ids {
		for {
			m, err := c.RecvStream(id)
			if errors.Is(err, core.ErrStreamClosed) {
				break // not opened yet
			}
			if err != nil {
				n.fail(err)
				return
			}
			if m.Data == nil {
				break
			}
			if m.Data[len(m.Data)-1] == 'S' {
				sent := sim.Epoch.Add(time.Duration(binary.BigEndian.Uint64(m.Data)))
				n.latencies = append(n.latencies, now.Sub(sent))
			} else {
				n.bulkGot++
			}
		}
	}
}

func (n *isoNode) HandleDatagram(now time.Time, b []byte) {
	n.conn.HandleDatagram(now, b)
	n.act(now)
}

func (n *isoNode) PollTransmit(now time.Time, buf []byte) int {
	n.act(now)
	return n.conn.PollTransmit(now, buf)
}

func (n *isoNode) NextTimeout() time.Time {
	t := n.conn.NextTimeout()
	if n.send && n.conn.Established() && n.sentState < n.total {
		for _, at := range []time.Time{n.nextState, n.nextBulk} {
			if t.IsZero() || at.Before(t) {
				t = at
			}
		}
	}
	return t
}

func (n *isoNode) HandleTimeout(now time.Time) {
	n.conn.HandleTimeout(now)
	n.act(now)
}

// runIsolation runs the workload and returns the state updates' latencies.
// drop: datagrams carrying bulk data and no state update are lost one in
// dropEvery (0: none).
func runIsolation(t *testing.T, streams bool, dropEvery int) []time.Duration {
	t.Helper()
	net := sim.New(1)
	cfg := func(seed uint64) *core.Config {
		return &core.Config{Rand: rand.NewPCG(1, seed), InitialRTT: 50 * time.Millisecond}
	}
	ca, err := core.NewConn(cfg(1), 0x1, sim.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := core.NewConn(cfg(2), 0x2, sim.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	start := sim.Epoch.Add(200 * time.Millisecond) // after the handshake
	sender := &isoNode{conn: cb, send: true, streams: streams, total: 300, nextState: start, nextBulk: start.Add(time.Millisecond)}
	receiver := &isoNode{conn: ca, streams: streams}
	net.AddNode(sender)
	net.AddNode(receiver)
	bulkOnly := 0
	link := sim.LinkConfig{Latency: 25 * time.Millisecond}
	forward := link
	forward.Filter = func(now time.Time, b []byte) bool {
		if dropEvery == 0 || !bytes.Contains(b, bytes.Repeat([]byte{'B'}, 64)) || bytes.Contains(b, bytes.Repeat([]byte{'S'}, 32)) {
			return true
		}
		bulkOnly++
		return bulkOnly%dropEvery != 0
	}
	if err := net.ConnectAsym(0, 1, forward, link); err != nil {
		t.Fatal(err)
	}
	done := func() bool {
		return sender.err != nil || receiver.err != nil || (len(receiver.latencies) == sender.total && receiver.bulkGot == sender.sentBulk)
	}
	if err := net.RunUntil(done, 60*time.Second); err != nil {
		t.Fatalf("streams %v drop %d: %v (state %d of %d, bulk %d of %d)", streams, dropEvery, err,
			len(receiver.latencies), sender.total, receiver.bulkGot, sender.sentBulk)
	}
	for _, err := range []error{sender.err, receiver.err} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if net.Link(0, 1).Stats().Filtered == 0 && dropEvery > 0 {
		t.Fatal("the filter dropped nothing")
	}
	return receiver.latencies
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// TestSimStreamLossIsolation: see the comment at the top of the file. The
// bound is one packet's time (at most a millisecond on this link's pacing)
// over the loss-free run's worst latency.
func TestSimStreamLossIsolation(t *testing.T) {
	const onePacket = time.Millisecond
	for _, streams := range []bool{true, false} {
		clean := runIsolation(t, streams, 0)
		lossy := runIsolation(t, streams, 10)
		cleanMax, lossyMax := slices.Max(clean), slices.Max(lossy)
		t.Logf("streams %v: state update latency without loss p50 %v p99 %v max %v; with 1 in 10 bulk-only datagrams lost p50 %v p99 %v max %v",
			streams, percentile(clean, .5), percentile(clean, .99), cleanMax, percentile(lossy, .5), percentile(lossy, .99), lossyMax)
		if streams && lossyMax > cleanMax+onePacket {
			t.Errorf("on streams of their own, the state updates waited for the bulk stream's losses: worst latency %v, %v without loss", lossyMax, cleanMax)
		}
		if !streams && lossyMax < cleanMax+20*time.Millisecond {
			t.Errorf("the single-stream control shows no stall (worst %v, %v without loss): the test no longer measures what it should", lossyMax, cleanMax)
		}
	}
}
