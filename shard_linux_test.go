package rudp_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// listenSharded listens on a loopback port with cfg (its Sockets set), or
// skips the test where the kernel cannot steer SO_REUSEPORT groups with
// classic BPF (before Linux 4.5, or a sandbox that forbids it).
func listenSharded(t *testing.T, cfg *rudp.Config) *rudp.Listener {
	t.Helper()
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", cfg)
	if errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
		t.Skipf("no SO_REUSEPORT steering here: %v", err)
	}
	require.NoError(t, err)
	return ln
}

// echoListener echoes every message of every connection ln accepts until
// ln closes; stop waits for its goroutines.
func echoListener(ln *rudp.Listener) (stop func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.AcceptRUDP()
			if err != nil {
				return
			}
			wg.Go(func() {
				io.Copy(c, c)
				c.Close()
			})
		}
	})
	return func() {
		ln.Close()
		wg.Wait()
	}
}

// migratingEcho sends msgs writes of size bytes through a NAT relay to
// addr, rebinding the relay (the client's address changes) after half of
// them, and checks that all come back in order; first, if set, runs on
// the new connection before that. The connection is returned open (the
// caller reads the sockets' counts before the closes, which may cross
// packets that come too late), or closed with an error.
func migratingEcho(t *testing.T, addr *net.UDPAddr, msgs, size int, first func(*rudp.Conn) error) (_ *rudp.Conn, err error) {
	relay := newNATRelay(t, addr.AddrPort())
	// No ICMP from the old address: on a loaded machine its hint (the
	// peer may be gone) can end the server's connection before the
	// client's next packet shows its new address (failfast.go), which is
	// not what these tests are about.
	relay.mu.Lock()
	relay.quiet = true
	relay.mu.Unlock()
	c, err := rudp.Dial("udp4", relay.inside.LocalAddr().String(), nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if first != nil {
		if err := first(c); err != nil {
			return nil, err
		}
	}
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, size)
		for i := range msgs {
			if i == msgs/2 {
				relay.rebind(t)
			}
			buf[0], buf[size-1] = byte(i), byte(i>>8)
			if _, err := c.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	buf := make([]byte, size)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := range msgs {
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, fmt.Errorf("echo %d of %d: %w", i, msgs, err)
		}
		if buf[0] != byte(i) || buf[size-1] != byte(i>>8) || !bytes.Equal(buf[1:size-1], make([]byte, size-2)) {
			return nil, fmt.Errorf("echo %d of %d: wrong bytes", i, msgs)
		}
	}
	return c, <-errc
}

// migratingClients runs n migratingEcho clients at once and returns their
// connections, open; they are closed when the test ends (before its
// deferred calls: the caller closes them first where that matters).
func migratingClients(t *testing.T, addr *net.UDPAddr, n, msgs, size int, first func(*rudp.Conn) error) []*rudp.Conn {
	type outcome struct {
		c   *rudp.Conn
		err error
	}
	done := make(chan outcome, n)
	for range n {
		go func() {
			c, err := migratingEcho(t, addr, msgs, size, first)
			done <- outcome{c, err}
		}()
	}
	var conns []*rudp.Conn
	var firstErr error
	for range n {
		o := <-done
		if o.err != nil && firstErr == nil {
			firstErr = o.err
		}
		if o.c != nil {
			conns = append(conns, o.c)
		}
	}
	if firstErr != nil {
		closeAll(conns)
	}
	require.NoError(t, firstErr)
	return conns
}

func closeAll(conns []*rudp.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// TestListenerShardsKeepMigratingClients: a Listener serving its port
// with two SO_REUSEPORT sockets (Config.Sockets) keeps each connection on
// the socket that accepted it, also when the client's address changes in
// the middle of a transfer (and the kernel's hash of the new address
// pair would pick either socket): every datagram of every connection
// reached its own shard, none was dropped as another shard's
// (DroppedMisrouted) or unknown, and both shards served.
func TestListenerShardsKeepMigratingClients(t *testing.T) {
	ln := listenSharded(t, &rudp.Config{Sockets: 2})
	stop := echoListener(ln)
	defer stop()
	const clients, msgs, size = 12, 200, 1000
	conns := migratingClients(t, ln.Addr().(*net.UDPAddr), clients, msgs, size, nil)
	shards := ln.ShardStats()
	closeAll(conns)
	require.Len(t, shards, 2)
	var accepted uint64
	for k, st := range shards {
		t.Logf("socket %d: accepted %d, datagrams %d, misrouted %d", k, st.Accepted, st.DatagramsReceived, st.DroppedMisrouted)
		require.Zero(t, st.DroppedMisrouted, "socket %d: datagrams of the other socket's connections", k)
		require.Zero(t, st.DroppedUnknown, "socket %d", k)
		require.Zero(t, st.ResetsSent, "socket %d", k)
		accepted += st.Accepted
	}
	require.Equal(t, uint64(clients), accepted)
	require.Equal(t, uint64(clients), ln.Stats().Accepted, "Stats sums the sockets'")
}

// TestShardingConfigErrors: Sockets and ServerID that cannot work
// together are refused by Validate and Listen, naming the field to change.
func TestShardingConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name          string
		cfg           rudp.Config
		field, reason string
	}{
		{"manual", rudp.Config{Sockets: 2, Manual: true}, "Sockets", "Manual mode"},
		{"shared without a server ID", rudp.Config{Sockets: 1}, "ServerID", "must be set with Sockets 1"},
		{"server IDs past the last byte", rudp.Config{Sockets: 3, ServerID: []byte{7, 254}}, "Sockets", "at most 2 with ServerID's last byte 254"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for what, err := range map[string]error{"Validate": tt.cfg.Validate(), "Listen": listenErr(&tt.cfg)} {
				var ce *rudp.ConfigError
				require.ErrorAs(t, err, &ce, what)
				require.Equal(t, tt.field, ce.Field, what)
				require.Contains(t, ce.Reason, tt.reason, what)
			}
		})
	}
	// The limits themselves are valid.
	require.NoError(t, (&rudp.Config{Sockets: 2, ServerID: []byte{7, 254}}).Validate())
	require.NoError(t, (&rudp.Config{Sockets: 1, Manual: true, ServerID: []byte{3}}).Validate())
}

func listenErr(cfg *rudp.Config) error {
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", cfg)
	if err == nil {
		ln.Close()
	}
	return err
}

// TestShardedListenerDialAndClose: a sharded Listener dials through its
// sockets in turn, and each dialed connection's replies come back to the
// socket that dialed it (its IDs carry that socket's server ID). Its
// sockets stay open, all of them, while a connection on any lives after
// Close (closing one would renumber the port's group), and all close with
// the last: the port is free again.
func TestShardedListenerDialAndClose(t *testing.T) {
	server := listenSharded(t, &rudp.Config{})
	stop := echoListener(server)
	defer stop()
	ln := listenSharded(t, &rudp.Config{Sockets: 2})
	var conns []*rudp.Conn
	for range 4 {
		c, err := ln.Dial("udp4", server.Addr().String())
		require.NoError(t, err)
		defer c.Close() // (before stop, which waits for the server's side)
		conns = append(conns, c)
	}
	echo := func(c *rudp.Conn) { echoOnce(t, c, "ping") }
	for _, c := range conns {
		echo(c)
	}
	for k, st := range ln.ShardStats() {
		require.Equal(t, uint64(2), st.Dialed, "socket %d", k)
		require.Equal(t, 2, st.Conns, "socket %d", k)
		require.Zero(t, st.DroppedMisrouted, "socket %d", k)
	}
	port := ln.Addr().(*net.UDPAddr)
	require.NoError(t, ln.Close())
	// Both sockets stay while one connection lives (it is on one of them).
	for _, c := range conns[1:] {
		require.NoError(t, c.Close())
	}
	echo(conns[0])
	ours := socketsOnPort(t, port)
	require.Len(t, ours, 2, "sockets on the port while a connection lives")
	require.NoError(t, conns[0].Close())
	require.Eventually(t, func() bool {
		now := socketsOnPort(t, port)
		for inode := range ours {
			if now[inode] {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "sockets stay on the port after the last connection closed")
}

// socketsOnPort returns the inodes of the UDP sockets bound to addr
// (/proc/net/udp): by inode, not by count, since another process may take
// the port once ours are closed.
func socketsOnPort(t *testing.T, addr *net.UDPAddr) map[string]bool {
	b, err := os.ReadFile("/proc/net/udp")
	require.NoError(t, err)
	ip := addr.IP.To4()
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], addr.Port)
	inodes := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		if f := strings.Fields(line); len(f) > 9 && f[1] == local {
			inodes[f[9]] = true
		}
	}
	return inodes
}

// shardChildEnv makes the test binary the second server process of
// TestTwoProcessesShareAPort: "ID PORT" listens on 127.0.0.1:PORT with
// Sockets 1 and ServerID {ID}, prints "ready", and serves every
// connection it accepts (the byte ID first, then an echo) until its stdin
// closes; then it prints "stats ACCEPTED MISROUTED" and exits.
const shardChildEnv = "RUDP_TEST_SHARD_CHILD"

func TestShardChild(t *testing.T) {
	var id, port int
	if _, err := fmt.Sscanf(os.Getenv(shardChildEnv), "%d %d", &id, &port); err != nil {
		t.Skip("the second server process of TestTwoProcessesShareAPort")
	}
	ln, err := rudp.Listen("udp4", fmt.Sprintf("127.0.0.1:%d", port), &rudp.Config{Sockets: 1, ServerID: []byte{byte(id)}})
	require.NoError(t, err)
	stop := serveTagged(ln, byte(id))
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	st := ln.Stats()
	fmt.Printf("stats %d %d\n", st.Accepted, st.DroppedMisrouted)
	stop()
}

// serveTagged serves every connection ln accepts: it writes tag, then
// echoes. stop closes ln and its connections.
func serveTagged(ln *rudp.Listener, tag byte) (stop func()) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []*rudp.Conn
	wg.Go(func() {
		for {
			c, err := ln.AcceptRUDP()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				if _, err := c.Write([]byte{tag}); err == nil {
					io.Copy(c, c)
				}
			})
		}
	})
	return func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// TestTwoProcessesShareAPort: two server processes, this one (server ID
// 0) and a child (server ID 1), share one UDP port through the same BPF
// steering, each with its own server ID; the kernel hands each new client
// to one of them (its hash of the address pair) and every later datagram
// to the process whose ID the connection's IDs carry. Every connection,
// its client's address changing in the middle of a transfer, completes
// with the process that accepted it, and neither process saw a datagram
// of the other's connections (DroppedMisrouted).
func TestTwoProcessesShareAPort(t *testing.T) {
	ln := listenSharded(t, &rudp.Config{Sockets: 1, ServerID: []byte{0}})
	stop := serveTagged(ln, 0)
	defer stop()
	port := ln.Addr().(*net.UDPAddr).Port

	stdin, lines, stopChild := startTestChild(t, "^TestShardChild$", fmt.Sprintf("%s=1 %d", shardChildEnv, port))
	defer stopChild()
	require.True(t, lines.Scan(), "the child's first line")
	require.Equal(t, "ready", lines.Text())

	const clients, msgs, size = 16, 100, 1000
	served := make(chan byte, clients)
	conns := migratingClients(t, ln.Addr().(*net.UDPAddr), clients, msgs, size, func(c *rudp.Conn) error {
		var tag [1]byte
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(c, tag[:]); err != nil {
			return err
		}
		served <- tag[0]
		return nil
	})
	defer closeAll(conns) // (before stop: the servers' connections end with them)
	byProcess := [2]int{}
	for range clients {
		tag := <-served
		require.Less(t, tag, byte(2))
		byProcess[tag]++
	}
	t.Logf("connections by process: %v", byProcess)
	st := ln.Stats()
	require.Equal(t, uint64(byProcess[0]), st.Accepted, "this process accepted")
	require.Zero(t, st.DroppedMisrouted, "datagrams of the child's connections here")
	require.NoError(t, stdin.Close())
	require.True(t, lines.Scan(), "the child's stats")
	var accepted, misrouted int
	_, err := fmt.Sscanf(lines.Text(), "stats %d %d", &accepted, &misrouted)
	require.NoError(t, err, "the child said %q", lines.Text())
	require.Equal(t, byProcess[1], accepted, "the child accepted")
	require.Zero(t, misrouted, "datagrams of this process's connections in the child")
	// 16 clients all hashed to one process: a chance of 1 in 32768.
	require.NotZero(t, byProcess[0])
	require.NotZero(t, byProcess[1])
}
