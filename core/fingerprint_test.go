package core_test

import (
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"hash"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// The simulator's fingerprint: a change meant to move no behaviour (a
// refactor) must leave every simulated run bit-identical. With
// -fingerprint N, TestSimFingerprint runs N seeds of each simulated
// scenario and logs one digest per scenario of every datagram each
// network delivered (virtual time, from, to, bytes) and each run's outcome;
// run it before and after the change and compare the logs:
//
//	go test ./core -run '^TestSimFingerprint$' -fingerprint 300 -v | grep digest

var fingerprintSeeds = flag.Int("fingerprint", 0, "TestSimFingerprint: the seeds per scenario whose runs it hashes")

// fingerprint, while TestSimFingerprint runs (alone: it is not parallel, and
// nil otherwise), receives the trace of every network newSimNet makes.
var fingerprint hash.Hash

// newSimNet returns sim.New(seed), traced into fingerprint when that is set.
func newSimNet(seed uint64) *sim.Network {
	n := sim.New(seed)
	if h := fingerprint; h != nil {
		var hdr [20]byte
		n.OnDeliver = func(now time.Time, from, to int, b []byte) {
			binary.BigEndian.PutUint64(hdr[:], uint64(now.Sub(sim.Epoch)))
			binary.BigEndian.PutUint32(hdr[8:], uint32(from))
			binary.BigEndian.PutUint32(hdr[12:], uint32(to))
			binary.BigEndian.PutUint32(hdr[16:], uint32(len(b)))
			h.Write(hdr[:])
			h.Write(b)
		}
	}
	return n
}

func TestSimFingerprint(t *testing.T) {
	n := uint64(*fingerprintSeeds)
	if n == 0 {
		t.Skip("a tool for refactors: run with -fingerprint N")
	}
	defer func() { fingerprint = nil }()
	scenario := func(name string, seeds uint64, run func(seed uint64) string) {
		h := sha256.New()
		fingerprint = h
		for seed := uint64(1); seed <= seeds; seed++ {
			fmt.Fprintf(h, "seed %d: %s\n", seed, run(seed))
		}
		t.Logf("digest %-28s %3d seeds %x", name, seeds, h.Sum(nil)[:12])
	}
	outcome := func(d time.Duration, err error) string { return fmt.Sprintf("%v %v", d, err) }
	for _, p := range simProfiles() {
		scenario("sim/"+p.name, n, func(seed uint64) string { return outcome(runSimTimed(p, seed, false)) })
	}
	for _, p := range simProfiles() {
		if p.onClose != nil {
			continue // (as TestSimHalfClose)
		}
		p.halfClose = true
		scenario("halfclose/"+p.name, max(n/2, 1), func(seed uint64) string { return outcome(runSimTimed(p, seed, false)) })
	}
	for _, p := range simProfiles() {
		scenario("abort/"+p.name, max(n/4, 1), func(seed uint64) string { return fmt.Sprint(runAbort(p, seed)) })
	}
	for _, p := range simProfiles() {
		for _, gone := range []bool{false, true} {
			scenario(fmt.Sprintf("serverloss/%s/%v", p.name, gone), max(n/10, 1), func(seed uint64) string {
				return outcome(runServerRestart(p, seed, gone))
			})
		}
	}
	scenario("bulk/harsh", max(n/10, 1), func(seed uint64) string {
		return outcome(runBulk(profileByName("harsh"), seed, 1<<20, bulkTimeLimit))
	})
	scenario("pmtu/1300-loss", max(n/60, 1), func(seed uint64) string {
		res, err := pmtuRun{mtu: 1300, maxDatagram: 1472, loss: 0.02, total: 1 << 20}.run(seed)
		return fmt.Sprintf("%v %d %v %+v %v", res.elapsed, res.settled, res.sizes, res.sender, err)
	})
	for _, name := range []string{"loss10", "dupreorder", "harsh"} {
		link := epSimProfiles()[name]
		scenario("endpoint/"+name, max(n/10, 1), func(seed uint64) string {
			s := newEpSim(t, seed, link, 50, core.EndpointConfig{AcceptBudget: 40, HostShare: 1})
			err := s.run(120 * time.Second)
			est, cerr := s.check()
			return fmt.Sprintf("%v %d %v %+v", err, est, cerr, s.server.ep.Stats())
		})
	}
}
