package core_test

import (
	"bytes"
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// ipUDPHeaders is what an IPv4 path's MTU holds beyond the UDP payload.
const ipUDPHeaders = 20 + 8

// checkDatagramSize is the simulator's invariant for path MTU discovery: a
// datagram is never longer than Config.MaxDatagramSize, and one longer than
// the connection's DatagramSize is a probe, a PING and PADDING only, which
// carries nothing that must arrive. (maxSize 0: not known, not checked.)
func checkDatagramSize(c *core.Conn, maxSize int, b []byte) error {
	if maxSize > 0 && len(b) > maxSize {
		return fmt.Errorf("sent a datagram of %d bytes, MaxDatagramSize is %d", len(b), maxSize)
	}
	if len(b) <= c.DatagramSize() {
		return nil
	}
	h, body, err := core.ParseHeader(b)
	if err != nil {
		return fmt.Errorf("sent a malformed probe of %d bytes: %v", len(b), err)
	}
	if h.Type != core.PacketData { // (protected: the frames are not for us to read)
		if !core.ProbeInFlight(c, len(b)) {
			return fmt.Errorf("a protected datagram of %d bytes, over the confirmed %d, is not a path MTU probe", len(b), c.DatagramSize())
		}
		return nil
	}
	if body[0] != 0x01 || bytes.ContainsFunc(body[1:], func(r rune) bool { return r != 0 }) {
		return fmt.Errorf("a datagram of %d bytes, over the confirmed %d, carries more than PING and PADDING: % x",
			len(b), c.DatagramSize(), body[:min(len(body), 16)])
	}
	return nil
}

// pmtuSender is a bulkSender that checks every datagram against
// checkDatagramSize and notes when its datagram size last changed.
type pmtuSender struct {
	bulkSender
	maxSize   int
	room      int // what the batch being packed has left (see PollTransmit)
	size      int
	changed   time.Time // when DatagramSize last changed
	sizes     []int     // every size it took, in order
	checkErr  error
	lastState string
}

var debugPMTU = false // print the search's every step

func (s *pmtuSender) note(now time.Time) {
	if debugPMTU {
		if st := core.DebugPathMTU(s.conn); st != s.lastState {
			s.lastState = st
			fmt.Println(now.Sub(sim.Epoch), st)
		}
	}
	if d := s.conn.DatagramSize(); d != s.size {
		s.size, s.changed = d, now
		s.sizes = append(s.sizes, d)
	}
}

func (s *pmtuSender) HandleDatagram(now time.Time, b []byte) {
	s.bulkSender.HandleDatagram(now, b)
	s.note(now)
}

func (s *pmtuSender) HandleTimeout(now time.Time) {
	s.bulkSender.HandleTimeout(now)
	s.note(now)
}

// PollTransmit passes the core the room a batch of packed datagrams has
// left, as the root package does (txBatch.next): a fresh batch of
// pmtuBatchRoom bytes, shrinking by each datagram, sent (and fresh again)
// once less than DatagramSize is left or nothing more comes. A probe that
// does not fit the room left waits for a fresh batch; nothing is ever cut.
func (s *pmtuSender) PollTransmit(now time.Time, b []byte) int {
	if s.room < s.conn.DatagramSize() {
		s.room = pmtuBatchRoom
	}
	n := s.bulkSender.PollTransmit(now, b[:min(s.room, len(b))])
	if err := checkDatagramSize(s.conn, s.maxSize, b[:n]); err != nil && s.checkErr == nil {
		s.checkErr = err
	}
	s.room -= n
	if n == 0 {
		s.room = 0
	}
	return n
}

// pmtuBatchRoom is a batch's room (the root's gsoMaxBytes, or twice the
// largest datagram).
const pmtuBatchRoom = 2 * core.MaxDatagramSizeLimit

// pmtuRun is one transfer over a path whose MTU may change while it runs.
type pmtuRun struct {
	mtu         int // the path's IP MTU (the link carries mtu-28-byte datagrams)
	maxDatagram int // Config.MaxDatagramSize
	loss        float64
	total       int
	// shrinkTo, if set, is the MTU the path drops to once shrinkAfter bytes were received.
	shrinkTo, shrinkAfter int
	// stall, if set, is how much longer the path takes, both ways, for
	// datagrams sent during the stall that starts once shrinkAfter bytes
	// were received (a receiver not scheduled for a while, a delay burst).
	stall time.Duration
}

type pmtuResult struct {
	elapsed  time.Duration
	settled  int           // the sender's DatagramSize at the end
	settleAt time.Duration // when it last changed (from the start, or from the shrink)
	sizes    []int
	sender   core.Stats
	link     sim.LinkStats // a -> b
}

func (r pmtuRun) run(seed uint64) (pmtuResult, error) {
	var res pmtuResult
	rng := rand.New(rand.NewPCG(seed, 0x3707))
	net := newSimNet(seed)
	cfg := func(cid uint64) *core.Config {
		return &core.Config{Rand: rand.NewPCG(seed, cid), InitialRTT: 50 * time.Millisecond, MaxDatagramSize: r.maxDatagram}
	}
	ca, err := core.NewConn(cfg(1), 0xA, sim.Epoch)
	if err != nil {
		return res, err
	}
	cb, err := core.NewConn(cfg(2), 0xB, sim.Epoch)
	if err != nil {
		return res, err
	}
	data := make([]byte, r.total)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	// Messages of mixed sizes: whole ones, and ones of many fragments.
	var sizes []int
	for left := r.total; left > 0; {
		n := min(left, 1+rng.IntN(32<<10))
		sizes = append(sizes, n)
		left -= n
	}
	a := &pmtuSender{bulkSender: bulkSender{conn: ca, data: data, sizes: sizes}, maxSize: r.maxDatagram}
	b := &bulkReceiver{conn: cb, want: data}
	net.AddNode(a)
	net.AddNode(b)
	// 80 Mbit/s with a queue of a bandwidth-delay product: a transfer of a
	// few MiB lasts tens of round trips, as the search needs.
	link := sim.LinkConfig{Latency: 10 * time.Millisecond, Loss: r.loss, MTU: r.mtu - ipUDPHeaders,
		Bandwidth: 10_000_000, QueueBytes: 200_000}
	if err := net.Connect(0, 1, link); err != nil {
		return res, err
	}
	var shrunk, stalled time.Time
	setLinks := func(c sim.LinkConfig) {
		for _, l := range []*sim.Link{net.Link(0, 1), net.Link(1, 0)} {
			if err := l.SetConfig(c); err != nil {
				panic(err)
			}
		}
	}
	done := func() bool {
		if r.stall != 0 && b.got >= r.shrinkAfter {
			switch {
			case stalled.IsZero():
				stalled = net.Now()
				slow := link
				slow.Latency += r.stall
				setLinks(slow)
			case net.Now().Sub(stalled) >= r.stall && net.Now().Sub(stalled) < 2*r.stall:
				setLinks(link)
				stalled = stalled.Add(-2 * r.stall) // (once)
			}
		}
		if r.shrinkTo != 0 && shrunk.IsZero() && b.got >= r.shrinkAfter {
			shrunk = net.Now()
			small := link
			small.MTU = r.shrinkTo - ipUDPHeaders
			for _, l := range []*sim.Link{net.Link(0, 1), net.Link(1, 0)} {
				if err := l.SetConfig(small); err != nil {
					panic(err)
				}
			}
		}
		return b.err != nil || a.err != nil || a.checkErr != nil || (b.eof && ca.Closed())
	}
	err = net.RunUntil(done, 120*time.Second)
	res.elapsed, res.settled, res.sizes, res.sender, res.link = net.Elapsed(), a.size, a.sizes, ca.Stats(), net.Link(0, 1).Stats()
	res.settleAt = a.changed.Sub(sim.Epoch)
	if !shrunk.IsZero() {
		res.settleAt = a.changed.Sub(shrunk)
	}
	describe := func(stage string, err error) error {
		return fmt.Errorf("%s: %w\n  sent %d of %d bytes; received %d; eof %v; sizes %v; search %s\n  a: %+v\n  b: %+v\n  links %+v / %+v",
			stage, err, a.off, r.total, b.got, b.eof, a.sizes, core.DebugPathMTU(ca), ca.Stats(), cb.Stats(), net.Link(0, 1).Stats(), net.Link(1, 0).Stats())
	}
	switch {
	case err != nil:
		return res, describe("transfer", err)
	case a.checkErr != nil:
		return res, describe("invariant", a.checkErr)
	case a.err != nil:
		return res, describe("send", a.err)
	case b.err != nil:
		return res, describe("receive", b.err)
	case ca.Err() != nil:
		return res, describe("close", fmt.Errorf("sender ended with %v", ca.Err()))
	}
	return res, nil
}

// TestPathMTUStallIsNoBlackHole: a path (or a peer) that goes silent for
// many probe timeouts without losing anything, a quarter into a transfer,
// is not taken for a black hole: the sender's small probe is acknowledged
// only with the large packets before it, so it keeps its datagram size.
// Before, two probe timeouts in a row with a large packet oldest made the
// sender fall back to the base size and cut every queued fragment (as a
// loaded machine's stalled receiver did to loopback bulk transfers).
func TestPathMTUStallIsNoBlackHole(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		res, err := pmtuRun{mtu: 1500, maxDatagram: 1472, total: 4 << 20, shrinkAfter: 1 << 20, stall: 400 * time.Millisecond}.run(seed)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if res.sender.ProbesSent < 2 {
			t.Fatalf("seed %d: %d probe timeouts: the stall did not outlast two", seed, res.sender.ProbesSent)
		}
		if slices.Contains(res.sizes[1:], core.BaseDatagramSize) {
			t.Fatalf("seed %d: sizes %v fell back to %d on a path that lost nothing", seed, res.sizes, core.BaseDatagramSize)
		}
		if res.settled != 1472 {
			t.Fatalf("seed %d: settled at %d (sizes %v), want 1472", seed, res.settled, res.sizes)
		}
		if seed == 1 {
			t.Logf("sizes %v, %d probe timeouts, %d lost, %v virtual", res.sizes, res.sender.ProbesSent, res.sender.PacketsLost, res.elapsed)
		}
	}
}

// TestPathMTUSettles: over paths of MTU 1280, 1300, 1500 and 9000 a 2 MiB
// transfer completes, and the datagram size settles within the search's
// granularity (16 bytes) below what the path carries (MTU less 28 bytes of
// IPv4 and UDP headers), or at MaxDatagramSize where that is smaller. No
// probe the path dropped for its size is counted as a lost packet (nor
// taken for congestion, nor is anything sent again for it). Before path MTU discovery every data
// packet was MaxDatagramSize (1400) bytes and the two smaller paths stalled
// for good after the handshake.
func TestPathMTUSettles(t *testing.T) {
	for _, tc := range []struct {
		mtu, maxDatagram int
		loss             float64
		total            int // 0: 8 MiB
	}{
		{1280, 1472, 0, 0}, {1300, 1472, 0, 0}, {1500, 1472, 0, 0}, {9000, 8972, 0, 0},
		{1300, 1400, 0, 0}, // the old default ceiling
		{1300, 8972, 0.02, 0}, {1500, 8972, 0.02, 0},
		// Loopback's (the root's ceiling follows the route): 64 KiB
		// datagrams, one lost costing 44 of 1472 bytes' worth; and a
		// search from the largest down to a 9000-byte path, a dozen
		// steps that a larger transfer outlasts.
		{65535, core.MaxDatagramSizeLimit, 0, 0}, {65535, core.MaxDatagramSizeLimit, 0.02, 0},
		{9000, core.MaxDatagramSizeLimit, 0.02, 32 << 20},
	} {
		t.Run(fmt.Sprintf("mtu%d/max%d/loss%v", tc.mtu, tc.maxDatagram, tc.loss), func(t *testing.T) {
			t.Parallel()
			carried := min(tc.mtu-ipUDPHeaders, tc.maxDatagram)
			for seed := uint64(1); seed <= 5; seed++ {
				res, err := pmtuRun{mtu: tc.mtu, maxDatagram: tc.maxDatagram, loss: tc.loss, total: cmp.Or(tc.total, 8<<20)}.run(seed)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				if res.settled > carried || res.settled <= carried-16 {
					t.Fatalf("seed %d: settled at %d bytes (sizes %v), the path carries %d", seed, res.settled, res.sizes, carried)
				}
				// Every packet declared lost was dropped by the bottleneck's
				// queue or the link's loss, none of them a probe the MTU dropped.
				if dropped := res.link.DroppedQueue + res.link.Lost; res.sender.PacketsLost > dropped {
					t.Fatalf("seed %d: %d packets declared lost, the link dropped %d (and %d probes for their size)",
						seed, res.sender.PacketsLost, dropped, res.link.DroppedMTU)
				}
				if seed == 1 {
					t.Logf("settled at %d bytes (path carries %d) %v after the start, sizes %v; 8 MiB in %v virtual, 10 ms one-way, 80 Mbit/s",
						res.settled, carried, res.settleAt, res.sizes, res.elapsed)
				}
			}
		})
	}
}

// TestPathMTUShrinks: the path's MTU drops from 1500 (or loopback's 65535)
// to 1300 a quarter into
// a 4 MiB transfer, with data in flight in datagrams the path now drops and
// queued in fragments cut for them. The sender finds the black hole, falls
// back to the base size, searches again and settles at what the path now
// carries; every byte arrives.
func TestPathMTUShrinks(t *testing.T) {
	for _, tc := range []struct {
		mtu, maxDatagram int
		loss             float64
		total            int
	}{
		{1500, 1472, 0, 4 << 20}, {1500, 1472, 0.02, 4 << 20},
		// From 64 KiB datagrams: the search back up from the base size
		// takes a dozen steps, which a larger transfer outlasts.
		{65535, core.MaxDatagramSizeLimit, 0.02, 32 << 20},
	} {
		t.Run(fmt.Sprintf("mtu%d/loss%v", tc.mtu, tc.loss), func(t *testing.T) {
			t.Parallel()
			for seed := uint64(1); seed <= 5; seed++ {
				res, err := pmtuRun{mtu: tc.mtu, maxDatagram: tc.maxDatagram, loss: tc.loss, total: tc.total, shrinkTo: 1300, shrinkAfter: 1 << 20}.run(seed)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				carried := 1300 - ipUDPHeaders
				if res.settled > carried || res.settled <= carried-16 {
					t.Fatalf("seed %d: settled at %d bytes (sizes %v), the path carries %d", seed, res.settled, res.sizes, carried)
				}
				if !slices.Contains(res.sizes[1:], core.BaseDatagramSize) {
					t.Fatalf("seed %d: sizes %v never fell back to %d", seed, res.sizes, core.BaseDatagramSize)
				}
				if seed == 1 {
					t.Logf("settled at %d bytes %v after the shrink, sizes %v; %d MiB in %v virtual", res.settled, res.settleAt, res.sizes, tc.total>>20, res.elapsed)
				}
			}
		})
	}
}
