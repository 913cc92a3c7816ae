package main

import (
	"net"

	"github.com/rudp-go/rudp"
)

// rrRedundancyPhase is rr's -redundancy (issue 12's fourth target: loss
// that costs small messages no latency): rudp with Config.Redundancy on both
// ends through im, the impairment of the phase named phase, as phase
// "redundancy" (phase ""), or phase + ", redundancy" (with -loss: "loss 2%,
// redundancy", whose p99 the targets hold to 1.25x the "no loss" phase's,
// as the plain lossy phase's).
func (b *bench) rrRedundancyPhase(phase string, im impairment) {
	if !b.opts.has("rudp") || b.ctx.Err() != nil {
		return
	}
	name := "redundancy"
	if phase != "" {
		name = phase + ", redundancy"
	}
	b.one("rr", name, "rudp", func(t string, r *result) error {
		return b.rrOnce(t, &rudp.Config{Redundancy: true}, im, r)
	})
}

// addRedundancyStats adds what redundancy cost and saved over both ends of
// a rudp ping-pong: the bytes sent as copies against all others (the
// extra bytes), the packets sent only for copies, and the copies that
// arrived when their original did not. (Zero without redundancy.)
func addRedundancyStats(r *result, p *pair) {
	var copies, other, packets, useful float64
	for _, c := range []net.Conn{p.client, p.server} {
		rc, ok := c.(*rudp.Conn)
		if !ok {
			return
		}
		s := rc.Stats()
		copies += float64(s.RedundantBytesSent)
		other += float64(s.BytesSent - s.RedundantBytesSent)
		packets += float64(s.RedundantPacketsSent)
		useful += float64(s.RedundantUseful)
	}
	if other > 0 {
		r.add("redundancy extra bytes", "%", 100*copies/other, "lower")
	}
	r.add("redundancy packets", "", packets, "")
	r.add("copies useful", "", useful, "")
}
