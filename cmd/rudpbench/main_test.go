package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tinyArgs make every scenario run for a fraction of a second per transport.
var tinyArgs = []string{"-json", "-size", "1", "-duration", "200ms", "-idle", "300ms", "-conns", "20", "-dialconns", "10", "-rounds", "3", "-msgrate", "500"}

// mustHave is, per scenario, the metrics that must be positive in every
// transport's result.
var mustHave = map[string][]string{
	"bulk": {"goodput", "time", "CPU/GiB"},
	"rr":   {"p50", "p99", "max", "round trips/s"},
	"msg":  {"p50", "p99", "delivered"},
	// Memory per connection is a difference of page-granular totals: with
	// a tiny K it can be zero, so it is only required to be present.
	"conns":  {"handshakes/s", "connect all"},
	"dialrr": {"all done", "dialed p50", "done p50"},
}

// mustReport is, per scenario, metrics that must be present (any value).
var mustReport = map[string][]string{
	"conns":  {"mem/conn idle", "mem/conn after idle", "mem/conn active", "idle CPU"},
	"dialrr": {"mem/conn active", "failures"},
}

func runJSON(t *testing.T, args ...string) *report {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("run %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	return &rep
}

func checkReport(t *testing.T, rep *report, scenarios []string) {
	for _, sc := range scenarios {
		for _, tr := range allTransports {
			t.Run(sc+"/"+tr, func(t *testing.T) {
				var found []*result
				for _, r := range rep.Results {
					if r.Scenario == sc && r.Transport == tr {
						found = append(found, r)
					}
				}
				if len(found) == 0 {
					t.Fatalf("no result for %s over %s", sc, tr)
				}
				for _, r := range found {
					if r.Error != "" {
						t.Skipf("%s [%s] over %s could not run here: %s", sc, r.Phase, tr, r.Error)
					}
					for _, name := range mustHave[sc] {
						v, ok := r.get(name)
						if !ok || !(v > 0) {
							t.Errorf("%s [%s] over %s: %s = %v (present %v), want > 0", sc, r.Phase, tr, name, v, ok)
						}
					}
					for _, name := range mustReport[sc] {
						if _, ok := r.get(name); !ok {
							t.Errorf("%s [%s] over %s: no %s", sc, r.Phase, tr, name)
						}
					}
				}
			})
		}
	}
}

func TestAllScenariosTiny(t *testing.T) {
	rep := measureJSON(t, append(tinyArgs, "all")...)
	checkReport(t, rep, allScenarios)
	if rep.find("rr", "", "rudp") != nil && rep.find("rr", "", "udp") != nil && len(rep.Targets) == 0 {
		t.Errorf("no target was evaluated")
	}
}

func TestImpairedTiny(t *testing.T) {
	// Through the proxy (rudp, udp) and the relay (tcp): small delay and rate.
	rep := runJSON(t, append(tinyArgs, "-delay", "1ms", "-rate", "200mbit", "-loss", "0.01", "rr", "bulk")...)
	checkReport(t, rep, []string{"bulk", "rr"})
	if !strings.Contains(rep.Env.Impair, "delay 1ms") {
		t.Errorf("impairment description %q does not mention the delay", rep.Env.Impair)
	}
	// With loss, rr runs without it first, through the same proxy.
	if ph := rep.phases("rr"); len(ph) != 2 || ph[0] != "no loss" || ph[1] != "loss 1%" {
		t.Errorf("rr phases %q, want [no loss, loss 1%%]", ph)
	}
}

// TestTraceTiny runs bulk and msg with -trace: every rudp connection
// (client and server) leaves a qlog trace and its plot, in a directory per
// scenario and phase; the other transports none.
func TestTraceTiny(t *testing.T) {
	dir := t.TempDir()
	runJSON(t, append(tinyArgs, "-trace", dir, "-transports", "rudp,udp", "bulk", "msg")...)
	traces, err := filepath.Glob(filepath.Join(dir, "*", "*.sqlog"))
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	for _, tr := range traces {
		runs[filepath.Base(filepath.Dir(tr))]++
		if _, err := os.Stat(strings.TrimSuffix(tr, ".sqlog") + ".svg"); err != nil {
			t.Errorf("no plot of %s: %v", tr, err)
		}
	}
	// msg runs two phases (clean and impaired).
	for _, run := range []string{"bulk-rudp", "msg-clean-rudp", "msg-loss-5pct-rudp"} {
		if runs[run] != 2 {
			t.Errorf("%s: %d traces, want 2 (client and server); all: %v", run, runs[run], runs)
		}
	}
	if len(runs) != 3 {
		t.Errorf("trace directories %v, want bulk and msg's two phases, rudp only", runs)
	}
}

// TestNetns changes the system (a namespace, maybe apt-get install
// iptables), so it runs only when asked: RUDPBENCH_TEST_NETNS=1.
func TestNetns(t *testing.T) {
	if os.Getenv("RUDPBENCH_TEST_NETNS") == "" {
		t.Skip("creates a network namespace as root; set RUDPBENCH_TEST_NETNS=1 to run it")
	}
	if os.Geteuid() != 0 {
		t.Skip("-netns needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("-netns needs the ip command")
	}
	// The test binary re-executes itself inside the namespace; TestMain
	// turns that child into rudpbench.
	rep := runJSON(t, "-json", "-netns", "-loss", "0.02", "-size", "1", "-duration", "200ms", "-msgrate", "500", "-transports", "rudp,tcp,udp", "rr")
	checkReport(t, rep, []string{"rr"})
}

// TestMain lets the test binary act as rudpbench when -netns re-executes it
// inside the namespace (the child's first argument is -json).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "-json" || os.Args[1] == shardServerCmd) {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestShardTiny runs the shard scenario (its server is this test binary,
// re-executed: TestMain): each phase has rudp's and TCP's goodput and CPU
// figures, and the sockets' ratios are reported, in the JSON too.
func TestShardTiny(t *testing.T) {
	rep := runJSON(t, "-json", "-size", "4", "-streams", "4", "-sockets", "2", "-transports", "rudp,tcp", "shard")
	for _, ph := range []string{"4 streams, 1 socket", "4 streams, 2 sockets"} {
		for _, tr := range []string{"rudp", "tcp"} {
			r := rep.find("shard", ph, tr)
			if r == nil {
				t.Fatalf("no result for shard [%s] over %s: %+v", ph, tr, rep.Results)
			}
			for _, name := range []string{"goodput", "time", "server CPU/GiB", "client CPU/GiB"} {
				if v, ok := r.get(name); !ok || !(v > 0) {
					t.Errorf("shard [%s] over %s: %s = %v (present %v), want > 0", ph, tr, name, v, ok)
				}
			}
		}
	}
	r := rep.find("shard", "2 sockets vs 1", "rudp")
	if r == nil {
		t.Fatal("no ratio of 2 sockets to 1")
	}
	if v, ok := r.get("goodput ratio"); !ok || !(v > 0) {
		t.Errorf("goodput ratio = %v (present %v)", v, ok)
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"100mbit", 12_500_000},
		{"1gbit", 125_000_000},
		{"800kbit", 100_000},
		{"12.5MB", 12_500_000},
		{"1MiB", 1 << 20},
		{"8000", 1000},
	} {
		got, err := parseRate(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "fast", "-1mbit", "10furlongs"} {
		if _, err := parseRate(bad); err == nil {
			t.Errorf("parseRate(%q) accepted", bad)
		}
	}
}

// TestProtectedTiny: -psk and -tls run every rudp scenario over protected
// connections (conns: the handshake rate of the mode) and say so.
func TestProtectedTiny(t *testing.T) {
	for _, mode := range []string{"-psk", "-tls"} {
		t.Run(mode, func(t *testing.T) {
			rep := runJSON(t, append([]string{mode, "-transports", "rudp"}, append(tinyArgs, "bulk", "rr", "conns")...)...)
			for _, r := range rep.Results {
				if r.Error != "" {
					t.Fatalf("%s %s: %s", r.Scenario, r.Transport, r.Error)
				}
				for _, name := range mustHave[r.Scenario] {
					if v, ok := r.get(name); !ok || !(v > 0) {
						t.Errorf("%s: %s = %v", r.Scenario, name, v)
					}
				}
				if v, _ := r.get("dial failures"); r.Scenario == "conns" && v != 0 {
					t.Errorf("conns: %v dial failures", v)
				}
			}
			if !strings.Contains(strings.Join(rep.Env.Notes, "\n"), mode+": the rudp connections are protected") {
				t.Errorf("no note of the protection: %q", rep.Env.Notes)
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nosuch"},
		{"-transports", "sctp", "rr"},
		{"-loss", "1.5", "rr"},
		{"-size", "0", "bulk"},
		{"-repeat", "0", "bulk"},
		{"-mtu", "1500", "bulk"},           // without -netns
		{"-netns", "-mtu", "1000", "bulk"}, // below IPv6's minimum
		{"-repeat", "2", "-trace", "/tmp", "bulk"},
		{"-sockets", "0", "shard"},
		{"-streams", "0", "shard"},
		{"-psk", "-tls", "conns"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("run(%q) = nil error, want one", args)
		}
	}
}

// TestLongFatTiny runs longfat over a short path (1 MiB at 2 and 20 ms):
// both round trips' goodput for rudp and TCP, the proxy's drops for rudp,
// each transport's ratio and the target, all in the JSON; rudp's datagrams
// fit the path's MTU (the proxy dropped none as too big).
func TestLongFatTiny(t *testing.T) {
	rep := measureJSON(t, "-json", "-lfsize", "1", "-shortrtt", "2ms", "-longrtt", "20ms", "-lfrate", "200mbit", "-transports", "rudp,tcp,udp", "longfat")
	want := []string{"RTT 2ms", "RTT 20ms", "RTT 20ms / 2ms"}
	if ph := rep.phases("longfat"); strings.Join(ph, ",") != strings.Join(want, ",") {
		t.Fatalf("longfat phases %q, want %q", ph, want)
	}
	for _, tr := range []string{"rudp", "tcp"} {
		for _, ph := range want[:2] {
			r := rep.find("longfat", ph, tr)
			if r == nil {
				t.Fatalf("no result for longfat [%s] over %s: %+v", ph, tr, rep.Results)
			}
			if v, ok := r.get("goodput"); !ok || !(v > 0) {
				t.Errorf("longfat [%s] over %s: goodput = %v (present %v)", ph, tr, v, ok)
			}
			if tr != "rudp" {
				continue
			}
			if _, ok := r.get("proxy queue drops"); !ok {
				t.Errorf("longfat [%s] over rudp: no proxy queue drops", ph)
			}
			if v, ok := r.get("proxy too-big drops"); !ok || v != 0 {
				t.Errorf("longfat [%s] over rudp: %v datagrams too big for the path (present %v), want 0", ph, v, ok)
			}
		}
		if v, ok := rep.value("longfat", want[2], tr, "goodput ratio"); !ok || !(v > 0) {
			t.Errorf("longfat %s ratio = %v (present %v)", tr, v, ok)
		}
	}
	if rep.find("longfat", want[0], "udp") != nil {
		t.Errorf("raw UDP ran in longfat; a blast is no baseline for a bottleneck")
	}
	var found bool
	for _, tg := range rep.Targets {
		if strings.HasPrefix(tg.Goal, "longfat:") {
			found = true
			if q, _ := rep.value("longfat", want[2], "rudp", "goodput ratio"); tg.Value != q || tg.Pass != (q >= 0.9) {
				t.Errorf("target %+v, want value %v", tg, q)
			}
		}
	}
	if !found {
		t.Errorf("no longfat target in %+v", rep.Targets)
	}
}

// TestLongFatBadFlags: a bad longfat flag is refused with an error naming it.
func TestLongFatBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"-lfsize", "0", "longfat"}, "-lfsize"},
		{[]string{"-shortrtt", "0s", "longfat"}, "-shortrtt"},
		{[]string{"-longrtt", "2ms", "longfat"}, "-longrtt"},
		{[]string{"-lfrate", "fast", "longfat"}, "-lfrate"},
		{[]string{"-lfrate", "0", "longfat"}, "-lfrate"},
		{[]string{"-mtu", "1000", "longfat"}, "-mtu"},
		{[]string{"-netns", "longfat"}, "longfat"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("parseFlags(%q) = %v, want an error naming %s", tc.args, err, tc.flag)
		}
	}
	if _, err := parseFlags([]string{"-mtu", "9000", "longfat"}, io.Discard); err != nil {
		t.Errorf("-mtu with longfat (its path MTU): %v", err)
	}
}
