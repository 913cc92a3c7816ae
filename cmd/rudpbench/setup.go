package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/impair"
	"github.com/rudp-go/rudp/internal/traceplot"
	"github.com/rudp-go/rudp/qlog"
)

// loopback is where every server listens.
const loopback = "127.0.0.1:0"

// socketBuffer is asked for on the raw UDP sockets (the kernel caps it at
// net.core.rmem_max / wmem_max), so the baseline is not starved by defaults.
const socketBuffer = 4 << 20

// bench runs scenarios and collects their results.
type bench struct {
	opts     *options
	ctx      context.Context
	progress io.Writer
	rep      *report
	// traceRun is the directory the current run's connections are traced
	// to ("": not traced; see -trace).
	traceRun string
	// tracing counts the traces of the current run not yet closed (a
	// trace is written through a buffer and closed when its connection
	// ends, which may be after the run returned: the server's side
	// lingers to answer the client's CLOSE).
	tracing atomic.Int64
	// tls is -tls's configs, made at the first protected connection.
	tls *benchTLS
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, format+"\n", args...)
}

func (b *bench) debugf(format string, args ...any) {
	if b.opts.verbose {
		b.logf(format, args...)
	}
}

func (b *bench) runAll() *report {
	b.rep = newReport(b.opts)
	o := b.opts
	if o.impaired() && o.Env == "" {
		if o.has("tcp") && (o.Loss > 0 || o.Dup > 0 || o.Reorder > 0) {
			b.rep.note("TCP goes through a userspace relay that applies delay, jitter and rate only: loss, duplication and reordering cannot be applied to a TCP byte stream in userspace; use -netns to hit TCP with the same kernel-level loss as UDP")
		}
		if o.has("tcp") && o.Rate > 0 {
			b.rep.note("the TCP relay's bottleneck never drops: when its queue (-queue) is full it stops reading and TCP's flow control pushes back, so TCP sees no loss at the bottleneck while rudp and raw UDP see drop-tail loss; use -netns (tc tbf) for the same bottleneck for all")
		}
		b.rep.note("rudp and raw UDP go through the impair UDP proxy (impairment applied to each direction); the proxy's CPU is counted in the CPU figures")
	}
	switch {
	case o.PSK:
		b.rep.note("-psk: the rudp connections are protected with a pre-shared key (Noise NNpsk0 handshake, AES-128-GCM packets)")
	case o.TLS:
		b.rep.note("-tls: the rudp connections are protected with TLS 1.3 (a self-signed ECDSA P-256 certificate, crypto/tls's default key exchange and cipher suite: X25519MLKEM768, AES-128-GCM where the CPU has AES instructions)")
	}
	b.rep.note("both ends of every connection run in this process: CPU (getrusage, whole process) and memory (HeapInuse+StackInuse delta) are for both ends together")
	for _, sc := range o.Scenarios {
		if b.ctx.Err() != nil {
			break
		}
		start := time.Now()
		switch sc {
		case "bulk":
			b.runBulk()
		case "rr":
			b.runRR()
		case "msg":
			b.runMsg()
		case "conns":
			b.runConns()
		case "shard":
			b.runShard()
		case "dialrr":
			b.runDialRR()
		case "longfat":
			b.runLongFat()
		}
		b.logf("%s done in %.1fs", sc, time.Since(start).Seconds())
	}
	return b.rep
}

// each runs fn for every selected transport, recording a result or the
// error that stopped it.
func (b *bench) each(scenario, phase string, fn func(transport string, r *result) error) {
	for _, t := range b.opts.Transports {
		if b.ctx.Err() != nil {
			return
		}
		if t == "udpgso" && scenario != "bulk" {
			continue // a bulk baseline only
		}
		b.one(scenario, phase, t, fn)
	}
}

// one runs fn for transport t, recording a result or the error that
// stopped it.
func (b *bench) one(scenario, phase, t string, fn func(transport string, r *result) error) {
	r := &result{Scenario: scenario, Phase: phase, Transport: t}
	label := scenario
	if phase != "" {
		label += " [" + phase + "]"
	}
	b.logf("%s %s ...", label, t)
	b.traceRun = ""
	if b.opts.traceDir != "" && t == "rudp" {
		b.traceRun = filepath.Join(b.opts.traceDir, strings.NewReplacer(" ", "-", "[", "", "]", "", "/", "-", "%", "pct").Replace(label)+"-"+t)
	}
	err := fn(t, r)
	if b.traceRun != "" {
		b.plotTraces(b.traceRun)
	}
	if err != nil {
		r.Error = err.Error()
		r.Metrics = nil
		b.logf("%s %s: %v", label, t, err)
	}
	b.rep.Results = append(b.rep.Results, r)
}

// impairment is the userspace impairment of one run: the proxy configs for
// the UDP transports and the relay parameters for TCP.
type impairment struct {
	up, down impair.Config
	active   bool
	// kernelRTT is the round trip a kernel impairment adds (-netns child).
	kernelRTT time.Duration
}

func (b *bench) impairment() impairment {
	o := b.opts
	if o.Env != "" {
		// The kernel impairs (netns); -delay and -jitter are passed down
		// only so that timeouts allow for them.
		return impairment{kernelRTT: 2 * (o.Delay + o.Jitter + time.Millisecond)}
	}
	if !o.impaired() {
		return impairment{}
	}
	return b.impairmentWith(o.Loss)
}

func (b *bench) impairmentWith(loss float64) impairment {
	o := b.opts
	c := impair.Config{
		Seed:       o.Seed,
		Loss:       loss,
		Duplicate:  o.Dup,
		Reorder:    o.Reorder,
		Delay:      o.Delay,
		Jitter:     o.Jitter,
		Rate:       o.Rate,
		QueueBytes: o.Queue,
	}
	down := c
	down.Seed = o.Seed + 1
	return impairment{up: c, down: down, active: true}
}

// rtt bounds the round trip the impairment adds (delay, jitter, a reordered
// datagram's hold-back, a full bottleneck queue), for timeouts and drains.
func (im impairment) rtt() time.Duration {
	if !im.active {
		return im.kernelRTT
	}
	c := im.up
	oneWay := c.Delay + c.Jitter + max(2*c.Jitter, c.ReorderDelay, time.Millisecond)
	if c.Rate > 0 {
		queue := c.QueueBytes
		if queue == 0 {
			queue = impair.DefaultQueueBytes
		}
		oneWay += time.Duration(float64(queue) / float64(c.Rate) * float64(time.Second))
	}
	return 2 * oneWay
}

// pair is one connected client and server end of a transport.
type pair struct {
	client, server net.Conn // stream transports: rudp, tcp
	udpClient      *net.UDPConn
	udpServer      *net.UDPConn
	proxy          *impair.Proxy // the impair proxy in between, if any
	closers        closers
}

func (p *pair) Close() { p.closers.Close() }

// closers are what a set-up opened: listeners, proxies, connections.
type closers []io.Closer

// Close closes them, the last opened first.
func (cs closers) Close() {
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i].Close()
	}
}

// proxyTo puts the impairment proxy in front of the UDP server at addr if
// im is active, adding it to cs; it returns the proxy (nil: none) and the
// address clients send to.
func (im impairment) proxyTo(cs *closers, addr string, opts ...impair.ProxyOption) (*impair.Proxy, string, error) {
	if !im.active {
		return nil, addr, nil
	}
	px, err := impair.NewProxy(loopback, addr, im.up, im.down, opts...)
	if err != nil {
		return nil, "", err
	}
	*cs = append(*cs, px)
	return px, px.Addr().String(), nil
}

// relayTo puts the TCP relay in front of the server at addr if im delays or
// limits the rate (a byte stream cannot lose packets in userspace), adding
// it to cs; it returns the address clients dial.
func (im impairment) relayTo(cs *closers, addr string) (string, error) {
	if !im.active || im.up.Delay == 0 && im.up.Jitter == 0 && im.up.Rate == 0 {
		return addr, nil
	}
	rl, err := newRelay(addr, im.up, im.down)
	if err != nil {
		return "", err
	}
	*cs = append(*cs, rl)
	return rl.Addr().String(), nil
}

// echoUDP sends every datagram s receives back to where it came from, until
// s is closed.
func echoUDP(s *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := s.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		_, _ = s.WriteToUDPAddrPort(buf[:n], from)
	}
}

// benchPSK is the key of -psk: both ends are this process.
var benchPSK = [32]byte{'r', 'u', 'd', 'p', 'b', 'e', 'n', 'c', 'h'}

// protect returns the listener's and the dialer's copies of cfg (nil: the
// defaults) with -psk's key or -tls's configs, or cfg itself for both
// when neither is set.
func (b *bench) protect(cfg *rudp.Config) (server, client *rudp.Config, err error) {
	if !b.opts.PSK && !b.opts.TLS {
		return cfg, cfg, nil
	}
	var s, c rudp.Config
	if cfg != nil {
		s, c = *cfg, *cfg
	}
	if b.opts.PSK {
		s.PSK, c.PSK = benchPSK[:], benchPSK[:]
		return &s, &c, nil
	}
	if b.tls == nil {
		if b.tls, err = newBenchTLS(); err != nil {
			return nil, nil, fmt.Errorf("-tls: %w", err)
		}
	}
	s.TLS, c.TLS = b.tls.server, b.tls.client
	return &s, &c, nil
}

// dialRUDP listens on loopback, puts the proxy in front if im is active, dials
// and accepts one connection.
func (b *bench) dialRUDP(cfg *rudp.Config, im impairment) (*pair, error) {
	if b.opts.NoGSO || b.opts.Datagram != 0 || b.traceRun != "" {
		c := rudp.Config{}
		if cfg != nil {
			c = *cfg
		}
		c.DisableGSO = b.opts.NoGSO
		if b.opts.Datagram != 0 {
			c.MaxDatagramSize = b.opts.Datagram
		}
		if b.traceRun != "" {
			if err := os.MkdirAll(b.traceRun, 0o755); err != nil {
				return nil, fmt.Errorf("-trace: %w", err)
			}
			c.Tracer = b.countTraces(qlog.DirTracer(b.traceRun, func(err error) { b.logf("-trace: %v", err) }))
		}
		cfg = &c
	}
	scfg, ccfg, err := b.protect(cfg)
	if err != nil {
		return nil, err
	}
	p := &pair{}
	ln, err := rudp.Listen("udp", loopback, scfg)
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, ln)
	px, addr, err := im.proxyTo(&p.closers, ln.Addr().String())
	if err != nil {
		p.Close()
		return nil, err
	}
	p.proxy = px
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	c, err := rudp.DialContext(ctx, "udp", addr, ccfg)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("dial: %w", err)
	}
	p.client = c
	p.closers = append(p.closers, c)
	select {
	case a := <-ch:
		if a.err != nil {
			p.Close()
			return nil, fmt.Errorf("accept: %w", a.err)
		}
		p.server = a.c
		p.closers = append(p.closers, a.c)
	case <-ctx.Done():
		p.Close()
		return nil, errors.New("accept: no connection within 15s of a successful dial")
	}
	if b.opts.PSK {
		// What -psk measures: both ends' packets sealed with AES-128-GCM.
		for _, c := range []net.Conn{p.client, p.server} {
			if cs := c.(*rudp.Conn).ConnectionState(); !cs.HandshakeComplete || cs.CipherSuite != tls.TLS_AES_128_GCM_SHA256 {
				p.Close()
				return nil, fmt.Errorf("-psk: a connection is not protected with TLS_AES_128_GCM_SHA256 (handshake complete %v, suite %s)", cs.HandshakeComplete, tls.CipherSuiteName(cs.CipherSuite))
			}
		}
	}
	return p, nil
}

// dialTCP listens on loopback, puts the relay in front if im is active, dials
// and accepts one connection.
func (b *bench) dialTCP(im impairment) (*pair, error) {
	p := &pair{}
	ln, err := net.Listen("tcp", loopback)
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, ln)
	addr, err := im.relayTo(&p.closers, ln.Addr().String())
	if err != nil {
		p.Close()
		return nil, err
	}
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.client = c
	p.closers = append(p.closers, c)
	s, err := ln.Accept()
	if err != nil {
		p.Close()
		return nil, err
	}
	p.server = s
	p.closers = append(p.closers, s)
	return p, nil
}

// dialUDP opens a server socket and a client socket connected to it (through
// the proxy if im is active).
func (b *bench) dialUDP(im impairment) (*pair, error) {
	p := &pair{}
	s, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = s.SetReadBuffer(socketBuffer)
	_ = s.SetWriteBuffer(socketBuffer)
	p.udpServer = s
	p.closers = append(p.closers, s)
	px, addr, err := im.proxyTo(&p.closers, s.LocalAddr().String())
	if err != nil {
		p.Close()
		return nil, err
	}
	p.proxy = px
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		p.Close()
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		p.Close()
		return nil, err
	}
	_ = c.SetReadBuffer(socketBuffer)
	_ = c.SetWriteBuffer(socketBuffer)
	p.udpClient = c
	p.closers = append(p.closers, c)
	return p, nil
}

// dial sets up one connection of transport t.
func (b *bench) dial(t string, cfg *rudp.Config, im impairment) (*pair, error) {
	switch t {
	case "rudp":
		return b.dialRUDP(cfg, im)
	case "tcp":
		return b.dialTCP(im)
	default:
		return b.dialUDP(im)
	}
}

// countTraces wraps a Config.Tracer constructor so that b.tracing counts
// the traces it opened until their connections end (the trace's own
// StateChanged, which closes its file, runs first).
func (b *bench) countTraces(newTracer func(core.TraceInfo) *core.Tracer) func(core.TraceInfo) *core.Tracer {
	return func(info core.TraceInfo) *core.Tracer {
		tr := newTracer(info)
		if tr == nil {
			return nil
		}
		b.tracing.Add(1)
		inner := tr.StateChanged
		tr.StateChanged = func(e core.StateEvent) {
			if inner != nil {
				inner(e)
			}
			if e.New == core.StateClosed {
				b.tracing.Add(-1)
			}
		}
		return tr
	}
}

// traceWait bounds how long plotTraces waits for the run's connections to
// end and their traces to be closed.
const traceWait = 10 * time.Second

// plotTraces draws every qlog trace in dir as an SVG beside it, once the
// run's traced connections have ended (at most traceWait): a trace is
// written through a buffer, so one whose connection had not ended could be
// empty yet (a CI run of TestTraceTiny found a client's trace without its
// plot so). A connection still ending after traceWait leaves a trace
// without its last events, drawn as far as it goes.
func (b *bench) plotTraces(dir string) {
	for deadline := time.Now().Add(traceWait); b.tracing.Load() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.logf("-trace: %d connections still open after %v; their traces are drawn as far as they go", b.tracing.Load(), traceWait)
			break
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"+qlog.FileExt))
	for _, f := range files {
		out := strings.TrimSuffix(f, qlog.FileExt) + ".svg"
		s, err := traceplot.PlotFile(f, out, 100, traceplot.Options{})
		if err != nil {
			b.logf("-trace: %v", err)
			continue
		}
		b.logf("trace %s: %d packets sent, %d lost, %d retransmitted -> %s", filepath.Base(f), s.PacketsSent, s.PacketsLost, s.Retransmitted, out)
	}
}
