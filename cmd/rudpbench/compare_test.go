package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompare: rudpbench compare puts two -json reports side by side: each
// transport's figure before and after with its range, rudp's after/before,
// rudp's ratio to each baseline in each run (a metric with no better
// direction has none), a metric or phase only one report has, and each
// run's targets.
func TestCompare(t *testing.T) {
	mk := func(rudp, tcp []float64, onlyHere string) *report {
		r := &report{Options: &options{Repeat: len(rudp)}, Env: environment{Start: "then", LoadAvg: [2]float64{1, 2}}}
		add := func(tr string, runs []float64) {
			x := &result{Scenario: "bulk", Transport: tr}
			x.Metrics = append(x.Metrics,
				metric{Name: "goodput", Unit: "Mbit/s", Better: "higher", Value: median(runs), Runs: runs},
				metric{Name: "time", Unit: "s", Value: 1})
			r.Results = append(r.Results, x)
		}
		add("tcp", tcp)
		add("rudp", rudp)
		r.Results = append(r.Results, &result{Scenario: "rr", Phase: onlyHere, Transport: "rudp",
			Metrics: []metric{{Name: "p50", Unit: "µs", Better: "lower", Value: 10}}})
		r.Targets = []target{{Goal: "bulk >= TCP", Pass: onlyHere == "after", Detail: onlyHere}}
		return r
	}
	dir := t.TempDir()
	write := func(name string, r *report) string {
		var b bytes.Buffer
		if err := r.writeJSON(&b); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	before := write("before.json", mk([]float64{100, 90, 110}, []float64{400, 400, 400}, "before"))
	after := write("after.json", mk([]float64{150, 140, 160}, []float64{300, 300, 300}, "after"))
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"compare", before, after}, &out, &errOut); err != nil {
		t.Fatalf("compare: %v (%s)", err, errOut.String())
	}
	got := out.String()
	for _, want := range []string{
		"before: " + before + ", then, load 1.0-2.0, 3 run(s)",
		"### bulk\n",
		"| metric | rudp before | rudp after | rudp after/before | tcp before | tcp after | rudp/tcp before | rudp/tcp after |",
		// rudp 100 -> 150 (1.50x); tcp 400 -> 300; rudp/tcp 0.25x -> 0.50x.
		"| goodput (Mbit/s) ↑ | 100.0 (90.00-110.0) | 150.0 (140.0-160.0) | 1.50x | 400.0 (400.0-400.0) | 300.0 (300.0-300.0) | 0.25x | 0.50x |",
		"| time (s) | 1.00 | 1.00 | - | 1.00 | 1.00 | - | - |",
		"### rr [after]\n",
		"### rr [before]\n",
		"| metric | rudp before | rudp after | rudp after/before |\n|---|---|---|---|\n| p50 (µs) ↓ | - | 10.00 | - |\n",
		"targets (before):\n  [FAIL] bulk >= TCP: before",
		"targets (after):\n  [pass] bulk >= TCP: after",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the comparison lacks %q:\n%s", want, got)
		}
	}

	for _, args := range [][]string{
		{"compare", before},
		{"compare", before, filepath.Join(dir, "missing.json")},
		{"compare", before, write("other.json", &report{})},
	} {
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("rudpbench %s: no error", strings.Join(args, " "))
		}
	}
}
