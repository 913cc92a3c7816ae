package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
)

// runCompare is the "compare" subcommand: two -json reports of the same
// scenarios (two builds, or one build on two machines) side by side, as a
// Markdown table a scenario and phase: every metric of every transport
// before and after, rudp's after/before, and rudp's ratios to the
// baselines of each run (the figures to read on a loaded machine).
//
//	rudpbench -json -repeat 3 bulk rr > before.json   # one build
//	rudpbench -json -repeat 3 bulk rr > after.json    # the other
//	rudpbench compare before.json after.json
func runCompare(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rudpbench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rudpbench compare BEFORE.json AFTER.json\n\n"+
			"Prints two rudpbench -json reports side by side, a Markdown table a scenario and phase.\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("compare: want two files, BEFORE.json and AFTER.json")
	}
	before, err := readReport(fs.Arg(0))
	if err != nil {
		return err
	}
	after, err := readReport(fs.Arg(1))
	if err != nil {
		return err
	}
	writeComparison(stdout, fs.Arg(0), fs.Arg(1), before, after)
	return nil
}

// readReport reads the report rudpbench -json wrote to path.
func readReport(path string) (*report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("compare: %s: %w", path, err)
	}
	if r.Options == nil {
		return nil, fmt.Errorf("compare: %s: not a rudpbench -json report (no options)", path)
	}
	return &r, nil
}

// writeComparison writes the tables of before and after (named by their
// files), then each run's targets.
func writeComparison(w io.Writer, nameBefore, nameAfter string, before, after *report) {
	for _, x := range []struct {
		label, name string
		r           *report
	}{{"before", nameBefore, before}, {"after", nameAfter, after}} {
		fmt.Fprintf(w, "%s: %s, %s, load %.1f-%.1f, %d run(s), impairment: %s\n", x.label, x.name, x.r.Env.Start,
			x.r.Env.LoadAvg[0], x.r.Env.LoadAvg[1], max(x.r.Options.Repeat, 1), x.r.Env.Impair)
	}
	for _, sp := range comparedPhases(before, after) {
		transports := comparedTransports(sp, before, after)
		title := sp[0]
		if sp[1] != "" {
			title += " [" + sp[1] + "]"
		}
		fmt.Fprintf(w, "\n### %s\n\n", title)
		header, rule := "| metric |", "|---|"
		for _, t := range transports {
			header += fmt.Sprintf(" %s before | %s after |", t, t)
			rule += "---|---|"
			if t == "rudp" {
				header += " rudp after/before |"
				rule += "---|"
			}
		}
		baselines := slices.DeleteFunc(slices.Clone(transports), func(t string) bool { return t == "rudp" })
		for _, t := range baselines {
			header += fmt.Sprintf(" rudp/%s before | rudp/%s after |", t, t)
			rule += "---|---|"
		}
		fmt.Fprintln(w, header)
		fmt.Fprintln(w, rule)
		names := after.metricNames(sp[0], sp[1])
		for _, n := range before.metricNames(sp[0], sp[1]) {
			if !contains(names, n) {
				names = append(names, n)
			}
		}
		for _, name := range names {
			unit, better := after.metricInfo(sp[0], sp[1], name)
			if unit == "" && better == "" {
				unit, better = before.metricInfo(sp[0], sp[1], name)
			}
			line := "| " + metricLabel(name, unit, better) + " |"
			for _, t := range transports {
				bm, bok := before.metricOf(sp[0], sp[1], t, name)
				am, aok := after.metricOf(sp[0], sp[1], t, name)
				line += " " + cellOr(bm, bok) + " | " + cellOr(am, aok) + " |"
				if t == "rudp" {
					line += " " + ratioCell(am.Value, bm.Value, aok && bok && better != "") + " |"
				}
			}
			for _, t := range baselines {
				for _, r := range []*report{before, after} {
					rv, rok := r.value(sp[0], sp[1], "rudp", name)
					ov, ook := r.value(sp[0], sp[1], t, name)
					line += " " + ratioCell(rv, ov, rok && ook && better != "") + " |"
				}
			}
			fmt.Fprintln(w, line)
		}
	}
	for _, x := range []struct {
		label string
		r     *report
	}{{"before", before}, {"after", after}} {
		if len(x.r.Targets) == 0 {
			continue
		}
		fmt.Fprintf(w, "\ntargets (%s):\n", x.label)
		for _, t := range x.r.Targets {
			verdict := "FAIL"
			if t.Pass {
				verdict = "pass"
			}
			fmt.Fprintf(w, "  [%s] %s: %s\n", verdict, t.Goal, t.Detail)
		}
	}
}

// comparedTransports are the transports of either report in a scenario and
// phase, rudp first.
func comparedTransports(sp [2]string, before, after *report) []string {
	var ts []string
	for _, r := range []*report{before, after} {
		for _, x := range r.Results {
			if x.Scenario == sp[0] && x.Phase == sp[1] && !contains(ts, x.Transport) {
				ts = append(ts, x.Transport)
			}
		}
	}
	slices.SortStableFunc(ts, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "rudp":
			return -1
		case b == "rudp":
			return 1
		}
		return 0
	})
	return ts
}

// comparedPhases are the (scenario, phase) pairs of either report, in the
// order after's ran, then those only before has.
func comparedPhases(before, after *report) [][2]string {
	var out [][2]string
	for _, r := range []*report{after, before} {
		for _, x := range r.Results {
			if sp := [2]string{x.Scenario, x.Phase}; !slices.Contains(out, sp) {
				out = append(out, sp)
			}
		}
	}
	return out
}

func cellOr(m metric, ok bool) string {
	if !ok {
		return "-"
	}
	return formatCell(m)
}

// ratioCell is a/b as a ratio cell, or "-" when there is none to give.
func ratioCell(a, b float64, ok bool) string {
	if !ok || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}
