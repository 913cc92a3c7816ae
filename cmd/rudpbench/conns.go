package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/impair"
)

// maxDialsInFlight bounds concurrent dials: K up to this many are all dialed
// at once ("1,000 simultaneous dials"), more are dialed this many at a time.
const maxDialsInFlight = 1000

// activeBytes is what every connection sends in the "active" measurement.
const activeBytes = 1 << 10

func (b *bench) runConns() {
	im := b.impairment()
	if im.active {
		b.rep.note("conns: the proxy keeps a socket, a goroutine and a 64 KiB buffer per client; its memory is inside the rudp and udp memory figures")
	}
	b.rep.note("conns: memory per connection is (HeapInuse+StackInuse after - before) / K with both ends in this process; kernel socket memory is not counted")
	b.rep.note("conns: the rudp server's AcceptBacklog is %d, TCP's listen backlog here (somaxconn)", tcpListenBacklog)
	base := runtime.NumGoroutine()
	b.each("conns", "", func(t string, r *result) error {
		// What the previous transport left behind must be gone, or its
		// memory and CPU would be charged to this one.
		if left := settleGoroutines(base, 2*time.Second); left > 0 {
			b.rep.note("conns %s: %d goroutines of earlier runs were still alive 2s after their connections were closed; they are inside this run's figures", t, left)
			if b.opts.verbose {
				_ = pprof.Lookup("goroutine").WriteTo(b.progress, 1)
			}
		}
		return b.connsRun(t, im, r)
	})
	if left := settleGoroutines(base, 5*time.Second); left > 0 {
		b.rep.note("conns: %d goroutines still alive 5s after the last connections were closed (leak or slow close?)", left)
	}
}

// settleGoroutines waits until at most base goroutines run, for up to
// timeout, and returns how many more than base are left.
func settleGoroutines(base int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n := runtime.NumGoroutine()
		if n <= base || time.Now().After(deadline) {
			return max(0, n-base)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// connSet is K connections of one transport and what it takes to make them.
type connSet struct {
	dial    func(ctx context.Context) (net.Conn, error)
	closers closers // listener, proxy: closed last
	accept  func() (net.Conn, error)
	echo    bool // the server side echoes by itself (raw UDP)
}

// serverEnds are the accepted ends of a run's connections.
type serverEnds struct {
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup // the accept loop and the serve goroutines
}

// acceptAll accepts until accept fails, keeping each end and, unless serve
// is nil, serving it on a goroutine of its own.
func (s *serverEnds) acceptAll(accept func() (net.Conn, error), serve func(net.Conn)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			if serve != nil {
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					serve(c)
				}()
			}
		}
	}()
}

// list returns the ends accepted so far.
func (s *serverEnds) list() []net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Conn(nil), s.conns...)
}

// closeAll closes the ends accepted so far.
func (s *serverEnds) closeAll() {
	for _, c := range s.list() {
		c.Close()
	}
}

// close closes the listener and the proxy, the last first.
func (cs *connSet) close() { cs.closers.Close() }

func (b *bench) connsRun(t string, im impairment, r *result) error {
	k := b.opts.Conns
	fdsPerConn := uint64(1)
	switch {
	case t == "tcp":
		fdsPerConn = 2
	case im.active:
		fdsPerConn = 2 // the proxy's upstream socket
	}
	if need, have := fdsPerConn*uint64(k)+64, fdLimit(); have > 0 && need > have {
		return fmt.Errorf("needs about %d file descriptors for K=%d, the limit is %d (raise ulimit -n)", need, k, have)
	}

	mem0 := readMem(true)
	g0 := runtime.NumGoroutine()

	cs, err := b.connSetup(t, im, k)
	if err != nil {
		return err
	}
	defer cs.close()

	// The accept loop collects the server ends.
	var servers serverEnds
	if cs.accept != nil {
		servers.acceptAll(cs.accept, nil)
	}
	defer servers.closeAll()

	// Dial all K, at most maxDialsInFlight at a time.
	clients := make([]net.Conn, k)
	var failures atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, maxDialsInFlight)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	for i := range k {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := cs.dial(ctx)
			if err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	ok := k - int(failures.Load())
	if cs.accept != nil {
		// Wait until every dialed connection has been accepted.
		for {
			if len(servers.list()) >= ok || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	b.logf("  conns %s: %d connected in %.2fs (%d failed)", t, ok, elapsed.Seconds(), failures.Load())
	if ok == 0 {
		return fmt.Errorf("no connection succeeded: %v", firstErr.Load())
	}
	if f := failures.Load(); f > 0 {
		b.rep.note("conns %s: %d of %d dials failed; first error: %v", t, f, k, firstErr.Load())
	}
	r.add("handshakes/s", "", float64(ok)/elapsed.Seconds(), "higher")
	r.add("dial failures", "", float64(failures.Load()), "lower")
	r.add("connect all", "ms", float64(elapsed)/float64(time.Millisecond), "lower")

	mem1 := readMem(true)
	kib := func(after memSnapshot) float64 {
		return float64(int64(after.inuse)-int64(mem0.inuse)) / float64(ok) / 1024
	}
	r.add("mem/conn idle", "KiB", kib(mem1), "lower")
	r.add("goroutines/conn", "", float64(runtime.NumGoroutine()-g0)/float64(ok), "lower")
	if b.opts.memProfile != "" {
		// What the idle connections hold, for go tool pprof -sample_index=inuse_space.
		if err := writeNamedProfile("heap", b.opts.memProfile+".conns-"+t); err != nil {
			b.logf("  conns %s: heap profile: %v", t, err)
		}
	}

	// CPU of K idle connections. TCP and raw UDP run no timer of their own
	// in the process (TCP keepalives are the kernel's), so a short window
	// shows their baseline; rudp gets the whole -idle window.
	window := b.opts.Idle
	if t != "rudp" {
		window = min(window, 2*time.Second)
	}
	b.logf("  conns %s: measuring the CPU of %d idle connections for %v", t, ok, window)
	cpu0 := cpuTime()
	idleStart := time.Now()
	select {
	case <-time.After(window):
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
	idleCPU := cpuTime() - cpu0
	r.add("idle CPU", "% core", 100*idleCPU.Seconds()/time.Since(idleStart).Seconds(), "lower")
	r.add("idle window", "s", window.Seconds(), "")
	// Once a heartbeat went by (rudp frees its busy-time memory then).
	r.add("mem/conn after idle", "KiB", kib(readMem(true)), "lower")

	// Active: every client sends 1 KiB that its server end has not read yet;
	// memory is measured while it sits in the buffers, then it is echoed.
	live := make([]net.Conn, 0, ok)
	for _, c := range clients {
		if c != nil {
			live = append(live, c)
		}
	}
	payload := make([]byte, activeBytes)
	var writeFails atomic.Int64
	// One absolute deadline per step, shared by all connections: a lost
	// datagram must not cost its own timeout, one after the other.
	writeBy := time.Now().Add(10 * time.Second)
	parallel(len(live), 32, func(i int) {
		_ = live[i].SetWriteDeadline(writeBy)
		if _, err := live[i].Write(payload); err != nil {
			writeFails.Add(1)
		}
	})
	time.Sleep(50*time.Millisecond + im.rtt())
	mem2 := readMem(true)
	r.add("mem/conn active", "KiB", kib(mem2), "lower")

	var echoFails atomic.Int64
	if !cs.echo {
		srv := servers.list()
		serveBy := time.Now().Add(10 * time.Second)
		parallel(len(srv), 32, func(i int) {
			buf := make([]byte, activeBytes)
			_ = srv[i].SetDeadline(serveBy)
			if _, err := io.ReadFull(srv[i], buf); err != nil {
				echoFails.Add(1)
				return
			}
			if _, err := srv[i].Write(buf); err != nil {
				echoFails.Add(1)
			}
		})
	}
	readBy := time.Now().Add(2*time.Second + im.rtt())
	if t != "udp" {
		readBy = readBy.Add(8 * time.Second)
	}
	parallel(len(live), 32, func(i int) {
		buf := make([]byte, activeBytes+1)
		_ = live[i].SetReadDeadline(readBy)
		if t == "udp" {
			if n, err := live[i].Read(buf); err != nil || n != activeBytes {
				echoFails.Add(1)
			}
			return
		}
		if _, err := io.ReadFull(live[i], buf[:activeBytes]); err != nil {
			echoFails.Add(1)
		}
	})
	r.add("echo failures", "", float64(echoFails.Load()+writeFails.Load()), "lower")
	return nil
}

// parallel runs fn(0..n-1) on at most workers goroutines.
func parallel(n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// tcpListenBacklog is the rudp server's AcceptBacklog in conns and dialrr:
// TCP's listen backlog here (Go's net.Listen asks for somaxconn, 4096 on
// Linux since 5.4). At rudp's default, 1024, a burst of 1000 dials from one
// host is refused once 512 wait for an accept loop the load holds back:
// past half the backlog a host gets a sixteenth of it (Config.AcceptBacklog,
// the defence against one host filling the queue), and the benchmark's
// client is one host.
const tcpListenBacklog = 4096

// connSetup opens the server side of transport t for k connections.
func (b *bench) connSetup(t string, im impairment, k int) (*connSet, error) {
	cs := &connSet{}
	switch t {
	case "rudp":
		scfg, ccfg, err := b.protect(&rudp.Config{AcceptBacklog: tcpListenBacklog})
		if err != nil {
			return nil, err
		}
		ln, err := rudp.Listen("udp", loopback, scfg)
		if err != nil {
			return nil, err
		}
		cs.closers = append(cs.closers, ln)
		_, addr, err := im.proxyTo(&cs.closers, ln.Addr().String(), impair.WithMaxClients(k+16))
		if err != nil {
			cs.close()
			return nil, err
		}
		cs.accept = ln.Accept
		cs.dial = func(ctx context.Context) (net.Conn, error) {
			return rudp.DialContext(ctx, "udp", addr, ccfg)
		}
		if b.opts.SharedDial {
			client, err := rudp.Listen("udp", loopback, ccfg)
			if err != nil {
				cs.close()
				return nil, err
			}
			cs.closers = append(cs.closers, client)
			cs.dial = func(ctx context.Context) (net.Conn, error) {
				return client.DialContext(ctx, "udp", addr)
			}
		}
	case "tcp":
		ln, err := net.Listen("tcp", loopback)
		if err != nil {
			return nil, err
		}
		cs.closers = append(cs.closers, ln)
		addr, err := im.relayTo(&cs.closers, ln.Addr().String())
		if err != nil {
			cs.close()
			return nil, err
		}
		cs.accept = ln.Accept
		var d net.Dialer
		cs.dial = func(ctx context.Context) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}
	default:
		s, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		_ = s.SetReadBuffer(socketBuffer)
		cs.closers = append(cs.closers, s)
		go echoUDP(s)
		_, addr, err := im.proxyTo(&cs.closers, s.LocalAddr().String(), impair.WithMaxClients(k+16))
		if err != nil {
			cs.close()
			return nil, err
		}
		cs.echo = true
		raddr, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			cs.close()
			return nil, err
		}
		timeout := 200*time.Millisecond + 2*im.rtt()
		// A raw UDP "handshake" is one datagram echoed back: the least a
		// protocol can do to learn that the peer is there.
		cs.dial = func(ctx context.Context) (net.Conn, error) {
			c, err := net.DialUDP("udp", nil, raddr)
			if err != nil {
				return nil, err
			}
			buf := make([]byte, 64)
			for try := 0; try < 5; try++ {
				if _, err := c.Write([]byte{1}); err != nil {
					continue
				}
				_ = c.SetReadDeadline(time.Now().Add(timeout))
				if _, err := c.Read(buf); err == nil {
					_ = c.SetReadDeadline(time.Time{})
					return c, nil
				}
				if ctx.Err() != nil {
					break
				}
			}
			c.Close()
			return nil, errors.New("no echo")
		}
	}
	return cs, nil
}
