package main

import (
	"fmt"
	"slices"
	"strings"
)

// mergeRuns folds the reports of -repeat runs into one: every metric's
// value becomes the median over the runs that measured it, and each run's
// value is kept in the metric's Runs. A result that failed in some runs is
// the median of the others (a note says so); one that failed in every run
// keeps the first run's error.
func mergeRuns(runs []*report) *report {
	if len(runs) == 1 {
		return runs[0]
	}
	out := *runs[0]
	out.Results = nil
	out.Env.Notes = nil
	type key struct{ scenario, phase, transport string }
	var keys []key
	byKey := map[key][]*result{}
	for _, rep := range runs {
		for _, n := range rep.Env.Notes {
			out.note("%s", n)
		}
		for _, r := range rep.Results {
			k := key{r.Scenario, r.Phase, r.Transport}
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], r)
		}
	}
	for _, k := range keys {
		out.Results = append(out.Results, out.mergeResults(byKey[k], len(runs)))
	}
	return &out
}

// mergeResults is one scenario, phase and transport over runs runs.
func (rep *report) mergeResults(rs []*result, runs int) *result {
	m := &result{Scenario: rs[0].Scenario, Phase: rs[0].Phase, Transport: rs[0].Transport}
	var measured []*result
	var errs []string
	for _, r := range rs {
		if r.Error == "" {
			measured = append(measured, r)
		} else {
			errs = append(errs, r.Error)
		}
	}
	if len(measured) == 0 {
		m.Error = errs[0]
		return m
	}
	if len(measured) < runs {
		rep.note("%s %s: figures are over the %d of %d runs that measured it (the others: %s)",
			strings.TrimSpace(m.Scenario+" "+bracket(m.Phase)), m.Transport, len(measured), runs, strings.Join(errs, "; "))
	}
	var names []string
	for _, r := range measured {
		for _, x := range r.Metrics {
			if !contains(names, x.Name) {
				names = append(names, x.Name)
			}
		}
	}
	for _, name := range names {
		var merged metric
		for _, r := range measured {
			for _, x := range r.Metrics {
				if x.Name == name {
					merged.Name, merged.Unit, merged.Better = x.Name, x.Unit, x.Better
					merged.Runs = append(merged.Runs, x.Value)
				}
			}
		}
		merged.Value = median(merged.Runs)
		m.Metrics = append(m.Metrics, merged)
	}
	return m
}

func bracket(phase string) string {
	if phase == "" {
		return ""
	}
	return "[" + phase + "]"
}

// median of vs (the mean of the middle two for an even count).
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// metricOf is the metric name of a transport's result in a scenario and phase.
func (r *report) metricOf(scenario, phase, transport, name string) (metric, bool) {
	if x := r.find(scenario, phase, transport); x != nil {
		for _, m := range x.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metric{}, false
}

// formatCell is a table cell: the value, and with several runs their range.
func formatCell(m metric) string {
	if len(m.Runs) < 2 {
		return formatValue(m.Value)
	}
	return fmt.Sprintf("%s (%s-%s)", formatValue(m.Value), formatValue(slices.Min(m.Runs)), formatValue(slices.Max(m.Runs)))
}
