package core_test

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// TestSimHalfClose runs the workload of TestSim on every profile, ended by
// half-closes instead of a Close: in half the seeds a request/response
// exchange (a sends its whole flow and half-closes; b sends nothing until
// it read a's io.EOF, then answers with its flow and closes, after its own
// CloseWrite in half of those), in the other half both send at once and
// half-close when done, each closing once it read the other's io.EOF and
// sent its whole flow. On
// every step, besides TestSim's invariants (every message checked,
// exactly once and in order; nothing acknowledged dropped; held memory):
// io.EOF is never read before every Delivery message the peer sent arrived
// (never over a gap), a half-closed side still receives all the peer
// sends, Recv returns only io.EOF once it did, and Send after CloseWrite
// fails with ErrClosed. Both sides must read io.EOF and end gracefully.
func TestSimHalfClose(t *testing.T) {
	for _, p := range simProfiles() {
		if p.onClose != nil || p.streams > 0 {
			// (Scripted for the Close; the streams profiles half-close
			// each of their streams in TestSim itself.)
			continue
		}
		p.halfClose = true
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			first, n := *simFirst, uint64(seedsPerProfile())
			if *simSeed >= 0 {
				first, n = uint64(*simSeed), 1
			}
			for seed := first; seed < first+n; seed++ {
				if _, err := runSimTimed(p, seed, false); err != nil {
					t.Fatalf("profile %s seed %d: %v\nrerun: go test ./core/ -run 'TestSimHalfClose/%s$' -simseed %d -v",
						p.name, seed, err, p.name, seed)
				}
			}
		})
	}
}

// setupHalfClose gives a and b their half-close roles for seed (drawn from
// a source of its own: the other draws stay as TestSim's).
func setupHalfClose(seed uint64, a, b *simNode) {
	r := rand.New(rand.NewPCG(seed, 0xfa1f))
	a.strictEOF, b.strictEOF = true, true
	a.closeWriteWhenSent = true
	// (On the earlyclose profiles a also closes as soon as Send took its
	// flow, CloseWrite then Close: it reads nothing of b's, b may find it
	// closed.)
	early := a.closeWhenSent
	a.onEOF = func(time.Time) { a.closeWhenSent = true }
	if early {
		b.holdSend = r.IntN(2) == 0
		b.closeWriteWhenSent = true
		b.onEOF = func(time.Time) { b.closeNow = true }
		return
	}
	if r.IntN(2) == 0 {
		// Request/response: b answers once it read the whole request.
		b.holdSend = true
		b.closeWriteWhenSent = r.IntN(2) == 0
		b.onEOF = func(time.Time) { b.holdSend, b.closeWhenSent = false, true }
		return
	}
	// Both directions at once (a proxy copying each way).
	b.closeWriteWhenSent = true
	b.onEOF = func(time.Time) { b.closeWhenSent = true }
}

// closeWrite half-closes the node's connection: from then on every Send
// must fail with ErrClosed.
func (n *simNode) closeWrite(now time.Time) {
	n.wroteClosed = true
	if err := n.conn.CloseWrite(now); err != nil {
		n.fail(fmt.Errorf("CloseWrite: %w", err))
		return
	}
	for _, g := range []core.Guarantee{core.None, core.Order, core.Delivery} {
		if err := n.conn.Send(g, []byte("after CloseWrite")); !errors.Is(err, core.ErrClosed) {
			n.fail(fmt.Errorf("Send(%v) after CloseWrite: %v, want ErrClosed", g, err))
		}
	}
}

// checkAfterEOF: once Recv returned io.EOF it returns nothing else.
func (n *simNode) checkAfterEOF() {
	m, err := n.conn.Recv()
	if err != io.EOF {
		n.fail(fmt.Errorf("Recv after io.EOF: %d-byte %v message, %v", len(m.Data), m.Guarantee, err))
	}
}

// runHalfClose runs the half-close workload to its end: both sides read
// io.EOF and the connection ends gracefully on both.
func runHalfClose(net *sim.Network, p simProfile, a, b *simNode, failed func() error, describe func(string, error) error) error {
	closed := func() bool { return failed() != nil || (a.conn.Closed() && b.conn.Closed()) }
	if err := net.RunUntil(closed, 2*p.timeLimit); err != nil {
		return describe("half-close", err)
	}
	if err := failed(); err != nil {
		return describe("half-close", err)
	}
	for _, n := range []*simNode{a, b} {
		if n == a && p.earlyClose {
			if a.conn.Err() != nil {
				return describe("half-close", fmt.Errorf("conn %x ended with %v, want a graceful close", n.conn.LocalCID(), n.conn.Err()))
			}
			continue
		}
		switch {
		case !n.eof:
			return describe("half-close", fmt.Errorf("conn %x never read io.EOF", n.conn.LocalCID()))
		case !n.in.allDelivered():
			return describe("half-close", fmt.Errorf("conn %x: %d of %d Delivery messages", n.conn.LocalCID(), n.in.delContig, len(n.in.dels)))
		case n.conn.Err() != nil:
			return describe("half-close", fmt.Errorf("conn %x ended with %v, want a graceful close", n.conn.LocalCID(), n.conn.Err()))
		}
	}
	return nil
}
