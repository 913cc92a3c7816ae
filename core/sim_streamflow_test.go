package core_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// Per-stream flow control in the simulator (docs/PROTOCOL.md §17.6): the
// sender keeps two streams' send buffers full, A and B; the receiver reads
// B as it arrives and A not at all. A fills its own window and stops; B
// keeps the rate it has with A absent (within 10%), where a connection
// window alone (the code before §17.6) let A's unread data fill it and
// stopped B too. When the receiver starts reading A again, everything sent
// on both streams arrives: nothing deadlocks.

// A's reader: absent (A not opened), read as it arrives, or stalled.
type flowAMode int

const (
	flowAAbsent flowAMode = iota
	flowARead
	flowAStalled
)

func (m flowAMode) String() string { return [...]string{"A absent", "A read", "A stalled"}[m] }

const flowMsgSize = 1000

// flowNode is one side: the sender (send true) or the receiver.
type flowNode struct {
	conn *core.Conn
	send bool
	mode flowAMode

	a, b           uint64 // the streams (0: not opened/accepted yet)
	stop           bool   // sender: send nothing more
	sentA, sentB   int    // messages sent on each
	gotA, gotB     int    // receiver: bytes read on each
	readA          bool   // receiver: reads A
	hostile        bool   // sender: ignores A's credit
	streamsOpened  bool
	err            error
	checkEverySend bool
}

func (n *flowNode) fail(err error) {
	if n.err == nil {
		n.err = err
	}
}

func (n *flowNode) act() {
	c := n.conn
	if !c.Established() || n.err != nil {
		return
	}
	if err := core.CheckStreamCredit(c); err != nil && !n.hostile {
		n.fail(err)
		return
	}
	if !n.send {
		for {
			id, _, ok := c.AcceptStream()
			if !ok {
				break
			}
			// The sender opens B first, then A (when present).
			if n.b == 0 {
				n.b = id
			} else {
				n.a = id
			}
		}
		n.gotB += n.drain(n.b)
		if n.readA {
			n.gotA += n.drain(n.a)
		}
		return
	}
	if !n.streamsOpened {
		var err error
		if n.b, err = c.OpenStream(core.Delivery); err != nil {
			n.fail(err)
			return
		}
		if n.mode != flowAAbsent {
			if n.a, err = c.OpenStream(core.Delivery); err != nil {
				n.fail(err)
				return
			}
			if n.hostile {
				core.IgnoreStreamCredit(c, n.a)
			}
		}
		n.streamsOpened = true
	}
	msg := bytes.Repeat([]byte{'x'}, flowMsgSize)
	for !n.stop {
		progressed := false
		for _, s := range []struct {
			id   uint64
			sent *int
		}{{n.b, &n.sentB}, {n.a, &n.sentA}} {
			if s.id == 0 {
				continue
			}
			err := c.SendStream(s.id, core.Delivery, msg)
			if errors.Is(err, core.ErrWouldBlock) {
				continue
			}
			if err != nil {
				n.fail(err)
				return
			}
			*s.sent++
			progressed = true
		}
		if !progressed {
			break
		}
	}
}

// drain reads what stream id has ready and returns the bytes read.
func (n *flowNode) drain(id uint64) int {
	if id == 0 {
		return 0
	}
	got := 0
	for {
		m, err := n.conn.RecvStream(id)
		if err != nil {
			n.fail(fmt.Errorf("stream %d: %w", id, err))
			return got
		}
		if m.Guarantee == 0 {
			return got
		}
		got += len(m.Data)
	}
}

func (n *flowNode) HandleDatagram(now time.Time, b []byte) {
	n.conn.HandleDatagram(now, b)
	n.act()
}

func (n *flowNode) PollTransmit(now time.Time, buf []byte) int {
	n.act()
	return n.conn.PollTransmit(now, buf)
}

func (n *flowNode) NextTimeout() time.Time { return n.conn.NextTimeout() }

func (n *flowNode) HandleTimeout(now time.Time) {
	n.conn.HandleTimeout(now)
	n.act()
}

// flowRun is one run's result: B's goodput while A's reader did what mode
// says, and the virtual time everything took to arrive once A was read.
type flowRun struct {
	rateB   float64 // bytes/s
	drained time.Duration
}

const (
	flowWarmup  = time.Second
	flowMeasure = 4 * time.Second
)

// runStreamFlow runs one seed: 2 MB/s, 20 ms round trip, a little jitter
// and loss; a 256 KiB connection window (not tuned) and 64 KiB stream
// windows, so that A's window fills within the warm-up.
func runStreamFlow(seed uint64, mode flowAMode) (flowRun, error) {
	net := sim.New(seed)
	cfg := func(cid uint64) *core.Config {
		return &core.Config{
			Rand:                rand.NewPCG(seed, cid),
			InitialRTT:          20 * time.Millisecond,
			MaxMessageSize:      8192,
			ReceiveWindow:       256 << 10,
			MaxReceiveWindow:    256 << 10,
			StreamReceiveWindow: 64 << 10,
			SendBufferSize:      256 << 10,
		}
	}
	cs, err := core.NewConn(cfg(1), 0x1, sim.Epoch)
	if err != nil {
		return flowRun{}, err
	}
	cr, err := core.NewConn(cfg(2), 0x2, sim.Epoch)
	if err != nil {
		return flowRun{}, err
	}
	sender := &flowNode{conn: cs, send: true, mode: mode}
	receiver := &flowNode{conn: cr, mode: mode, readA: mode == flowARead}
	net.AddNode(sender)
	net.AddNode(receiver)
	link := sim.LinkConfig{Latency: 10 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.005, Bandwidth: 2_000_000, QueueBytes: 64 << 10}
	if err := net.Connect(0, 1, link); err != nil {
		return flowRun{}, err
	}
	failed := func() error {
		for _, n := range []*flowNode{sender, receiver} {
			if n.err != nil {
				return n.err
			}
			if err := n.conn.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	if err := net.RunFor(flowWarmup); err != nil {
		return flowRun{}, err
	}
	if err := failed(); err != nil {
		return flowRun{}, err
	}
	b0 := receiver.gotB
	if err := net.RunFor(flowMeasure); err != nil {
		return flowRun{}, err
	}
	if err := failed(); err != nil {
		return flowRun{}, err
	}
	run := flowRun{rateB: float64(receiver.gotB-b0) / flowMeasure.Seconds()}
	if mode == flowAStalled {
		// A's window, not the connection's, is what A holds.
		if held := receiver.gotA; held != 0 {
			return run, fmt.Errorf("the stalled stream was read: %d bytes", held)
		}
	}
	// The reader comes back (or A was read all along); the sender stops:
	// everything sent must arrive.
	sender.stop, receiver.readA = true, true
	start := net.Elapsed()
	done := func() bool {
		return failed() != nil || receiver.gotA == sender.sentA*flowMsgSize && receiver.gotB == sender.sentB*flowMsgSize
	}
	if err := net.RunUntil(done, 60*time.Second); err != nil {
		return run, fmt.Errorf("after A's reader resumed: %w (A %d of %d bytes, B %d of %d)\nsender: %s\nreceiver: %s", err,
			receiver.gotA, sender.sentA*flowMsgSize, receiver.gotB, sender.sentB*flowMsgSize, core.DebugState(cs), core.DebugState(cr))
	}
	if err := failed(); err != nil {
		return run, err
	}
	run.drained = net.Elapsed() - start
	return run, nil
}

// TestSimStreamFlowStalledReader: see the comment at the top of the file.
func TestSimStreamFlowStalledReader(t *testing.T) {
	seeds := uint64(8)
	if testing.Short() {
		seeds = 3
	}
	if *soakSeeds > 0 {
		seeds = uint64(*soakSeeds)
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		var runs [3]flowRun
		for _, mode := range []flowAMode{flowAAbsent, flowARead, flowAStalled} {
			r, err := runStreamFlow(seed, mode)
			if err != nil {
				t.Fatalf("seed %d, %v: %v", seed, mode, err)
			}
			runs[mode] = r
		}
		absent, read, stalled := runs[flowAAbsent].rateB, runs[flowARead].rateB, runs[flowAStalled].rateB
		if seed == 1 || testing.Verbose() {
			t.Logf("seed %d: B's goodput %.0f KB/s with A absent, %.0f KB/s beside A read, %.0f KB/s beside A stalled (A's data all arrived %v after its reader resumed)",
				seed, absent/1e3, read/1e3, stalled/1e3, runs[flowAStalled].drained)
		}
		if stalled < 0.9*absent {
			t.Errorf("seed %d: beside a stalled stream B's goodput fell to %.0f KB/s, from %.0f KB/s alone", seed, stalled/1e3, absent/1e3)
		}
		if read > 0.75*absent {
			t.Errorf("seed %d: B kept %.0f of %.0f KB/s beside a stream read as fast: the run does not saturate the link", seed, read/1e3, absent/1e3)
		}
	}
}

// TestSimStreamFlowHostile: a peer that sends on a stream beyond the
// credit given for it (here, one that takes it to be unlimited, over a
// lossy path, its streams' data interleaved) is ended with a protocol
// violation that both sides see, and the receiver never held more for the
// stream than its window (CheckStreamCredit, on every step). (Where every
// copy of the receiver's CLOSE is lost, the sender ends at its idle
// timeout instead.)
func TestSimStreamFlowHostile(t *testing.T) {
	seeds := uint64(20)
	if testing.Short() {
		seeds = 5
	}
	if *soakSeeds > 0 {
		seeds = uint64(*soakSeeds)
	}
	idled := 0
	for seed := uint64(1); seed <= seeds; seed++ {
		net := sim.New(seed)
		cfg := func(cid uint64) *core.Config {
			return &core.Config{Rand: rand.NewPCG(seed, cid), MaxMessageSize: 8192, StreamReceiveWindow: 32 << 10}
		}
		cs, err := core.NewConn(cfg(1), 0x1, sim.Epoch)
		require.NoError(t, err)
		cr, err := core.NewConn(cfg(2), 0x2, sim.Epoch)
		require.NoError(t, err)
		sender := &flowNode{conn: cs, send: true, mode: flowAStalled, hostile: true}
		receiver := &flowNode{conn: cr, mode: flowAStalled}
		net.AddNode(sender)
		net.AddNode(receiver)
		require.NoError(t, net.Connect(0, 1, sim.LinkConfig{Latency: 10 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.03, Reorder: 0.05, ReorderDelay: 5 * time.Millisecond}))
		done := func() bool { return cs.Closed() && cr.Closed() }
		if err := net.RunUntil(done, 70*time.Second); err != nil {
			t.Fatalf("seed %d: %v\nsender: %s\nreceiver: %s", seed, err, core.DebugState(cs), core.DebugState(cr))
		}
		if receiver.err != nil {
			// (Its reads end with the connection's error.)
			require.ErrorIs(t, receiver.err, core.ErrProtocolViolation, "seed %d", seed)
		}
		require.ErrorIs(t, cr.Err(), core.ErrProtocolViolation, "seed %d", seed)
		if errors.Is(cs.Err(), core.ErrIdleTimeout) {
			// Every copy of the receiver's CLOSE was lost (3% loss; an
			// abort's CLOSE is not retransmitted for long): the sender
			// learns of the end at its idle timeout, as from any peer gone.
			idled++
			continue
		}
		require.ErrorIs(t, cs.Err(), core.ErrPeerProtocolViolation, "seed %d", seed)
	}
	t.Logf("%d seeds: every receiver ended with a protocol violation; %d senders learned of it only at their idle timeout (its CLOSE lost)", seeds, idled)
	if idled > int(seeds)/50+1 {
		t.Errorf("%d of %d senders learned of the violation only at their idle timeout", idled, seeds)
	}
}
