package core_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// TestSimAbortMidTransfer: a sender aborts in the middle of a bulk
// transfer, at a random moment (as the root package's Close does when its
// linger time runs out), over every profile. The invariant, checked on
// every step: an aborting connection's CLOSE goes out at its very next
// PollTransmit, whatever its congestion window and pacer say (a close is
// aborted because the peer stopped taking data, usually with the window
// full of packets nobody will acknowledge: held back, the CLOSE never
// went, and the peer learnt of the abort only at its idle timeout). And
// the receiver never reads io.EOF: it ends with ErrAborted, on a path that
// loses nothing within a few round trips; where the one CLOSE may be lost,
// at the latest at its idle timeout.
func TestSimAbortMidTransfer(t *testing.T) {
	t.Parallel()
	first, n := uint64(0), uint64(seedsPerProfile())
	if *soakSeeds == 0 {
		n /= 4 // (a quarter of TestSim's: one mechanism; -soak runs them all)
	}
	if *simSeed >= 0 {
		first, n = uint64(*simSeed), 1
	}
	for _, p := range simProfiles() {
		t.Run(p.name, func(t *testing.T) {
			for seed := first; seed < first+n; seed++ {
				if err := runAbort(p, seed); err != nil {
					t.Fatalf("profile %s seed %d: %v\nrerun: go test ./core/ -run 'TestSimAbortMidTransfer/%s$' -simseed %d -v", p.name, seed, err, p.name, seed)
				}
			}
		})
	}
}

// abortIdle is the receiver's idle timeout in runAbort: the bound on when
// it learns of the abort if the CLOSE is lost.
const abortIdle = 5 * time.Second

func runAbort(p simProfile, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 0xab0))
	net := newSimNet(seed)
	cfg := func(cid uint64) *core.Config {
		return &core.Config{Rand: rand.NewPCG(seed, cid), InitialRTT: 50 * time.Millisecond,
			HeartbeatPeriod: time.Second, IdleTimeout: abortIdle}
	}
	ca, err := core.NewConn(cfg(1), 0xA, sim.Epoch)
	if err != nil {
		return err
	}
	cb, err := core.NewConn(cfg(2), 0xB, sim.Epoch)
	if err != nil {
		return err
	}
	data := make([]byte, 4<<20) // more than the run sends before the abort
	sizes := make([]int, len(data)/(64<<10))
	for i := range sizes {
		sizes[i] = 64 << 10
	}
	a := &abortingSender{bulkSender: bulkSender{conn: ca, data: data, sizes: sizes},
		abortAt: sim.Epoch.Add(time.Duration(50+r.IntN(1500)) * time.Millisecond)}
	b := &abortReceiver{bulkReceiver: bulkReceiver{conn: cb, want: data}}
	net.AddNode(a)
	net.AddNode(b)
	if err := net.Connect(0, 1, p.ab); err != nil {
		return err
	}
	// (The receiver's Recv fails once its connection ended: that is b.err.)
	done := func() bool { return a.err != nil || b.eof || (ca.Closed() && cb.Closed()) }
	if err := net.RunUntil(done, a.abortAt.Sub(sim.Epoch)+2*abortIdle); err != nil {
		return fmt.Errorf("%w (aborted %v, sent %d, received %d, a %v, b %v)", err, a.aborted, a.off, b.got, ca.Err(), cb.Err())
	}
	switch {
	case a.err != nil:
		return a.err
	case b.eof:
		return fmt.Errorf("the receiver read io.EOF after %d bytes: an abort must read as an error", b.got)
	case a.aborted.IsZero():
		return fmt.Errorf("the transfer ended before the abort (%d bytes received)", b.got)
	case !errors.Is(cb.Err(), core.ErrAborted) && !errors.Is(cb.Err(), core.ErrIdleTimeout):
		return fmt.Errorf("the receiver ended with %v, want ErrAborted", cb.Err())
	case lossless(p.ab) && !errors.Is(cb.Err(), core.ErrAborted):
		return fmt.Errorf("on a path that loses nothing the receiver ended with %v, want ErrAborted", cb.Err())
	case lossless(p.ab) && b.ended.Sub(a.aborted) > time.Second:
		return fmt.Errorf("the receiver learnt of the abort %v after it", b.ended.Sub(a.aborted))
	}
	return nil
}

// abortReceiver is a bulkReceiver that notes when its connection ended.
type abortReceiver struct {
	bulkReceiver
	ended time.Time
}

func (r *abortReceiver) note(now time.Time) {
	if r.ended.IsZero() && r.conn.Closed() {
		r.ended = now
	}
}

func (r *abortReceiver) HandleDatagram(now time.Time, b []byte) {
	r.bulkReceiver.HandleDatagram(now, b)
	r.note(now)
}

func (r *abortReceiver) HandleTimeout(now time.Time) {
	r.bulkReceiver.HandleTimeout(now)
	r.note(now)
}

// abortingSender is a bulkSender that aborts at abortAt instead of closing,
// and checks that the abort's CLOSE leaves at the next PollTransmit.
type abortingSender struct {
	bulkSender
	abortAt time.Time
	aborted time.Time
	polled  bool // PollTransmit was called since the abort
}

func (s *abortingSender) act(now time.Time) {
	if !s.aborted.IsZero() {
		return
	}
	if !now.Before(s.abortAt) {
		s.aborted = now
		s.conn.Abort(now, core.ErrClosed)
		return
	}
	s.close = true // (never closes gracefully)
	s.bulkSender.act(now)
}

func (s *abortingSender) HandleDatagram(now time.Time, b []byte) {
	s.conn.HandleDatagram(now, b)
	s.act(now)
}

func (s *abortingSender) PollTransmit(now time.Time, b []byte) int {
	s.act(now)
	n := s.conn.PollTransmit(now, b)
	if !s.aborted.IsZero() && !s.polled {
		s.polled = true
		if n == 0 && s.err == nil {
			s.err = fmt.Errorf("the abort's CLOSE did not go out at the first PollTransmit after it (%v in flight, window %v)",
				s.conn.Stats().BytesInFlight, s.conn.Stats().CongestionWindow)
		}
	}
	return n
}

func (s *abortingSender) HandleTimeout(now time.Time) {
	s.conn.HandleTimeout(now)
	s.act(now)
}
