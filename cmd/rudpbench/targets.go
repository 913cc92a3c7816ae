package main

import (
	"fmt"
	"strings"
)

// The goals of issue 12 (performance, round two) that rudpbench measures.
// Issue 4's goals stay in evaluateTargets: they guard against regressions.

type addTarget func(goal string, v, limit float64, pass bool, detail string)

type ratioOf func(scenario, phaseA, trA, phaseB, trB, name string) (q, a, b float64, ok bool)

// evaluatePlainTargets checks the plain-loopback goals: bulk at TCP's
// goodput and within 1.5x its CPU per byte (process + softirq where the
// machine says), rr within 1.2x raw UDP's p50 and 1.5x its p99.
func (r *report) evaluatePlainTargets(add addTarget, ratio ratioOf) {
	if q, a, b, ok := ratio("bulk", "", "rudp", "", "tcp", "goodput"); ok {
		add("bulk goodput >= TCP", q, 1, q >= 1, fmt.Sprintf("rudp %.0f Mbit/s / tcp %.0f Mbit/s = %.2fx", a, b, q))
	}
	cpu := "CPU+softirq/GiB"
	if _, ok := r.value("bulk", "", "rudp", cpu); !ok {
		cpu = "CPU/GiB"
	}
	if q, a, b, ok := ratio("bulk", "", "rudp", "", "tcp", cpu); ok {
		add("bulk CPU per GiB <= 1.5x TCP", q, 1.5, q <= 1.5, fmt.Sprintf("%s rudp %.2f s / tcp %.2f s = %.2fx", cpu, a, b, q))
	}
	for _, g := range []struct {
		name  string
		limit float64
	}{{"p50", 1.2}, {"p99", 1.5}} {
		if q, a, b, ok := ratio("rr", "", "rudp", "", "udp", g.name); ok {
			add(fmt.Sprintf("rr %s <= %.1fx raw UDP %s", g.name, g.limit, g.name), q, g.limit, q <= g.limit,
				fmt.Sprintf("rudp %.1f µs / udp %.1f µs = %.2fx", a, b, q))
		}
	}
}

// evaluateLossLatency checks that loss costs small messages little latency:
// rr's p99 through the proxy's loss within 1.25x its p99 without (runRR
// measures both in one run).
func (r *report) evaluateLossLatency(add addTarget, ratio ratioOf) {
	for _, ph := range r.phases("rr") {
		if !strings.HasPrefix(ph, "loss ") {
			continue
		}
		if q, a, b, ok := ratio("rr", ph, "rudp", "no loss", "rudp", "p99"); ok {
			add("rr p99 with loss <= 1.25x without", q, 1.25, q <= 1.25,
				fmt.Sprintf("rudp %.2f ms [%s] / %.2f ms [no loss] = %.2fx (%s)", a/1000, ph, b/1000, q, r.Env.Impair))
		}
	}
}
