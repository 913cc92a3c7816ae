package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"runtime"
	"testing"
	"time"
)

// measureJSON runs the scenarios of args as run would, and checks that the
// JSON carries every figure the tables print: the tables written from the
// report decoded from the JSON are the tables written from the report
// itself, byte for byte. It returns the decoded report.
func measureJSON(t *testing.T, args ...string) *report {
	t.Helper()
	o, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep := measure(ctx, o, io.Discard)

	var js bytes.Buffer
	if err := rep.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, js.String())
	}
	var want, got bytes.Buffer
	rep.writeTables(&want)
	back.writeTables(&got)
	if want.String() != got.String() {
		t.Errorf("tables from the JSON differ from the tables of the run:\nrun:\n%s\nfrom JSON:\n%s", want.String(), got.String())
	}
	return &back
}

// TestJSONHasEveryFigure runs bulk and rr twice (-repeat 2): the JSON has
// every figure of the tables, each figure is the median of its runs, and
// bulk has the softirq figures.
func TestJSONHasEveryFigure(t *testing.T) {
	back := *measureJSON(t, append(tinyArgs, "-repeat", "2", "-transports", "rudp,tcp,udp", "bulk", "rr")...)
	if back.Options.Repeat != 2 {
		t.Errorf("options.repeat = %d in the JSON, want 2", back.Options.Repeat)
	}
	checkReport(t, &back, []string{"bulk", "rr"})

	for _, r := range back.Results {
		if r.Error != "" {
			continue
		}
		for _, m := range r.Metrics {
			if len(m.Runs) != 2 {
				t.Errorf("%s %s %s: %d runs' values, want 2", r.Scenario, r.Transport, m.Name, len(m.Runs))
				continue
			}
			if lo, hi := min(m.Runs[0], m.Runs[1]), max(m.Runs[0], m.Runs[1]); m.Value < lo || m.Value > hi {
				t.Errorf("%s %s %s: median %v outside its runs %v", r.Scenario, r.Transport, m.Name, m.Value, m.Runs)
			}
		}
		if r.Scenario == "bulk" && runtime.GOOS == "linux" {
			cpu, _ := r.get("CPU/GiB")
			soft, okS := r.get("softirq/GiB")
			sum, okT := r.get("CPU+softirq/GiB")
			if !okS || !okT || soft < 0 || sum < cpu {
				t.Errorf("bulk %s: softirq/GiB %v (%v), CPU+softirq/GiB %v (%v), CPU/GiB %v: want both, and the sum >= CPU", r.Transport, soft, okS, sum, okT, cpu)
			}
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{nil, 0},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestMergeRuns: a figure is the median of the runs that measured it; a
// transport that failed in one run is merged from the others, with a note;
// one that failed in every run keeps its error.
func TestMergeRuns(t *testing.T) {
	o := &options{Transports: allTransports, Repeat: 3}
	mk := func(rudpGoodput float64, udpErr string) *report {
		rep := newReport(o)
		r := &result{Scenario: "bulk", Transport: "rudp"}
		r.add("goodput", "Mbit/s", rudpGoodput, "higher")
		rep.Results = append(rep.Results, r, &result{Scenario: "bulk", Transport: "tcp", Error: "refused"})
		u := &result{Scenario: "bulk", Transport: "udp", Error: udpErr}
		if udpErr == "" {
			u.add("goodput", "Mbit/s", 100, "higher")
		}
		rep.Results = append(rep.Results, u)
		return rep
	}
	rep := mergeRuns([]*report{mk(300, ""), mk(100, "no datagram arrived"), mk(200, "")})
	if v, _ := rep.value("bulk", "", "rudp", "goodput"); v != 200 {
		t.Errorf("rudp goodput = %v, want the median 200", v)
	}
	if m, _ := rep.metricOf("bulk", "", "rudp", "goodput"); len(m.Runs) != 3 || m.Runs[0] != 300 {
		t.Errorf("rudp goodput runs = %v, want [300 100 200]", m.Runs)
	}
	if m, _ := rep.metricOf("bulk", "", "udp", "goodput"); len(m.Runs) != 2 {
		t.Errorf("udp goodput runs = %v, want the 2 that measured it", m.Runs)
	}
	if len(rep.Env.Notes) != 1 || !bytes.Contains([]byte(rep.Env.Notes[0]), []byte("2 of 3 runs")) {
		t.Errorf("notes = %q, want one saying udp was measured in 2 of 3 runs", rep.Env.Notes)
	}
	for _, r := range rep.Results {
		if r.Transport == "tcp" && (r.Error != "refused" || len(r.Metrics) != 0) {
			t.Errorf("tcp failed in every run: got error %q, metrics %v", r.Error, r.Metrics)
		}
	}
}
