package rudp_test

import (
	"errors"
	"flag"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/core"
)

var floodFlag = flag.Bool("flood", false, "run TestPacketConnFloodFigures: 10,000 source ports of one host against a default PacketConn, with the figures")

// loopbackHost returns a loopback address other than 127.0.0.1 (Linux
// routes all of 127/8 to lo), so that tests over real sockets can play
// several hosts; it skips the test where the address cannot be bound.
func loopbackHost(t testing.TB, last byte) netip.Addr {
	t.Helper()
	a := netip.AddrFrom4([4]byte{127, 0, 0, last})
	s, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		t.Skipf("cannot bind %v (only Linux routes all of 127/8 to loopback): %v", a, err)
	}
	s.Close()
	return a
}

// rawPeers are connections a test drives by hand through the core, one
// UDP socket (one source port) each: a hostile host that completes
// handshakes and then answers nothing.
type rawPeers struct {
	socks []*net.UDPConn
}

func (r *rawPeers) close() {
	for _, s := range r.socks {
		s.Close()
	}
}

// handshake opens n sockets on host and completes a handshake with target
// from each (n per socket port), with workers in parallel. It returns how
// many connections the target established and how many it refused.
func handshakeFrom(t testing.TB, host netip.Addr, target netip.AddrPort, n, workers int) (r *rawPeers, established, refused int) {
	t.Helper()
	r = &rawPeers{socks: make([]*net.UDPConn, n)}
	for i := range r.socks {
		s, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, 0)))
		if err != nil {
			r.socks = r.socks[:i]
			r.close()
			t.Fatalf("socket %d: %v", i, err)
		}
		r.socks[i] = s
	}
	var est, ref atomic.Int64
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			buf := make([]byte, 2048)
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				switch rawHandshake(r.socks[i], target, uint64(i)+1, buf) {
				case nil:
					est.Add(1)
				case core.ErrRefused:
					ref.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return r, int(est.Load()), int(ref.Load())
}

// rawHandshake drives one client connection's handshake over s to target.
func rawHandshake(s *net.UDPConn, target netip.AddrPort, cid uint64, buf []byte) error {
	cc, err := core.NewConn(&core.Config{HandshakeTimeout: 2 * time.Second}, cid, time.Now())
	if err != nil {
		return err
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		now := time.Now()
		for {
			n := cc.PollTransmit(now, buf)
			if n == 0 {
				break
			}
			if _, err := s.WriteToUDPAddrPort(buf[:n], target); err != nil {
				return err
			}
		}
		if cc.Established() {
			return nil
		}
		if cc.Closed() {
			return cc.Err()
		}
		s.SetReadDeadline(now.Add(200 * time.Millisecond))
		n, _, err := s.ReadFromUDPAddrPort(buf)
		now = time.Now()
		if err != nil {
			cc.HandleTimeout(now)
			continue
		}
		cc.HandleDatagram(now, buf[:n])
	}
	return core.ErrHandshakeTimeout
}

// echoPacketConn answers every message pc reads with the same message,
// until pc is closed; stop waits for the loop to end.
func echoPacketConn(pc *rudp.PacketConn) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				_, _ = pc.WriteTo(buf[:n], from)
			}
		}
	}()
	return func() { pc.Close(); <-done }
}

// replyTime is how long a new PacketConn on host waits for target's echo
// of its first message, writing again every 100ms (as a UDP application
// retries): zero if none came within limit.
func replyTime(t testing.TB, host netip.Addr, target net.Addr, limit time.Duration) time.Duration {
	t.Helper()
	pc, err := rudp.ListenPacket("udp4", netip.AddrPortFrom(host, 0).String(), &rudp.Config{Guarantee: rudp.Order})
	require.NoError(t, err)
	defer pc.Close()
	start := time.Now()
	got := make(chan struct{})
	go func() {
		defer close(got)
		buf := make([]byte, 64)
		pc.SetReadDeadline(start.Add(limit))
		_, _, _ = pc.ReadFrom(buf)
	}()
	for {
		_, _ = pc.WriteTo([]byte("hello"), target)
		select {
		case <-got:
			if d := time.Since(start); d < limit {
				return d
			}
			return 0
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestPacketConnFloodFigures measures what one host with 10,000 source
// ports does to a PacketConn with the default Config: how many of its
// MaxPeers slots it takes, and how long a new host then waits for a reply;
// then the same with the table filled by 16 such hosts, whose connections
// stay idle. It runs only with -flood (it opens 14,000 sockets, ~16s); it
// asserts the fair share and that a new host gets a reply.
func TestPacketConnFloodFigures(t *testing.T) {
	if !*floodFlag {
		t.Skip("a figure test: run with -flood")
	}
	attacker, newcomer := loopbackHost(t, 2), loopbackHost(t, 3)
	// (A Linger: the one host's connections never acknowledge the close.)
	pc, err := rudp.ListenPacket("udp4", "127.0.0.1:0", &rudp.Config{Linger: 100 * time.Millisecond})
	require.NoError(t, err)
	stop := echoPacketConn(pc)
	defer stop()
	target := pc.LocalAddr().(*net.UDPAddr).AddrPort()

	const ports = 10000
	start := time.Now()
	raw, est, ref := handshakeFrom(t, attacker, target, ports, 32)
	defer raw.close()
	took := time.Since(start)
	t.Logf("one host, %d source ports: %d connections established, %d refused, in %v", ports, est, ref, took)

	reply := replyTime(t, newcomer, pc.LocalAddr(), 10*time.Second)
	if reply == 0 {
		t.Logf("a new host's first reply: none within 10s")
	} else {
		t.Logf("a new host's first reply: after %v", reply)
	}
	share := max(8, rudp.DefaultConfig().MaxPeers/16)
	require.LessOrEqual(t, est, share, "one host holds more than its share of MaxPeers")
	require.NotZero(t, reply, "a new host got no reply")

	// Fifteen more hosts fill the table; their connections stay idle (the
	// raw peers answer nothing, not even the heartbeats): a new host gets
	// in once they are idle for HeartbeatPeriod (15s), by reclaiming one.
	hosts := 1
	for last := byte(10); hosts*share < rudp.DefaultConfig().MaxPeers; last++ {
		r, e, _ := handshakeFrom(t, loopbackHost(t, last), target, share, 32)
		defer r.close()
		est += e
		hosts++
	}
	t.Logf("%d hosts: %d connections established (the table is full)", hosts, est)
	start = time.Now()
	reply = replyTime(t, loopbackHost(t, 4), pc.LocalAddr(), 30*time.Second)
	t.Logf("a new host's first reply with the table full of idle peers: after %v (0: none within 30s)", reply)
	require.NotZero(t, reply, "a new host got no reply")
}

// TestPacketConnHostShare: one host opening connections from many source
// ports gets no more than its share of a PacketConn's MaxPeers (a
// sixteenth, at least 8); the rest are refused, and a new host still
// gets an answer at once. Before the share, the one host took all 64
// places and the new host's messages went unanswered for good.
func TestPacketConnHostShare(t *testing.T) {
	attacker, newcomer := loopbackHost(t, 2), loopbackHost(t, 3)
	const maxPeers, ports = 64, 64
	// The one host's connections never acknowledge anything: the Linger
	// bounds how long Close waits for them before it aborts them.
	pc, err := rudp.ListenPacket("udp4", "127.0.0.1:0", &rudp.Config{Guarantee: rudp.Order, MaxPeers: maxPeers, Linger: 100 * time.Millisecond})
	require.NoError(t, err)
	stop := echoPacketConn(pc)
	defer stop()
	raw, est, ref := handshakeFrom(t, attacker, pc.LocalAddr().(*net.UDPAddr).AddrPort(), ports, 8)
	defer raw.close()
	require.Equal(t, 8, est, "connections the one host got")
	require.Equal(t, ports-8, ref, "connections the one host was refused")
	reply := replyTime(t, newcomer, pc.LocalAddr(), 5*time.Second)
	require.NotZero(t, reply, "a new host got no reply")
	t.Logf("one host: %d of %d handshakes established; a new host's reply after %v", est, ports, reply)
}

// peerClients dials n clients of pc from host, each writing one message
// (in order, so that the first is the least recently active).
func peerClients(t *testing.T, host netip.Addr, pc *rudp.PacketConn, cfg *rudp.Config, n int) []*rudp.Conn {
	t.Helper()
	d := &rudp.Dialer{Config: cfg, LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, 0))}
	conns := make([]*rudp.Conn, n)
	for i := range conns {
		c, err := d.Dial("udp", pc.LocalAddr().String())
		require.NoError(t, err, "client %d", i)
		t.Cleanup(func() { c.Close() })
		_, err = c.Write([]byte{byte(i)})
		require.NoError(t, err)
		conns[i] = c.(*rudp.Conn)
	}
	return conns
}

// TestPacketConnReclaimsIdlePeer: when a PacketConn's table is full, a new
// peer takes the place of the least recently active idle one, which is
// closed gracefully (it reads io.EOF); the other peers keep their
// connections. Before, the new peer was refused.
func TestPacketConnReclaimsIdlePeer(t *testing.T) {
	cfg := &rudp.Config{Guarantee: rudp.Order, HeartbeatPeriod: 200 * time.Millisecond, IdleTimeout: 5 * time.Second}
	srvCfg := *cfg
	srvCfg.MaxPeers = 4
	pc, err := rudp.ListenPacket("udp4", "127.0.0.1:0", &srvCfg)
	require.NoError(t, err)
	stop := echoPacketConn(pc)
	defer stop()
	old := peerClients(t, loopbackHost(t, 1), pc, cfg, 4)
	buf := make([]byte, 16)
	for i, c := range old { // each echo read: nothing is left unread on either side
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		require.NoError(t, err, "client %d", i)
		require.Equal(t, []byte{byte(i)}, buf[:n])
		time.Sleep(20 * time.Millisecond) // the first is the least recently active
	}
	time.Sleep(300 * time.Millisecond) // all idle (HeartbeatPeriod) now

	late := peerClients(t, loopbackHost(t, 2), pc, cfg, 1)[0]
	late.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := late.Read(buf)
	require.NoError(t, err)
	require.Equal(t, []byte{0}, buf[:n])

	old[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = old[0].Read(buf)
	require.ErrorIs(t, err, io.EOF, "the least recently active peer is closed gracefully")
	for i, c := range old[1:] {
		_, err := c.Write([]byte{byte(i + 1)})
		require.NoError(t, err)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		require.NoError(t, err, "client %d keeps its connection", i+1)
		require.Equal(t, []byte{byte(i + 1)}, buf[:n])
	}
}

// TestPacketConnRefusesWhenNoPeerIdle: a peer whose messages wait unread is
// never reclaimed, however long it is quiet (closing would drop messages
// it was told arrived): with the table full of such peers a new one is
// refused, and every message is still read.
func TestPacketConnRefusesWhenNoPeerIdle(t *testing.T) {
	cfg := &rudp.Config{Guarantee: rudp.Order, HeartbeatPeriod: 100 * time.Millisecond, IdleTimeout: 5 * time.Second}
	srvCfg := *cfg
	srvCfg.MaxPeers = 2
	pc, err := rudp.ListenPacket("udp4", "127.0.0.1:0", &srvCfg)
	require.NoError(t, err)
	defer pc.Close()
	peerClients(t, loopbackHost(t, 1), pc, cfg, 2)
	time.Sleep(300 * time.Millisecond) // quiet for longer than HeartbeatPeriod

	d := &rudp.Dialer{Config: cfg, LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopbackHost(t, 2), 0))}
	_, err = d.Dial("udp", pc.LocalAddr().String())
	require.ErrorIs(t, err, rudp.ErrRefused)

	got := map[byte]bool{}
	buf := make([]byte, 16)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range 2 {
		n, _, err := pc.ReadFrom(buf)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		got[buf[0]] = true
	}
	require.Equal(t, map[byte]bool{0: true, 1: true}, got)
}

// writeUntilError writes to addr every 20ms until WriteTo fails (or 10s
// passed), and returns the error.
func writeUntilError(t *testing.T, pc *rudp.PacketConn, addr net.Addr) error {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := pc.WriteTo([]byte("x"), addr); err != nil {
			return err
		}
	}
	t.Fatal("WriteTo kept succeeding to a peer whose connection failed")
	return nil
}

// TestPacketConnWriteToReportsFailure: when the connection WriteTo uses
// for a peer fails, the next WriteTo to that peer returns the error, once;
// the one after starts a new connection. Before, WriteTo returned n, nil
// forever while every message was lost.
func TestPacketConnWriteToReportsFailure(t *testing.T) {
	// A short timeout only where the test waits for it to pass.
	cfg := &rudp.Config{Guarantee: rudp.Order}
	silentCfg := &rudp.Config{Guarantee: rudp.Order, HandshakeTimeout: 300 * time.Millisecond}
	vanishCfg := &rudp.Config{Guarantee: rudp.Order, HeartbeatPeriod: 200 * time.Millisecond, IdleTimeout: 600 * time.Millisecond}
	for _, tc := range []struct {
		name string
		peer func(t *testing.T) (writer *rudp.PacketConn, to net.Addr)
		want error
	}{
		{"refusing", func(t *testing.T) (*rudp.PacketConn, net.Addr) {
			// A PacketConn whose one place holds a peer with unread messages.
			full, err := rudp.ListenPacket("udp4", "127.0.0.1:0", &rudp.Config{Guarantee: rudp.Order, MaxPeers: 1})
			require.NoError(t, err)
			t.Cleanup(func() { full.Close() })
			peerClients(t, loopbackHost(t, 1), full, cfg, 1)
			pc, err := rudp.ListenPacket("udp4", netip.AddrPortFrom(loopbackHost(t, 2), 0).String(), cfg)
			require.NoError(t, err)
			t.Cleanup(func() { pc.Close() })
			return pc, full.LocalAddr()
		}, rudp.ErrRefused},
		{"silent", func(t *testing.T) (*rudp.PacketConn, net.Addr) {
			// A socket that reads nothing and answers nothing.
			mute, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			require.NoError(t, err)
			t.Cleanup(func() { mute.Close() })
			pc, err := rudp.ListenPacket("udp4", "127.0.0.1:0", silentCfg)
			require.NoError(t, err)
			t.Cleanup(func() { pc.Close() })
			return pc, mute.LocalAddr()
		}, rudp.ErrHandshakeTimeout},
		{"vanished", func(t *testing.T) (*rudp.PacketConn, net.Addr) {
			// A peer that connected, then went silent (its process hung
			// or its network went away): the writer is the PacketConn it
			// connected to.
			pc, err := rudp.ListenPacket("udp4", "127.0.0.1:0", vanishCfg)
			require.NoError(t, err)
			t.Cleanup(func() { pc.Close() })
			raw, est, _ := handshakeFrom(t, loopbackHost(t, 1), pc.LocalAddr().(*net.UDPAddr).AddrPort(), 1, 1)
			t.Cleanup(raw.close)
			require.Equal(t, 1, est)
			return pc, raw.socks[0].LocalAddr()
		}, rudp.ErrIdleTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, to := tc.peer(t)
			_, err := pc.WriteTo([]byte("first"), to)
			require.NoError(t, err, "the first WriteTo only queues")
			err = writeUntilError(t, pc, to)
			require.ErrorIs(t, err, tc.want)
			var oe *net.OpError
			require.ErrorAs(t, err, &oe)
			require.Equal(t, "write", oe.Op)
			require.Equal(t, to.String(), oe.Addr.String())
			_, err = pc.WriteTo([]byte("again"), to)
			require.NoError(t, err, "after the report, a fresh attempt")
		})
	}
}

// TestConfigMaxPeersPerHost: a bad MaxPeersPerHost is rejected naming it
// and saying what is valid; zero and any value up to MaxPeers are valid.
func TestConfigMaxPeersPerHost(t *testing.T) {
	for _, cfg := range []rudp.Config{
		{MaxPeersPerHost: -1},
		{MaxPeers: 4, MaxPeersPerHost: 5},
		{MaxPeersPerHost: rudp.DefaultConfig().MaxPeers + 1},
	} {
		err := cfg.Validate()
		var ce *rudp.ConfigError
		require.ErrorAs(t, err, &ce, "%+v", cfg)
		require.Equal(t, "MaxPeersPerHost", ce.Field)
		_, err = rudp.ListenPacket("udp", "127.0.0.1:0", &cfg)
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "MaxPeersPerHost", ce.Field)
		t.Log(err)
	}
	for _, cfg := range []rudp.Config{{}, {MaxPeers: 4, MaxPeersPerHost: 4}, {MaxPeersPerHost: 1}} {
		require.NoError(t, cfg.Validate(), "%+v", cfg)
	}
}

// TestListenerQueueHostShare: one host handshaking faster than the
// application accepts fills at most half of a Listener's accept queue; then
// it is refused while other hosts still get in, each up to its share (a
// sixteenth of AcceptBacklog, at least 8). Before, the one host filled the
// whole queue and every other host was refused.
func TestListenerQueueHostShare(t *testing.T) {
	attacker, newcomer, second := loopbackHost(t, 2), loopbackHost(t, 3), loopbackHost(t, 4)
	const backlog = 64
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", &rudp.Config{AcceptBacklog: backlog})
	require.NoError(t, err)
	defer ln.Close()
	target := ln.Addr().(*net.UDPAddr).AddrPort()

	raw, est, ref := handshakeFrom(t, attacker, target, backlog, 8)
	defer raw.close()
	require.Equal(t, backlog/2, est, "the one host fills half the queue")
	require.Equal(t, backlog/2, ref)

	d := &rudp.Dialer{LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(newcomer, 0))}
	c, err := d.Dial("udp", ln.Addr().String())
	require.NoError(t, err, "a new host gets in")
	defer c.Close()

	raw2, est2, _ := handshakeFrom(t, second, target, 16, 4)
	defer raw2.close()
	require.Equal(t, 8, est2, "another host beyond half the queue: its share")

	for range backlog/2 + 1 + 8 {
		s, err := ln.AcceptRUDP()
		require.NoError(t, err)
		s.SetLinger(0) // abort: the raw hosts never acknowledge a close
		s.Close()
	}
	// The queue is empty again: a host's earlier connections count no more.
	raw3, est3, _ := handshakeFrom(t, attacker, target, 4, 4)
	defer raw3.close()
	require.Equal(t, 4, est3)
}

// natRelay carries one client's datagrams to target and back, as a NAT
// does: through an outside socket, which rebind replaces by one with a
// new port (the NAT's mapping changed).
type natRelay struct {
	inside  *net.UDPConn // the client's side
	target  netip.AddrPort
	mu      sync.Mutex
	outside *net.UDPConn
	client  netip.AddrPort
	wg      sync.WaitGroup
	// quiet keeps a replaced outside socket open, dropping what comes to
	// it, as a NAT that forgot a mapping does: no ICMP port unreachable
	// tells the server (which takes one as a hint that its peer is gone).
	quiet bool
	old   []*net.UDPConn
	// down, when set, holds what comes back through a new outside socket
	// until it is closed (a mapping whose return path is slow).
	down chan struct{}
}

func newNATRelay(t *testing.T, target netip.AddrPort) *natRelay {
	inside, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	r := &natRelay{inside: inside, target: target}
	r.rebind(t)
	r.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := inside.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.client = from
			out := r.outside
			r.mu.Unlock()
			_, _ = out.WriteToUDPAddrPort(buf[:n], r.target)
		}
	})
	t.Cleanup(func() {
		inside.Close()
		r.mu.Lock()
		r.outside.Close()
		for _, o := range r.old {
			o.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

// rebind moves the client's traffic to a new outside port; the old one is
// gone.
func (r *natRelay) rebind(t *testing.T) {
	out, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	r.mu.Lock()
	old := r.outside
	r.outside = out
	gate := r.down
	if old != nil && r.quiet {
		r.old = append(r.old, old)
		old = nil
	}
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	r.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := out.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if gate != nil {
				<-gate
			}
			r.mu.Lock()
			client, current := r.client, r.outside == out
			r.mu.Unlock()
			if current {
				_, _ = r.inside.WriteToUDPAddrPort(buf[:n], client)
			}
		}
	})
}

// TestPacketConnReplyFollowsRebinding: after a peer's address changed (NAT
// rebinding), ReadFrom reports the new address, and WriteTo to it takes the
// same connection. Before, WriteTo opened a second connection to the new
// address, which a dialed peer never accepts: every reply was lost.
func TestPacketConnReplyFollowsRebinding(t *testing.T) {
	cfg := &rudp.Config{Guarantee: rudp.Order}
	pc, err := rudp.ListenPacket("udp4", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	stop := echoPacketConn(pc)
	defer stop()
	relay := newNATRelay(t, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	c, err := rudp.Dial("udp4", relay.inside.LocalAddr().String(), cfg)
	require.NoError(t, err)
	defer c.Close()
	buf := make([]byte, 64)
	for i, msg := range []string{"before", "after"} {
		if i == 1 {
			relay.rebind(t)
		}
		_, err = c.Write([]byte(msg))
		require.NoError(t, err)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(buf)
		require.NoError(t, err, "the echo of %q", msg)
		require.Equal(t, msg, string(buf[:n]))
	}
}

// TestPacketConnReplyToAddressLeft: a message that arrives from the peer's
// new address before that address is validated is reported from the old
// one (ReadFrom reports validated addresses only: a spoofed packet moves
// nothing); a reply to it, made after the move was validated, still takes
// the connection, now at the new address. Before, WriteTo found no
// connection at the old address and dialed a second one there, to a port
// nobody answers from: the reply was lost (a flake of
// TestPacketConnReplyFollowsRebinding, 1 run in 1200 under load).
func TestPacketConnReplyToAddressLeft(t *testing.T) {
	cfg := &rudp.Config{Guarantee: rudp.Order}
	pc, err := rudp.ListenPacket("udp4", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	defer pc.Close()
	relay := newNATRelay(t, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	c, err := rudp.Dial("udp4", relay.inside.LocalAddr().String(), cfg)
	require.NoError(t, err)
	defer c.Close()
	buf := make([]byte, 64)
	read := func(want string) net.Addr {
		t.Helper()
		require.NoError(t, pc.SetReadDeadline(time.Now().Add(10*time.Second)))
		n, from, err := pc.ReadFrom(buf)
		require.NoError(t, err)
		require.Equal(t, want, string(buf[:n]))
		return from
	}
	_, err = c.Write([]byte("before"))
	require.NoError(t, err)
	old := read("before")

	gate := make(chan struct{})
	relay.mu.Lock()
	relay.down = gate // the new mapping's return path holds everything
	relay.mu.Unlock()
	relay.rebind(t)
	_, err = c.Write([]byte("after"))
	require.NoError(t, err)
	from := read("after")
	require.Equal(t, old.String(), from.String(), "a move not yet validated is not reported")

	close(gate) // the path challenge's answer gets through: the move is validated
	oldAP := old.(*net.UDPAddr).AddrPort()
	require.Eventually(t, func() bool { return !rudp.PacketConnPeerAt(pc, oldAP) }, 10*time.Second, time.Millisecond,
		"the connection never moved to the new address")
	conns, known := rudp.PacketConnPeers(pc, oldAP)
	require.True(t, known, "WriteTo to the address the peer left would dial a new connection")
	_, err = pc.WriteTo([]byte("reply"), from)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, err := c.Read(buf)
	require.NoError(t, err, "the reply to the address the peer left")
	require.Equal(t, "reply", string(buf[:n]))
	after, _ := rudp.PacketConnPeers(pc, oldAP)
	require.Equal(t, conns, after, "the reply opened another connection")
}

// TestPacketConnReadFromTakesHostsInTurn: ReadFrom takes one message from
// each host with messages waiting in turn, so a host with many connections
// full of messages delays a new host's message by one of its own, not one
// per connection. Before, ReadFrom took connections in turn: the new
// host's message came after one message of each of the busy host's
// connections (here 32 reads; at the default share, 256).
func TestPacketConnReadFromTakesHostsInTurn(t *testing.T) {
	busy, newcomer := loopbackHost(t, 2), loopbackHost(t, 3)
	const conns, each = 32, 4
	pc, err := rudp.ListenPacket("udp4", "127.0.0.1:0", &rudp.Config{Guarantee: rudp.Order, MaxPeersPerHost: conns})
	require.NoError(t, err)
	defer pc.Close()
	cfg := &rudp.Config{Guarantee: rudp.Order}
	var waiting []*rudp.Conn
	for range conns {
		waiting = append(waiting, peerClients(t, busy, pc, cfg, 1)...)
	}
	for _, c := range waiting {
		for range each - 1 {
			_, err := c.Write([]byte{0})
			require.NoError(t, err)
		}
	}
	// Every message of the busy host is in before the new host's, and all
	// are in before the first ReadFrom.
	arrived := func(conns []*rudp.Conn) func() bool {
		return func() bool {
			for _, c := range conns {
				if c.Stats().BytesInFlight > 0 {
					return false
				}
			}
			return true
		}
	}
	require.Eventually(t, arrived(waiting), 5*time.Second, time.Millisecond)
	late := peerClients(t, newcomer, pc, cfg, 1)
	require.Eventually(t, arrived(late), 5*time.Second, time.Millisecond)
	buf := make([]byte, 16)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for reads := 1; reads <= conns*each+1; reads++ {
		_, from, err := pc.ReadFrom(buf)
		require.NoError(t, err)
		if from.(*net.UDPAddr).AddrPort().Addr() == newcomer {
			t.Logf("the new host's message was read %d", reads)
			require.LessOrEqual(t, reads, 2, "reads before the new host's message")
			return
		}
	}
	t.Fatal("the new host's message was never read")
}
