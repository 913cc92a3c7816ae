package core_test

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// The scheduler's promises in the simulator (core/sched.go): two streams
// kept backlogged share the bottleneck by their weights, and a stream of a
// lower priority takes everything while it has data, the other getting it
// all once it idles. Measured at the receiver, in bytes read, over a
// bottleneck link, some seeds with loss.

// shareNode is one side of a run: the sender keeps its two streams'
// send buffers full until each one's stopAt; the receiver reads both and
// counts their bytes.
type shareNode struct {
	conn *core.Conn
	send bool

	priority, weight [2]int
	stopAt           [2]time.Time // the sender stops filling stream i then
	ids              [2]uint64
	opened           int
	got              [2]int // receiver: bytes read per stream
	msg              []byte
	err              error
}

func (n *shareNode) fail(err error) {
	if n.err == nil {
		n.err = err
	}
}

func (n *shareNode) act(now time.Time) {
	c := n.conn
	if !c.Established() || n.err != nil {
		return
	}
	if !n.send {
		for n.opened < 2 {
			id, _, ok := c.AcceptStream()
			if !ok {
				break
			}
			n.ids[n.opened] = id
			n.opened++
		}
		for i, id := range n.ids[:n.opened] {
			for {
				m, err := c.RecvStream(id)
				if err != nil {
					n.fail(err)
					return
				}
				if m.Guarantee == 0 {
					break
				}
				n.got[i] += len(m.Data)
			}
		}
		return
	}
	for ; n.opened < 2; n.opened++ {
		id, err := c.OpenStream(core.Delivery)
		if err == nil {
			err = c.SetStreamPriority(id, n.priority[n.opened], n.weight[n.opened])
		}
		if err != nil {
			n.fail(err)
			return
		}
		n.ids[n.opened] = id
	}
	for i, id := range n.ids {
		for now.Before(n.stopAt[i]) {
			err := c.SendStream(id, core.Delivery, n.msg)
			if errors.Is(err, core.ErrWouldBlock) {
				break
			}
			if err != nil {
				n.fail(err)
				return
			}
		}
	}
}

func (n *shareNode) HandleDatagram(now time.Time, b []byte) {
	n.conn.HandleDatagram(now, b)
	n.act(now)
}

func (n *shareNode) PollTransmit(now time.Time, buf []byte) int {
	n.act(now)
	return n.conn.PollTransmit(now, buf)
}

func (n *shareNode) NextTimeout() time.Time { return n.conn.NextTimeout() }

func (n *shareNode) HandleTimeout(now time.Time) {
	n.conn.HandleTimeout(now)
	n.act(now)
}

// shareRun is a sender and a receiver over a 10 Mbit/s bottleneck with a
// 20 ms round trip; seed picks the connections' randomness and, one seed
// in three, 1% loss each way.
type shareRun struct {
	net              *sim.Network
	sender, receiver *shareNode
}

func newShareRun(t *testing.T, seed uint64, priority, weight [2]int, stopAt [2]time.Duration) *shareRun {
	t.Helper()
	net := sim.New(seed)
	mk := func(cid uint64) *core.Conn {
		c, err := core.NewConn(&core.Config{Rand: rand.NewPCG(seed, cid)}, cid, sim.Epoch)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	r := &shareRun{
		net:      net,
		sender:   &shareNode{conn: mk(1), send: true, priority: priority, weight: weight, msg: make([]byte, 1000)},
		receiver: &shareNode{conn: mk(2)},
	}
	for i, d := range stopAt {
		r.sender.stopAt[i] = sim.Epoch.Add(d)
	}
	net.AddNode(r.sender)
	net.AddNode(r.receiver)
	link := sim.LinkConfig{Latency: 10 * time.Millisecond, Bandwidth: 10e6 / 8, QueueBytes: 64 << 10}
	if seed%3 == 0 {
		link.Loss = 0.01
	}
	if err := net.Connect(0, 1, link); err != nil {
		t.Fatal(err)
	}
	return r
}

// runUntil runs the network to virtual time at and returns the bytes the
// receiver read of each stream so far.
func (r *shareRun) runUntil(t *testing.T, at time.Duration) [2]int {
	t.Helper()
	if err := r.net.RunFor(at - r.net.Elapsed()); err != nil {
		t.Fatalf("seed %d: %v", r.net.Seed(), err)
	}
	for _, n := range []*shareNode{r.sender, r.receiver} {
		if n.err != nil {
			t.Fatalf("seed %d: %v", r.net.Seed(), n.err)
		}
	}
	return r.receiver.got
}

func shareSeeds() uint64 {
	if testing.Short() {
		return 10
	}
	return 60
}

// TestSimStreamWeights: two streams of one priority kept backlogged at
// weights 4:1 get the bytes 4:1 ± 10%, measured over two seconds after a
// second's start, on every seed.
func TestSimStreamWeights(t *testing.T) {
	forever := [2]time.Duration{time.Hour, time.Hour}
	var lo, hi float64
	for seed := range shareSeeds() {
		r := newShareRun(t, seed+1, [2]int{0, 0}, [2]int{4, 1}, forever)
		before := r.runUntil(t, time.Second)
		after := r.runUntil(t, 3*time.Second)
		heavy, light := after[0]-before[0], after[1]-before[1]
		if light == 0 {
			t.Fatalf("seed %d: the weight-1 stream got nothing (the weight-4 one %d bytes)", seed+1, heavy)
		}
		ratio := float64(heavy) / float64(light)
		if seed == 0 || ratio < lo {
			lo = ratio
		}
		if seed == 0 || ratio > hi {
			hi = ratio
		}
		if ratio < 3.6 || ratio > 4.4 {
			t.Errorf("seed %d: weights 4:1 got %d:%d bytes, %.3f:1", seed+1, heavy, light, ratio)
		}
	}
	t.Logf("weights 4:1 over %d seeds: bytes %.3f:1 to %.3f:1", shareSeeds(), lo, hi)
}

// TestSimStreamPriority: a backlogged stream of priority 0 takes every
// byte while one of priority 1 waits with its buffer full; once the first
// idles, the second gets the whole rate (within 10% of what the first had).
func TestSimStreamPriority(t *testing.T) {
	for seed := range shareSeeds() {
		r := newShareRun(t, seed+1, [2]int{0, 1}, [2]int{1, 1}, [2]time.Duration{3 * time.Second, time.Hour})
		warm := r.runUntil(t, time.Second)
		first := r.runUntil(t, 3*time.Second)
		drained := r.runUntil(t, 4*time.Second) // the first stream's backlog drained
		second := r.runUntil(t, 6*time.Second)
		if first[1] != 0 {
			t.Errorf("seed %d: the priority-1 stream got %d bytes while priority 0 had data (it got %d)", seed+1, first[1], first[0])
		}
		if second[0] != drained[0] {
			t.Fatalf("seed %d: the priority-0 stream still got data after it idled", seed+1)
		}
		highRate, lowRate := first[0]-warm[0], second[1]-drained[1]
		if ratio := float64(lowRate) / float64(highRate); ratio < 0.9 {
			t.Errorf("seed %d: once priority 0 idled priority 1 got %d bytes in 2 s, priority 0 had %d: %.2f of it", seed+1, lowRate, highRate, ratio)
		}
		if seed == 0 {
			t.Logf("seed 1: priority 0 alone %d B/s with priority 1 at %d B/s; then priority 1 alone %d B/s",
				highRate/2, (first[1]-warm[1])/2, lowRate/2)
		}
	}
}
