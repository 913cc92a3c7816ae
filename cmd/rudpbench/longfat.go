package main

import (
	"fmt"
	"time"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/impair"
)

// longfat moves the same -lfsize MiB through the same bottleneck (-lfrate,
// -queue, a path MTU of -mtu) at a short round trip (-shortrtt) and a long
// one (-longrtt), every transport at both, and reports each transport's
// goodput at the long round trip as a share of its goodput at the short
// one: what a long fat path costs (issue 12 target 5: >= 90% at 100 ms
// against 2 ms, 100 Mbit/s).
//
// The path is an Internet path, not loopback: the proxy drops datagrams
// longer than the MTU less 28 bytes of IPv4 and UDP headers, as a router
// drops a packet that does not fit (silently: the proxy sends no ICMP), so
// rudp's Config.MaxDatagramSize is what the route of a host on such a
// link says (MTU less 28: 1472 at 1500; see Config.MaxDatagramSize). Left
// to loopback's route, rudp would send 65,507-byte datagrams, which a
// 64 KiB bottleneck queue holds one of; and with the proxy's MTU below
// the route's, the search for the path MTU would take a dozen round trips
// of probes (1.3 s at 100 ms) and the window would count in 64 KiB
// datagrams, neither of which a host on an Ethernet link sees.

const (
	defaultLongRTT   = 100 * time.Millisecond
	defaultShortRTT  = 2 * time.Millisecond
	defaultLFRate    = "100mbit"
	defaultLFSizeMiB = 32
	// defaultLFMTU is longfat's path MTU when -mtu is not given (Ethernet).
	defaultLFMTU = 1500
	// ipv4UDPHeaders is what an IPv4 packet's MTU holds besides the UDP payload.
	ipv4UDPHeaders = 20 + 8
)

// longfatMTU is the MTU of longfat's path.
func (o *options) longfatMTU() int {
	if o.LoMTU != 0 {
		return o.LoMTU
	}
	return defaultLFMTU
}

// longfatPhase names the phase of a round trip; longfatRatioPhase the
// phase of the ratio of the long's goodput to the short's.
func longfatPhase(rtt time.Duration) string { return "RTT " + rtt.String() }

func (o *options) longfatRatioPhase() string {
	return fmt.Sprintf("RTT %v / %v", o.LongRTT, o.ShortRTT)
}

// longfatPath is the impairment of longfat's path at round trip rtt: half
// of it each way, the bottleneck's rate and queue, the MTU.
func (b *bench) longfatPath(rtt time.Duration) impairment {
	o := b.opts
	c := impair.Config{
		Seed:            o.Seed,
		Delay:           rtt / 2,
		Rate:            o.LFRate,
		QueueBytes:      o.Queue,
		MaxDatagramSize: o.longfatMTU() - ipv4UDPHeaders,
	}
	down := c
	down.Seed = o.Seed + 1
	return impairment{up: c, down: down, active: true}
}

func (b *bench) runLongFat() {
	o := b.opts
	size := int64(o.LFSizeMiB) << 20
	queue := o.Queue
	if queue == 0 {
		queue = impair.DefaultQueueBytes
	}
	b.rep.note("longfat: %d MiB through a bottleneck of %s with a %d-byte drop-tail queue, path MTU %d (the proxy drops longer datagrams), at RTT %v and %v; rudp through the impair proxy, TCP through the relay, which ends TCP on each side: TCP's congestion control sees loopback's round trip, not the path's (raw UDP, a blast, is no baseline for a bottleneck: it is not run)",
		o.LFSizeMiB, formatRate(o.LFRate), queue, o.longfatMTU(), o.ShortRTT, o.LongRTT)
	goodput := map[string][]float64{}
	for _, rtt := range []time.Duration{o.ShortRTT, o.LongRTT} {
		im := b.longfatPath(rtt)
		for _, t := range o.Transports {
			if b.ctx.Err() != nil {
				return
			}
			if t != "rudp" && t != "tcp" {
				continue
			}
			b.one("longfat", longfatPhase(rtt), t, func(t string, r *result) error {
				p, err := b.dial(t, &rudp.Config{MaxDatagramSize: o.longfatMTU() - ipv4UDPHeaders}, im)
				if err != nil {
					return err
				}
				defer p.Close()
				if err := b.bulkStream(t, p, size, im, r); err != nil {
					return err
				}
				if p.proxy != nil {
					st := p.proxy.Stats()
					r.add("proxy queue drops", "", float64(st.Up.DroppedQueue+st.Down.DroppedQueue), "")
					r.add("proxy too-big drops", "", float64(st.Up.DroppedTooBig+st.Down.DroppedTooBig), "")
				}
				g, _ := r.get("goodput")
				goodput[t] = append(goodput[t], g)
				return nil
			})
		}
	}
	for _, t := range o.Transports {
		if g := goodput[t]; len(g) == 2 && g[0] > 0 {
			r := &result{Scenario: "longfat", Phase: o.longfatRatioPhase(), Transport: t}
			r.add("goodput ratio", "", g[1]/g[0], "higher")
			b.rep.Results = append(b.rep.Results, r)
		}
	}
}

// evaluateLongFat checks issue 12's long-fat-path goal: rudp's goodput at
// the long round trip >= 90% of its goodput at the short one, through the
// same bottleneck, in the same run.
func (r *report) evaluateLongFat(add addTarget) {
	o := r.Options
	ph := o.longfatRatioPhase()
	q, ok := r.value("longfat", ph, "rudp", "goodput ratio")
	if !ok {
		return
	}
	long, _ := r.value("longfat", longfatPhase(o.LongRTT), "rudp", "goodput")
	short, _ := r.value("longfat", longfatPhase(o.ShortRTT), "rudp", "goodput")
	detail := fmt.Sprintf("rudp %.1f Mbit/s at RTT %v / %.1f Mbit/s at %v = %.0f%%", long, o.LongRTT, short, o.ShortRTT, 100*q)
	if tq, ok := r.value("longfat", ph, "tcp", "goodput ratio"); ok {
		detail += fmt.Sprintf(" (tcp through the relay %.0f%%)", 100*tq)
	}
	detail += fmt.Sprintf("; %d MiB, %s", o.LFSizeMiB, formatRate(o.LFRate))
	add(fmt.Sprintf("longfat: goodput at RTT %v >= 90%% of RTT %v", o.LongRTT, o.ShortRTT), q, 0.9, q >= 0.9, detail)
}
