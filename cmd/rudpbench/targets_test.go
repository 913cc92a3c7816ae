package main

import (
	"strings"
	"testing"
)

// TestIssue12Targets evaluates the goals on a made-up plain-loopback run and
// a lossy rr run: each is present with the right verdict.
func TestIssue12Targets(t *testing.T) {
	o := &options{Transports: allTransports, Repeat: 1}
	fig := func(rep *report, sc, phase, tr string, kv ...any) {
		r := &result{Scenario: sc, Phase: phase, Transport: tr}
		for i := 0; i < len(kv); i += 2 {
			r.add(kv[i].(string), "", kv[i+1].(float64), "")
		}
		rep.Results = append(rep.Results, r)
	}
	plain := newReport(o)
	fig(plain, "bulk", "", "rudp", "goodput", 9000.0, "CPU/GiB", 0.5, "CPU+softirq/GiB", 0.7)
	fig(plain, "bulk", "", "tcp", "goodput", 10000.0, "CPU/GiB", 0.4, "CPU+softirq/GiB", 0.5)
	fig(plain, "bulk", "", "udp", "goodput", 1000.0)
	fig(plain, "rr", "", "rudp", "p50", 11.0, "p99", 40.0)
	fig(plain, "rr", "", "udp", "p50", 10.0, "p99", 20.0)
	plain.evaluateTargets()

	lossy := newReport(o)
	lossy.Env.Impair = "userspace, each direction: loss 2%, delay 10ms (RTT 20ms)"
	fig(lossy, "rr", "no loss", "rudp", "p99", 22000.0)
	fig(lossy, "rr", "loss 2%", "rudp", "p99", 26000.0)
	lossy.evaluateTargets()

	want := map[string]bool{
		"bulk goodput >= TCP":               false, // 0.9x
		"bulk CPU per GiB <= 1.5x TCP":      true,  // 0.7/0.5 = 1.4x, process + softirq
		"rr p50 <= 1.2x raw UDP p50":        true,  // 1.1x
		"rr p99 <= 1.5x raw UDP p99":        false, // 2x
		"rr p99 with loss <= 1.25x without": true,  // 1.18x
	}
	got := map[string]target{}
	for _, tg := range append(plain.Targets, lossy.Targets...) {
		got[tg.Goal] = tg
	}
	for goal, pass := range want {
		tg, ok := got[goal]
		if !ok {
			t.Errorf("no target %q; have %v", goal, got)
			continue
		}
		if tg.Pass != pass {
			t.Errorf("%q: pass = %v, want %v (%s)", goal, tg.Pass, pass, tg.Detail)
		}
	}
	if d := got["bulk CPU per GiB <= 1.5x TCP"].Detail; !strings.Contains(d, "CPU+softirq/GiB") {
		t.Errorf("the CPU target used %q, want process + softirq", d)
	}
}

// TestLongFatTarget: the long-fat-path goal is rudp's goodput ratio held to
// 90%, with TCP's ratio in the detail, and absent when longfat did not run.
func TestLongFatTarget(t *testing.T) {
	o := &options{Transports: []string{"rudp", "tcp"}, Repeat: 1, LongRTT: defaultLongRTT, ShortRTT: defaultShortRTT, LFRate: 12_500_000, LFSizeMiB: 32}
	for _, tc := range []struct {
		ratio float64
		pass  bool
	}{{0.95, true}, {0.9, true}, {0.76, false}} {
		rep := newReport(o)
		for _, x := range []struct {
			phase, tr, name string
			v               float64
		}{
			{"RTT 2ms", "rudp", "goodput", 90},
			{"RTT 100ms", "rudp", "goodput", 90 * tc.ratio},
			{"RTT 100ms / 2ms", "rudp", "goodput ratio", tc.ratio},
			{"RTT 100ms / 2ms", "tcp", "goodput ratio", 1.02},
		} {
			r := &result{Scenario: "longfat", Phase: x.phase, Transport: x.tr}
			r.add(x.name, "", x.v, "higher")
			rep.Results = append(rep.Results, r)
		}
		rep.evaluateTargets()
		if len(rep.Targets) != 1 {
			t.Fatalf("ratio %v: targets %+v, want the longfat one", tc.ratio, rep.Targets)
		}
		tg := rep.Targets[0]
		if tg.Goal != "longfat: goodput at RTT 100ms >= 90% of RTT 2ms" || tg.Pass != tc.pass || tg.Value != tc.ratio || tg.Limit != 0.9 {
			t.Errorf("ratio %v: target %+v, want pass %v", tc.ratio, tg, tc.pass)
		}
		if !strings.Contains(tg.Detail, "tcp through the relay 102%") {
			t.Errorf("detail %q lacks TCP's ratio", tg.Detail)
		}
	}
	rep := newReport(o)
	rep.evaluateTargets()
	if len(rep.Targets) != 0 {
		t.Errorf("targets without a longfat run: %+v", rep.Targets)
	}
}
