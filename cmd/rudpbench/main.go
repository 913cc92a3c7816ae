// Command rudpbench measures rudp against TCP and raw UDP on loopback, in the
// same run, and prints one table per scenario with the ratios.
//
//	rudpbench [flags] scenario...
//	rudpbench proxy -to host:port [-listen host:port] [-loss p] [-delay d] ...
//	rudpbench compare before.json after.json
//
// Scenarios:
//
//	bulk   one connection moves -size MiB; goodput at the receiver, CPU seconds per GiB;
//	       with -transports ...,udpgso also raw UDP's ceiling: the raw UDP blast sent
//	       as 64 KiB UDP_SEGMENT buffers of 1472-byte datagrams and read with UDP_GRO
//	       (Linux; bulk only)
//	rr     ping-pong of 64-byte messages for -duration; p50/p99/max round trip
//	       (with -loss, first without it through the same proxy: the p99's baseline);
//	       with -redundancy once more, rudp sending each message twice ([redundancy],
//	       or [loss N%, redundancy]: the p99 and the extra bytes it costs)
//	msg    a paced stream of small Order messages (framed over TCP, datagrams over UDP),
//	       once clean and once impaired (5% loss unless impairment flags say otherwise):
//	       one-way delivery latency percentiles and the fraction delivered
//	conns  -conns K concurrent connections: handshake rate, dial failures, memory per
//	       connection idle and after a 1 KiB echo, CPU used by K idle connections over -idle
//	       (the rudp server's AcceptBacklog, here and in dialrr, is TCP's listen backlog: 4096)
//	dialrr -dialconns K clients dial at once and make -rounds round trips of 64 bytes
//	       each: time until the last is done, memory per active connection (heap, RSS)
//	all    all of the above
//	longfat (not in all) -lfsize MiB over one connection through a bottleneck of
//	       -lfrate (100 Mbit/s), -queue and a path MTU of -mtu (1500), at -shortrtt (2 ms)
//	       and at -longrtt (100 ms) round trip, TCP through its relay as the baseline:
//	       goodput at each, the proxy's drops, and the long's goodput as a share of the
//	       short's (issue 12's target: >= 90%)
//	shard  (not in all) -streams connections move -size MiB at once to a server process of
//	       its own whose Listener has 1 socket, then -sockets (Config.Sockets, SO_REUSEPORT
//	       steered by connection ID), TCP's streams as the baseline: goodput, and the server's
//	       CPU per GiB measured in its process
//
// Impairment flags (-loss, -dup, -reorder, -delay, -jitter, -rate, -queue) put
// rudp and raw UDP behind the impair UDP proxy (every flag applies to
// each direction) and TCP behind a userspace TCP relay that applies delay,
// jitter and the bottleneck rate only: loss, duplication and reordering cannot
// be applied to a TCP byte stream in userspace. -netns (as root) re-runs the
// scenarios inside a fresh network namespace where the kernel drops packets
// (iptables -m statistic) and tc shapes them, so TCP is hit exactly like UDP;
// -mtu sets that namespace's loopback MTU (e.g. 1500, an Ethernet path).
//
// -repeat N runs the scenarios N times: the tables print each figure's
// median with the runs' (min-max), the JSON the median as "value" and every
// run's value in "runs". -json prints every figure the tables print.
//
// bulk's CPU/GiB is the process's CPU (getrusage); softirq/GiB is the
// machine's time in software interrupts over the run (Linux, /proc/stat:
// loopback's receive path runs there; machine-wide and sampled at the clock
// tick, so use -size 256 or more), and CPU+softirq/GiB their sum.
//
// -psk and -tls protect the rudp connections of every scenario (Config.PSK:
// Noise NNpsk0; Config.TLS: TLS 1.3 with a self-signed ECDSA P-256
// certificate made at start, which the client trusts); conns then gives the
// handshake rate of that mode ("rudpbench -tls -conns 1000 -transports rudp
// conns"), to compare with a plaintext run.
//
// "rudpbench proxy" runs the impair package's UDP proxy on its own, between
// any UDP client and server, until interrupted: clients send to -listen, it
// relays to -to, impairing each direction by -loss, -dup, -reorder, -corrupt,
// -delay, -jitter, -rate and -queue, and prints its counts at exit.
//
// "rudpbench compare before.json after.json" prints two -json reports of the
// same scenarios (two builds, say) side by side, a Markdown table a
// scenario and phase: every metric of every transport before and after,
// rudp's after/before, and rudp's ratio to each baseline in each run; then
// each run's targets.
//
// Everything runs in one process: both ends of every connection, the proxy and
// the relay. CPU figures (getrusage) and memory figures (runtime.MemStats) are
// therefore for both ends together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "rudpbench:", err)
		}
		os.Exit(2)
	}
}

// scenarios in the order "all" runs them.
var allScenarios = []string{"bulk", "rr", "msg", "conns", "dialrr"}

// extraScenarios are the scenarios "all" does not run.
var extraScenarios = []string{"shard", "longfat"}

var allTransports = []string{"rudp", "tcp", "udp"}

// knownTransports are allTransports and those run only when asked for:
// udpgso, raw UDP with GSO and GRO (Linux, bulk only), the kernel's ceiling
// for UDP.
var knownTransports = append(allTransports[:len(allTransports):len(allTransports)], "udpgso")

// options are the parsed flags.
type options struct {
	NoGSO      bool          `json:"no_gso"`
	PSK        bool          `json:"psk,omitempty"`
	TLS        bool          `json:"tls,omitempty"`
	Redundancy bool          `json:"redundancy,omitempty"`
	Datagram   int           `json:"max_datagram_size,omitempty"`
	SharedDial bool          `json:"shared_dial"`
	SizeMiB    int           `json:"size_mib"`
	Duration   time.Duration `json:"duration_ns"`
	Idle       time.Duration `json:"idle_ns"`
	Conns      int           `json:"conns"`
	Sockets    int           `json:"sockets,omitempty"`
	Streams    int           `json:"streams,omitempty"`
	DialConns  int           `json:"dial_conns"`
	Rounds     int           `json:"rounds"`
	MsgRate    int           `json:"msg_rate"`
	Loss       float64       `json:"loss"`
	Dup        float64       `json:"dup"`
	Reorder    float64       `json:"reorder"`
	Delay      time.Duration `json:"delay_ns"`
	Jitter     time.Duration `json:"jitter_ns"`
	Rate       int64         `json:"rate_bytes_per_s"`
	Queue      int           `json:"queue_bytes"`
	Seed       uint64        `json:"seed"`
	// LoMTU is the MTU of the -netns namespace's loopback (0: lo's own,
	// 64 KiB), or longfat's path MTU (0: 1500).
	LoMTU int `json:"lo_mtu,omitempty"`
	// longfat's path: the round trips compared, the bottleneck's rate
	// and the MiB moved.
	LongRTT   time.Duration `json:"longfat_long_rtt_ns,omitempty"`
	ShortRTT  time.Duration `json:"longfat_short_rtt_ns,omitempty"`
	LFRate    int64         `json:"longfat_rate_bytes_per_s,omitempty"`
	LFSizeMiB int           `json:"longfat_size_mib,omitempty"`
	// Repeat is how many times the scenarios ran (-repeat): every figure
	// is then the median, with each run's value in the metric's runs.
	Repeat     int      `json:"repeat"`
	Transports []string `json:"transports"`
	Scenarios  []string `json:"scenarios"`
	// Env describes an impairment applied outside the process (set by the
	// -netns parent for its child); scenarios then apply none of their own.
	Env string `json:"env,omitempty"`

	netns      bool
	json       bool
	verbose    bool
	cpuProfile string
	memProfile string
	rateText   string
	lfRateText string
	// traceDir: -trace, where each traced run's qlog files and plots go.
	traceDir string
}

// impaired reports whether the flags ask for any userspace impairment.
func (o *options) impaired() bool {
	return o.Loss > 0 || o.Dup > 0 || o.Reorder > 0 || o.Delay > 0 || o.Jitter > 0 || o.Rate > 0
}

func (o *options) has(transport string) bool {
	for _, t := range o.Transports {
		if t == transport {
			return true
		}
	}
	return false
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("rudpbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rudpbench [flags] scenario...\n       rudpbench proxy -to host:port [flags] (see rudpbench proxy -h)\n       rudpbench compare before.json after.json\n\nscenarios: bulk, rr, msg, conns, dialrr, all, shard, longfat\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&o.SizeMiB, "size", 64, "bulk: MiB moved over one connection")
	fs.BoolVar(&o.NoGSO, "nogso", false, "rudp: Config.DisableGSO (UDP segmentation and receive coalescing off)")
	fs.BoolVar(&o.PSK, "psk", false, "rudp: protect the connections with a pre-shared key (Config.PSK, a fixed test key: Noise NNpsk0, AES-128-GCM packets)")
	fs.BoolVar(&o.TLS, "tls", false, "rudp: protect the connections with TLS 1.3 (Config.TLS: a self-signed ECDSA P-256 certificate made at start, which the client trusts; AES-128-GCM packets)")
	fs.BoolVar(&o.Redundancy, "redundancy", false, "rr: once more with rudp sending each ping and pong twice (Config.Redundancy, both ends) through the same impairment: phase [redundancy], or [loss N%, redundancy] held to the [no loss] p99 as [loss N%] is")
	fs.IntVar(&o.Datagram, "datagram", 0, "rudp: Config.MaxDatagramSize, the ceiling path MTU discovery grows datagrams to (0 = the default)")
	fs.BoolVar(&o.SharedDial, "shared", false, "conns: rudp dials all K connections through one client Listener (Listener.DialContext: one socket and reader for all) instead of a socket each")
	fs.DurationVar(&o.Duration, "duration", 2*time.Second, "rr and msg: how long each transport runs")
	fs.DurationVar(&o.Idle, "idle", 10*time.Second, "conns: how long the CPU of K idle connections is measured")
	fs.IntVar(&o.Conns, "conns", 1000, "conns: number of concurrent connections K (all dialed at once, at most 1000 in flight)")
	fs.IntVar(&o.DialConns, "dialconns", 200, "dialrr: number of clients K that dial at once")
	fs.IntVar(&o.Rounds, "rounds", 20, "dialrr: round trips each client makes after its dial")
	fs.IntVar(&o.MsgRate, "msgrate", 2000, "msg: messages per second")
	fs.IntVar(&o.Sockets, "sockets", 2, "shard: the server Listener's Config.Sockets of the second phase (the first has 1)")
	fs.IntVar(&o.Streams, "streams", 16, "shard: connections moving -size MiB between them at once")
	fs.Float64Var(&o.Loss, "loss", 0, "probability that a datagram is dropped, each direction")
	fs.Float64Var(&o.Dup, "dup", 0, "probability that a datagram is duplicated, each direction")
	fs.Float64Var(&o.Reorder, "reorder", 0, "probability that a datagram is held back and overtaken, each direction")
	fs.DurationVar(&o.Delay, "delay", 0, "one-way delay, each direction (RTT = 2x)")
	fs.DurationVar(&o.Jitter, "jitter", 0, "extra uniformly random one-way delay in [0, jitter]")
	fs.StringVar(&o.rateText, "rate", "", "bottleneck rate, each direction, e.g. 100mbit, 1gbit, 12.5MB (bytes/s)")
	fs.IntVar(&o.Queue, "queue", 0, "bottleneck queue in bytes (0 = impair default, 64 KiB)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the impairment's random decisions")
	fs.BoolVar(&o.netns, "netns", false, "as root: re-run inside a fresh network namespace with kernel loss (iptables) and shaping (tc)")
	fs.IntVar(&o.LoMTU, "mtu", 0, "with -netns: the MTU of the namespace's loopback, e.g. 1500 for an Ethernet path (0 = lo's default, 64 KiB); longfat: its path's MTU (0 = 1500)")
	fs.DurationVar(&o.LongRTT, "longrtt", defaultLongRTT, "longfat: the long round trip")
	fs.DurationVar(&o.ShortRTT, "shortrtt", defaultShortRTT, "longfat: the short round trip, the long one's baseline")
	fs.StringVar(&o.lfRateText, "lfrate", defaultLFRate, "longfat: the bottleneck's rate, each direction (its queue: -queue)")
	fs.IntVar(&o.LFSizeMiB, "lfsize", defaultLFSizeMiB, "longfat: MiB moved at each round trip")
	fs.IntVar(&o.Repeat, "repeat", 1, "run the scenarios this many times; every figure is then the median, printed with the runs' min-max (the JSON has each run's value)")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of tables")
	fs.BoolVar(&o.verbose, "v", false, "verbose progress on stderr")
	transports := fs.String("transports", strings.Join(allTransports, ","), "transports to run, comma separated")
	fs.StringVar(&o.traceDir, "trace", "", "write a qlog trace of every rudp connection of bulk, rr and msg (client and server) and its SVG plot to this directory, one subdirectory per scenario, phase and transport (plot one again with rudptrace)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile at the end to this file (and, with conns, a heap profile of the idle connections to FILE.conns-TRANSPORT)")
	fs.StringVar(&o.Env, "env", "", "internal: impairment applied outside the process (set by -netns)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.PSK && o.TLS {
		return nil, errors.New("-psk and -tls: choose one")
	}
	if o.rateText != "" {
		r, err := parseRate(o.rateText)
		if err != nil {
			return nil, fmt.Errorf("-rate: %w", err)
		}
		o.Rate = r
	}
	if r, err := parseRate(o.lfRateText); err != nil {
		return nil, fmt.Errorf("-lfrate: %w", err)
	} else if r <= 0 {
		return nil, fmt.Errorf("-lfrate = %q, want a rate above 0", o.lfRateText)
	} else {
		o.LFRate = r
	}
	for _, t := range strings.Split(*transports, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !contains(knownTransports, t) {
			return nil, fmt.Errorf("-transports: unknown transport %q (want rudp, tcp, udp, udpgso)", t)
		}
		if !contains(o.Transports, t) {
			o.Transports = append(o.Transports, t)
		}
	}
	if len(o.Transports) == 0 {
		return nil, errors.New("-transports: none given")
	}
	for _, s := range fs.Args() {
		switch {
		case s == "all":
			for _, a := range allScenarios {
				if !contains(o.Scenarios, a) {
					o.Scenarios = append(o.Scenarios, a)
				}
			}
		case contains(allScenarios, s) || contains(extraScenarios, s):
			if !contains(o.Scenarios, s) {
				o.Scenarios = append(o.Scenarios, s)
			}
		default:
			fs.Usage()
			return nil, fmt.Errorf("unknown scenario %q (want bulk, rr, msg, conns, dialrr, all, shard or longfat)", s)
		}
	}
	if len(o.Scenarios) == 0 {
		fs.Usage()
		return nil, errors.New("no scenario given")
	}
	switch {
	case o.SizeMiB <= 0:
		return nil, fmt.Errorf("-size = %d, want > 0", o.SizeMiB)
	case o.Duration <= 0:
		return nil, fmt.Errorf("-duration = %v, want > 0", o.Duration)
	case o.Idle <= 0:
		return nil, fmt.Errorf("-idle = %v, want > 0", o.Idle)
	case o.Conns <= 0:
		return nil, fmt.Errorf("-conns = %d, want > 0", o.Conns)
	case o.DialConns <= 0:
		return nil, fmt.Errorf("-dialconns = %d, want > 0", o.DialConns)
	case o.Rounds < 0:
		return nil, fmt.Errorf("-rounds = %d, want >= 0", o.Rounds)
	case o.MsgRate <= 0:
		return nil, fmt.Errorf("-msgrate = %d, want > 0", o.MsgRate)
	case o.Sockets < 1:
		return nil, fmt.Errorf("-sockets = %d, want >= 1", o.Sockets)
	case o.Streams < 1:
		return nil, fmt.Errorf("-streams = %d, want >= 1", o.Streams)
	case o.Queue < 0:
		return nil, fmt.Errorf("-queue = %d, want >= 0", o.Queue)
	case o.Repeat <= 0:
		return nil, fmt.Errorf("-repeat = %d, want > 0", o.Repeat)
	case o.Repeat > 1 && o.traceDir != "":
		return nil, errors.New("-trace with -repeat > 1: the runs would overwrite each other's traces; trace one run")
	case o.LoMTU != 0 && !o.netns && o.Env == "" && !contains(o.Scenarios, "longfat"):
		return nil, fmt.Errorf("-mtu = %d sets the loopback MTU of the -netns namespace or longfat's path MTU: it needs -netns or longfat", o.LoMTU)
	case o.netns && contains(o.Scenarios, "longfat"):
		return nil, errors.New("longfat runs through the userspace proxy (its path has a round trip, which -netns cannot give: no tc netem here); run it without -netns")
	case o.LFSizeMiB <= 0:
		return nil, fmt.Errorf("-lfsize = %d, want > 0", o.LFSizeMiB)
	case o.ShortRTT <= 0:
		return nil, fmt.Errorf("-shortrtt = %v, want > 0", o.ShortRTT)
	case o.LongRTT <= o.ShortRTT:
		return nil, fmt.Errorf("-longrtt = %v, want above -shortrtt (%v)", o.LongRTT, o.ShortRTT)
	case o.LoMTU != 0 && (o.LoMTU < 1280 || o.LoMTU > 65536):
		return nil, fmt.Errorf("-mtu = %d, want 1280 to 65536 (an IPv6-capable link: rudp needs 1200-byte datagrams)", o.LoMTU)
	}
	for _, p := range []struct {
		name string
		v    float64
	}{{"-loss", o.Loss}, {"-dup", o.Dup}, {"-reorder", o.Reorder}} {
		if p.v < 0 || p.v > 1 {
			return nil, fmt.Errorf("%s = %v, want a probability in [0, 1]", p.name, p.v)
		}
	}
	if o.Delay < 0 || o.Jitter < 0 {
		return nil, errors.New("-delay and -jitter must be >= 0")
	}
	return o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// run is main without the process exit, so the test can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "proxy" {
		return runProxy(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "compare" {
		return runCompare(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == shardServerCmd {
		return runShardServer(args[1:], stdout, stderr)
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.netns {
		return runNetns(ctx, o, args, stdout, stderr)
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep := measure(ctx, o, stderr)
	if o.memProfile != "" {
		if err := writeHeapProfile(o.memProfile); err != nil {
			return err
		}
	}
	if o.json {
		return rep.writeJSON(stdout)
	}
	rep.writeTables(stdout)
	return ctx.Err()
}

// measure runs the scenarios -repeat times and returns the report of the
// runs' medians, with the load at the end and the targets evaluated.
func measure(ctx context.Context, o *options, progress io.Writer) *report {
	runs := make([]*report, 0, o.Repeat)
	for i := range o.Repeat {
		if i > 0 {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(progress, "run %d of %d\n", i+1, o.Repeat)
		}
		b := &bench{opts: o, ctx: ctx, progress: progress}
		runs = append(runs, b.runAll())
	}
	rep := mergeRuns(runs)
	rep.finish()
	rep.evaluateTargets()
	return rep
}

func writeHeapProfile(path string) error { return writeNamedProfile("allocs", path) }

func writeNamedProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup(name).WriteTo(f, 0)
}
