package rudp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/core"
)

// countingHandler counts the log records whose message is msg.
type countingHandler struct {
	msg string
	n   atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// TestPacketConnMaxPeers: a PacketConn accepts at most Config.MaxPeers
// connections from peers (each its own client socket); more are refused
// at once (ErrRefused) and counted, and a slot frees when a peer leaves.
// (All clients are one host here, which MaxPeersPerHost lets take the
// whole table; none is idle for HeartbeatPeriod, so none is reclaimed.)
func TestPacketConnMaxPeers(t *testing.T) {
	const maxPeers, clients = 16, 24
	logs := &countingHandler{msg: "rudp: peer refused: MaxPeers connections on the socket"}
	pc, err := rudp.ListenPacket("udp", "127.0.0.1:0", &rudp.Config{
		Guarantee: rudp.Order, MaxPeers: maxPeers, MaxPeersPerHost: maxPeers, Logger: slog.New(logs),
	})
	require.NoError(t, err)
	defer pc.Close()
	// The application's read loop: it also finishes the connections of
	// peers that left (ReadFrom closes a connection it finds ended).
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 64)
		for {
			if _, _, err := pc.ReadFrom(buf); errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}()
	defer func() { pc.Close(); <-readerDone }()

	cfg := &rudp.Config{Guarantee: rudp.Order, HandshakeTimeout: 5 * time.Second}
	var (
		mu       sync.Mutex
		accepted []*rudp.Conn
		refused  int
	)
	var g errgroup.Group
	for range clients {
		g.Go(func() error {
			c, err := rudp.Dial("udp", pc.LocalAddr().String(), cfg)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				accepted = append(accepted, c)
			case errors.Is(err, rudp.ErrRefused):
				refused++
			default:
				return err
			}
			return nil
		})
	}
	start := time.Now()
	require.NoError(t, g.Wait())
	require.Less(t, time.Since(start), 3*time.Second, "refusals must be prompt, not handshake timeouts")
	require.Len(t, accepted, maxPeers)
	require.Equal(t, clients-maxPeers, refused)
	require.EqualValues(t, clients-maxPeers, logs.n.Load(), "every refusal is logged")
	require.EqualValues(t, clients-maxPeers, pc.Stats().RefusedPeers, "every refusal is counted")
	for _, c := range accepted {
		_, err := c.Write([]byte("hello"))
		require.NoError(t, err)
	}

	// One peer leaves; once its connection ended on both sides a new peer
	// gets its slot.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, accepted[0].Shutdown(ctx))
	var late *rudp.Conn
	for end := time.Now().Add(5 * time.Second); ; {
		late, err = rudp.Dial("udp", pc.LocalAddr().String(), cfg)
		if err == nil || !errors.Is(err, rudp.ErrRefused) || time.Now().After(end) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the PacketConn's side may still be ending
	}
	require.NoError(t, err)
	accepted = append(accepted[1:], late)
	for _, c := range accepted {
		c.Close()
	}
}

// TestDialResolveHonoursContext: name resolution is part of the dial that
// ctx bounds. A cancelled context fails before any lookup; a name server
// that never answers is abandoned when ctx ends, not after the resolver's
// own timeouts.
func TestDialResolveHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, addr := range []string{"localhost:9", "127.0.0.1:9", "rudp-test.example:9"} {
		start := time.Now()
		_, err := rudp.DialContext(ctx, "udp", addr, nil)
		require.ErrorIs(t, err, context.Canceled, addr)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		require.Equal(t, "dial", oe.Op)
		require.Less(t, time.Since(start), 100*time.Millisecond)
	}

	// A name server that hangs: the resolver's Dial blocks until the
	// lookup's context ends.
	var queried atomic.Bool
	d := &rudp.Dialer{Resolver: &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			queried.Store(true)
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}}
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := d.DialContext(ctx, "udp", "rudp-test.example:9")
	require.Error(t, err)
	require.True(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled), "%v", err)
	require.Less(t, time.Since(start), 2*time.Second)
	require.True(t, queried.Load(), "the Dialer's Resolver was not used")
}

// closeAccepted accepts and closes every connection until ln closes.
func closeAccepted(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// TestDialNetworkFamilies: "udp4" and "udp6" take only addresses of their
// family, "udp" any; names resolve.
func TestDialNetworkFamilies(t *testing.T) {
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	go closeAccepted(ln)
	port := strconv.Itoa(ln.Addr().(*net.UDPAddr).Port)
	for _, tt := range []struct {
		network, host string
		ok            bool
	}{
		{"udp", "127.0.0.1", true},
		{"udp4", "127.0.0.1", true},
		{"udp", "localhost", true},
		{"udp4", "localhost", true},
		{"udp6", "127.0.0.1", false},
		{"udp4", "::1", false},
	} {
		t.Run(tt.network+"/"+tt.host, func(t *testing.T) {
			c, err := rudp.Dial(tt.network, net.JoinHostPort(tt.host, port), &rudp.Config{HandshakeTimeout: 2 * time.Second})
			if !tt.ok {
				var ae *net.AddrError
				require.ErrorAs(t, err, &ae)
				return
			}
			require.NoError(t, err)
			require.Equal(t, ln.Addr().String(), c.RemoteAddr().String())
			c.Close()
		})
	}
	_, err = rudp.Dial("udp", "127.0.0.1", nil)
	require.Error(t, err, "an address without a port")
}

// helloFlood makes n distinct first-flight HELLO datagrams, as real
// clients send them (padded, well-formed, checksummed), each from its own
// connection ID; every second one echoes a forged cookie.
func helloFlood(t *testing.T, n int, seed uint64) [][]byte {
	rng := mrand.New(mrand.NewPCG(seed, seed+1))
	now := time.Now()
	cfg := core.DefaultConfig()
	out := make([][]byte, 0, n)
	for i := range n {
		cc, err := core.NewConn(cfg, rng.Uint64()|1, now)
		require.NoError(t, err)
		if i%2 == 1 {
			forged := make([]byte, 16)
			for j := range forged {
				forged[j] = byte(rng.Uint32())
			}
			cc.HandleDatagram(now, core.AppendRetry(nil, cc.LocalCID(), forged))
		}
		buf := make([]byte, 1500)
		k := cc.PollTransmit(now, buf)
		require.GreaterOrEqual(t, k, core.MinHelloDatagram)
		h, body, err := core.ParseHeader(buf[:k])
		require.NoError(t, err)
		require.Zero(t, h.DstCID)
		hello, ok := core.PeekHello(body)
		require.True(t, ok)
		require.Equal(t, i%2 == 1, len(hello.Cookie) > 0)
		out = append(out, buf[:k])
	}
	return out
}

var debugConns = regexp.MustCompile(`conns=(\d+)`)

// listenerConns is the number of connections on a listener's socket.
func listenerConns(t *testing.T, ln *rudp.Listener) int {
	m := debugConns.FindStringSubmatch(rudp.DebugListener(ln))
	require.NotNil(t, m)
	n, _ := strconv.Atoi(m[1])
	return n
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestListenerHelloFloodKeepsNoState: HELLOs without a valid cookie, from
// many ports, make the listener answer each with a Retry (never more than
// 3x what it received) and keep nothing: no connection, no per-address
// state, a flat heap; a real client still gets in meanwhile.
// floodRound is how many HELLOs a flooding port sends before it reads
// their answers.
const floodRound = 5

func TestListenerHelloFloodKeepsNoState(t *testing.T) {
	ports, perPort := 64, 100
	if testing.Short() {
		ports, perPort = 16, 50
	}
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	acceptedc := make(chan *rudp.Conn, 8)
	go func() {
		for {
			c, err := ln.AcceptRUDP()
			if err != nil {
				close(acceptedc)
				return
			}
			acceptedc <- c
		}
	}()
	hellos := helloFlood(t, perPort, 1)

	// Warm up (pools, maps, the reader's buffers), then measure.
	flood := func(ports int) (answers, tooBig int) {
		var mu sync.Mutex
		var g errgroup.Group
		for range ports {
			g.Go(func() error {
				s, err := net.DialUDP("udp", nil, ln.Addr().(*net.UDPAddr))
				if err != nil {
					return err
				}
				defer s.Close()
				// In rounds of a few HELLOs, each round's answers read
				// before the next: the flood goes as fast as the listener
				// answers, so neither socket buffer overflows however fast
				// or slow the machine (an open-loop flood measured the
				// kernel's drops, not the listener).
				buf := make([]byte, 2048)
				got, big := 0, 0
				for i := 0; i < len(hellos); i += floodRound {
					round := hellos[i:min(i+floodRound, len(hellos))]
					for _, h := range round {
						if _, err := s.Write(h); err != nil {
							return err
						}
					}
					for range round {
						s.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
						n, err := s.Read(buf)
						if err != nil {
							break // lost: the next round goes on
						}
						h, _, err := core.ParseHeader(buf[:n])
						if err != nil || h.Type != core.PacketRetry {
							return fmt.Errorf("answer to a cookieless HELLO is not a Retry: %x", buf[:min(n, 16)])
						}
						if n > 3*core.MinHelloDatagram {
							big++
						}
						got++
					}
				}
				mu.Lock()
				answers += got
				tooBig += big
				mu.Unlock()
				return nil
			})
		}
		require.NoError(t, g.Wait())
		return answers, tooBig
	}
	flood(4)
	before := heapInUse()
	start := time.Now()
	answers, tooBig := flood(ports)
	elapsed := time.Since(start)
	after := heapInUse()

	sent := ports * perPort
	t.Logf("%d HELLOs from %d ports: %d Retry answers in %v; heap %d -> %d bytes",
		sent, ports, answers, elapsed.Round(time.Millisecond), before, after)
	require.Zero(t, tooBig, "an answer larger than 3x the HELLO")
	// Loopback may still drop some of a round when the socket buffers
	// are small (no root: net.core.rmem_max caps them); most are answered.
	require.GreaterOrEqual(t, answers, sent/2, "the listener answered few HELLOs")
	require.Zero(t, listenerConns(t, ln), "the flood left connections: %s", rudp.DebugListener(ln))
	// No state per address: the heap does not grow with the flood (a
	// connection costs kilobytes; 6,400 of them would be megabytes).
	require.Less(t, int64(after)-int64(before), int64(512<<10), "heap grew by %d bytes", int64(after)-int64(before))
	select {
	case c := <-acceptedc:
		t.Fatalf("a connection was accepted from the flood: %v", c.RemoteAddr())
	default:
	}

	// A real client still gets in.
	c, err := rudp.Dial("udp", ln.Addr().String(), &rudp.Config{HandshakeTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer c.Close()
	s := <-acceptedc
	require.NotNil(t, s)
	s.Close()
}

// TestListenerCloseQueuedConnsEnd: Listener.Close closes the connections
// still waiting in its accept queue gracefully, so their clients read
// io.EOF (not a hang until the idle timeout); an accepted connection stays
// open, as with net.TCPListener (http.Server.Shutdown relies on that).
func TestListenerCloseQueuedConnsEnd(t *testing.T) {
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		ln, err := rudp.Listen("udp", "127.0.0.1:0", cfg)
		require.NoError(t, err)
		// Manual mode: the application's loop pumps the listener while
		// nothing is blocked in Accept (the queued handshakes need it).
		var stopLoop func()
		if cfg.Manual {
			done, exited := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(exited)
				for {
					select {
					case <-done:
						return
					case <-time.After(time.Millisecond):
						if errors.Is(ln.Pump(), net.ErrClosed) {
							return
						}
					}
				}
			}()
			stopLoop = func() { close(done); <-exited }
			defer func() {
				if stopLoop != nil {
					stopLoop()
				}
			}()
		}

		// One accepted connection, three left in the queue.
		kept, err := rudp.Dial("udp", ln.Addr().String(), cfg)
		require.NoError(t, err)
		defer kept.Close()
		server, err := ln.AcceptRUDP()
		require.NoError(t, err)
		defer server.Close()
		queued := make([]*rudp.Conn, 3)
		for i := range queued {
			queued[i], err = rudp.Dial("udp", ln.Addr().String(), cfg)
			require.NoError(t, err)
			defer queued[i].Close()
		}

		require.NoError(t, ln.Close())
		_, err = ln.Accept()
		require.ErrorIs(t, err, net.ErrClosed)

		for i, c := range queued {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := c.Read(make([]byte, 10))
			require.True(t, errIsClosedOrEOF(err), "queued client %d: %v", i, err)
		}

		// The accepted connection still works both ways.
		go func() {
			buf := make([]byte, 100)
			server.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := server.Read(buf)
			if err == nil {
				server.Write(buf[:n])
			}
		}()
		_, err = kept.Write([]byte("still open"))
		require.NoError(t, err)
		kept.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, err := io.ReadAtLeast(kept, buf, len("still open"))
		require.NoError(t, err)
		require.Equal(t, "still open", string(buf[:n]))

		// A new client is refused now.
		_, err = rudp.Dial("udp", ln.Addr().String(), &rudp.Config{Manual: cfg.Manual, HandshakeTimeout: 2 * time.Second})
		require.ErrorIs(t, err, rudp.ErrRefused)

		if cfg.Manual {
			// Let the loop drive the closes to their end, then the socket
			// closes (the loop's Pump sees net.ErrClosed and returns).
			stopLoop()
			stopLoop = nil
			kept.Close()
			server.Close()
			for _, c := range queued {
				c.Close()
			}
			pumps := []interface{ Pump() error }{kept}
			for _, c := range queued {
				pumps = append(pumps, c)
			}
			require.True(t, pumpUntil(20*time.Second, func() bool {
				done := errors.Is(ln.Pump(), net.ErrClosed) && errors.Is(kept.Pump(), net.ErrClosed)
				for _, c := range queued {
					done = errors.Is(c.Pump(), net.ErrClosed) && done
				}
				return done
			}, pumps...), "Manual mode closes did not complete: %s", rudp.DebugListener(ln))
		}
	})
}
