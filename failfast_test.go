package rudp_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/core"
)

// closedPort returns an address on network where nothing listens: a port
// just bound and released.
func closedPort(t *testing.T, network, host string) string {
	pc, err := net.ListenPacket(network, net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("no %s socket on %s: %v", network, host, err)
	}
	addr := pc.LocalAddr().String()
	require.NoError(t, pc.Close())
	return addr
}

// TestDialClosedPortFailsFast: Dial to a port where nothing listens fails
// in about a round trip with an error matching syscall.ECONNREFUSED (the
// kernel's ICMP port unreachable), not after the handshake timeout (10s):
// over IPv4 and IPv6, from a socket of its own and through a Listener, in
// default and Manual mode.
func TestDialClosedPortFailsFast(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ICMP errors reach an unconnected UDP socket on Linux only (IP_RECVERR)")
	}
	cases := []struct {
		name, network, host string
		viaListener         bool
	}{
		{"udp4", "udp4", "127.0.0.1", false},
		{"udp6", "udp6", "::1", false},
		{"listener", "udp4", "127.0.0.1", true},
		{"listener6", "udp6", "::1", true},
	}
	modes(t, func(t *testing.T, cfg *rudp.Config) {
		for _, tc := range cases {
			for _, single := range []bool{false, true} {
				cfg := *cfg
				cfg.DisableBatchIO = single // recvmmsg, or package net's one-datagram reads
				name := tc.name
				if single {
					name += "/single"
				}
				t.Run(name, func(t *testing.T) {
					dialClosedPort(t, &cfg, tc.network, tc.host, tc.viaListener)
				})
			}
		}
	})
}

// dialClosedPort dials a port where nothing listens on host and checks
// that the dial fails at once, refused.
func dialClosedPort(t *testing.T, cfg *rudp.Config, network, host string, viaListener bool) {
	addr := closedPort(t, network, host)
	start := time.Now()
	var err error
	if viaListener {
		ln, lerr := rudp.Listen(network, net.JoinHostPort(host, "0"), cfg)
		require.NoError(t, lerr)
		defer ln.Close()
		_, err = ln.Dial(network, addr)
	} else {
		_, err = rudp.Dial(network, addr, cfg)
	}
	elapsed := time.Since(start)
	t.Logf("Dial %s to a closed port failed after %v: %v", network, elapsed, err)
	require.Error(t, err)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.ErrorIs(t, err, rudp.ErrUnreachable)
	var op *net.OpError
	require.ErrorAs(t, err, &op)
	require.Equal(t, "dial", op.Op)
	// A loopback round trip is microseconds; the handshake timeout 10s.
	// 2s leaves room for a loaded machine.
	require.Less(t, elapsed, 2*time.Second)
}

// failFastChildEnv makes the test binary a child process of the fail-fast
// tests, whose state dies with it when it is killed: "server" serves echo
// on a Listener at the address it prints; "client ADDR" dials ADDR, has a
// line echoed and prints "ok". Either runs until killed.
const failFastChildEnv = "RUDP_TEST_FAILFAST_CHILD"

func TestFailFastChild(t *testing.T) {
	mode := os.Getenv(failFastChildEnv)
	switch {
	case mode == "":
		t.Skip("the child process of the fail-fast tests")
	case strings.HasPrefix(mode, "client "):
		c, err := rudp.Dial("udp4", strings.TrimPrefix(mode, "client "), nil)
		require.NoError(t, err)
		echoOnce(t, c, "client here")
		os.Stdout.WriteString("ok\n")
		select {} // until killed
	}
	var cfg *rudp.Config
	if mode == "server psk" {
		cfg = restartPSKConfig(restartKeys[0])
	}
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	os.Stdout.WriteString("addr " + ln.Addr().String() + "\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			buf := make([]byte, 1<<16)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
	}
}

// startChild starts TestFailFastChild in mode and returns the first line
// it printed and a function that kills it (SIGKILL: nothing is closed).
func startChild(t *testing.T, mode string) (string, func()) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestFailFastChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), failFastChildEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "the child printed %q", line)
	return strings.TrimSpace(line), kill
}

// startServerProcess starts an echo server in a child process and returns
// its address and a function that kills it.
func startServerProcess(t *testing.T) (string, func()) {
	return startServerProcessMode(t, "server")
}

// startServerProcessMode is startServerProcess in mode "server" (plaintext)
// or "server psk" (restartPSKConfig with the first of restartKeys).
func startServerProcessMode(t *testing.T, mode string) (string, func()) {
	line, kill := startChild(t, mode)
	addr, ok := strings.CutPrefix(line, "addr ")
	require.True(t, ok, "child said %q", line)
	return addr, kill
}

// echoOnce writes p and reads its echo.
func echoOnce(t *testing.T, c *rudp.Conn, p string) {
	_, err := c.Write([]byte(p))
	require.NoError(t, err)
	buf := make([]byte, len(p))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io_ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, p, string(buf))
	require.NoError(t, c.SetReadDeadline(time.Time{}))
}

func io_ReadFull(c *rudp.Conn, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := c.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestServerRestartReset: a server that restarted (its process killed, a
// new one listening on the same port with no memory of the connection)
// answers the client's next packet with a stateless reset, and the client's
// Read fails at once with an error matching syscall.ECONNRESET, not after
// its idle timeout.
func TestServerRestartReset(t *testing.T) {
	addr, kill := startServerProcess(t)
	c, err := rudp.Dial("udp4", addr, nil)
	require.NoError(t, err)
	defer c.Close()
	echoOnce(t, c, "before the restart")
	kill()
	ln, err := rudp.Listen("udp4", addr, nil) // the restarted server
	require.NoError(t, err)
	defer ln.Close()

	elapsed, err := writeThenRead(t, c, "after the restart")
	t.Logf("client learnt of the restart after %v: %v", elapsed, err)
	require.ErrorIs(t, err, syscall.ECONNRESET)
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded))
	require.Less(t, elapsed, 2*time.Second)
}

// restartKeys are the stateless reset keys of TestSecureServerRestartReset:
// the server's, and another.
var restartKeys = [2][]byte{bytes.Repeat([]byte{0x33}, 32), bytes.Repeat([]byte{0x44}, 32)}

// restartPSKConfig is the config of both sides of
// TestSecureServerRestartReset: a pre-shared key, and the stateless reset
// key resetKey.
func restartPSKConfig(resetKey []byte) *rudp.Config {
	return &rudp.Config{PSK: bytes.Repeat([]byte{0x42}, 32), StatelessResetKey: resetKey}
}

// TestSecureServerRestartReset: a protected server that restarted (its
// process killed, a new one listening on the same port with the same
// StatelessResetKey) answers the client's next packet with a reset
// carrying the connection's token, and the client's Read fails with an
// error matching syscall.ECONNRESET, not at its idle timeout. A server
// restarted with another key sends resets whose token the client was
// never told: each is dropped as unauthenticated, and the connection
// stays (until its idle timeout).
func TestSecureServerRestartReset(t *testing.T) {
	for _, sameKey := range []bool{true, false} {
		t.Run(map[bool]string{true: "same key", false: "another key"}[sameKey], func(t *testing.T) {
			addr, kill := startServerProcessMode(t, "server psk")
			c, err := rudp.Dial("udp4", addr, restartPSKConfig(nil))
			require.NoError(t, err)
			defer c.Close()
			echoOnce(t, c, "before the restart")
			kill()
			key := restartKeys[0]
			if !sameKey {
				key = restartKeys[1]
			}
			ln, err := rudp.Listen("udp4", addr, restartPSKConfig(key)) // the restarted server
			require.NoError(t, err)
			defer ln.Close()

			start := time.Now()
			_, err = c.Write([]byte("after the restart"))
			require.NoError(t, err)
			if !sameKey {
				// Its resets arrive and are dropped; the connection stays.
				require.Eventually(t, func() bool { return c.Stats().DroppedUnauthenticated > 0 }, 20*time.Second, time.Millisecond)
				_, err = c.Write([]byte("still here"))
				require.NoError(t, err, "the connection ended on a reset without its token")
				return
			}
			require.NoError(t, c.SetReadDeadline(time.Now().Add(40*time.Second)))
			_, err = c.Read(make([]byte, 100))
			t.Logf("client learnt of the restart after %v: %v", time.Since(start), err)
			require.ErrorIs(t, err, syscall.ECONNRESET)
			require.ErrorIs(t, err, core.ErrReset, "a reset, not the idle timeout")
		})
	}
}

// TestServerGoneICMP: the server's process died and nothing listens on its
// port any more: the client's next packets come back as ICMP port
// unreachable, and as the server acknowledges nothing either, the
// connection ends in a few probe timeouts with an error matching
// syscall.ECONNREFUSED, not after its idle timeout (30s).
func TestServerGoneICMP(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ICMP errors reach an unconnected UDP socket on Linux only (IP_RECVERR)")
	}
	addr, kill := startServerProcess(t)
	c, err := rudp.Dial("udp4", addr, nil)
	require.NoError(t, err)
	defer c.Close()
	echoOnce(t, c, "before the server dies")
	kill()

	elapsed, err := writeThenRead(t, c, "to nobody")
	t.Logf("client learnt the server is gone after %v: %v (stats %+v)", elapsed, err, c.Stats())
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.ErrorIs(t, err, rudp.ErrUnreachable)
	require.NotZero(t, c.Stats().UnreachableReports)
	require.Less(t, elapsed, 5*time.Second)
}

// rawPacket builds a well-formed datagram of type typ for dstCID with a
// body of bodyLen bytes.
func rawPacket(typ core.PacketType, dstCID uint64, pn uint32, bodyLen int) []byte {
	b := make([]byte, 14+bodyLen, 14+bodyLen+4)
	b[0] = core.Version
	b[1] = byte(typ)
	binary.BigEndian.PutUint64(b[2:], dstCID)
	binary.BigEndian.PutUint32(b[10:], pn)
	for i := 14; i < len(b); i++ {
		b[i] = 0x01 // PING frames
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// TestStatelessReset: a data packet for a connection a socket does not
// know is answered by a stateless reset that echoes its destination
// connection ID and packet number and is never larger than it; a reset, a
// Retry, a HELLO-less packet with connection ID 0 or a malformed datagram
// is answered by nothing.
func TestStatelessReset(t *testing.T) {
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer sock.Close()
	to := ln.Addr().(*net.UDPAddr)
	reply := func(p []byte) []byte {
		_, err := sock.WriteToUDP(p, to)
		require.NoError(t, err)
		require.NoError(t, sock.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
		buf := make([]byte, 2048)
		n, _, err := sock.ReadFromUDP(buf)
		if err != nil {
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			return nil
		}
		return buf[:n]
	}
	for _, bodyLen := range []int{0, 1, 100, 1300} {
		p := rawPacket(core.PacketData, 0x1234567890abcdef+uint64(bodyLen), 77+uint32(bodyLen), bodyLen)
		r := reply(p)
		require.NotNil(t, r, "no reset for a %d-byte packet", len(p))
		require.LessOrEqual(t, len(r), len(p))
		require.Equal(t, core.ResetLen, len(r))
		h, body, err := core.ParseHeader(r)
		require.NoError(t, err)
		require.Empty(t, body)
		require.Equal(t, core.Header{Type: core.PacketReset, DstCID: 0x1234567890abcdef + uint64(bodyLen), PacketNumber: 77 + uint32(bodyLen)}, h)
	}
	silent := map[string][]byte{
		"reset":       rawPacket(core.PacketReset, 42, 1, 0),
		"retry":       rawPacket(core.PacketRetry, 42, 1, 20),
		"cid 0":       rawPacket(core.PacketData, 0, 1, 20),
		"bad crc":     append(rawPacket(core.PacketData, 42, 1, 20)[:34], 0, 0, 0, 0),
		"too short":   rawPacket(core.PacketData, 42, 1, 0)[:17],
		"bad version": append([]byte{9}, rawPacket(core.PacketData, 42, 1, 20)[1:]...),
	}
	for name, p := range silent {
		require.Nil(t, reply(p), name)
	}
}

// TestStatelessResetRateLimit: a flood of packets for unknown connections
// gets at most the token bucket's resets (a burst, then a steady rate).
func TestStatelessResetRateLimit(t *testing.T) {
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer sock.Close()
	require.NoError(t, sock.SetReadBuffer(4<<20))
	to := ln.Addr().(*net.UDPAddr)
	const flood = 3000
	start := time.Now()
	for i := range flood {
		_, err := sock.WriteToUDP(rawPacket(core.PacketData, uint64(i)+1, 1, 0), to)
		require.NoError(t, err)
		if i%200 == 199 {
			time.Sleep(time.Millisecond) // leave the listener's buffer room
		}
	}
	sending := time.Since(start)
	got, last := 0, start
	buf := make([]byte, 2048)
	for {
		require.NoError(t, sock.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
		if _, _, err := sock.ReadFromUDP(buf); err != nil {
			break
		}
		got, last = got+1, time.Now()
	}
	// The bucket: a burst of 100, then 1000 a second, until the last reset
	// was sent (the listener may still have been reading the flood after
	// it was all sent).
	limit := 100 + int(1000*last.Sub(start).Seconds()) + 1
	t.Logf("%d packets for unknown connections in %v: %d resets (at most %d)", flood, sending, got, limit)
	require.Positive(t, got)
	require.LessOrEqual(t, got, limit)
	if sending < time.Second {
		require.Less(t, got, flood/2)
	}
	// The listener counts every packet it read once: a reset sent, one the
	// rate limit withheld, or one its full queue dropped.
	s := ln.Stats()
	require.GreaterOrEqual(t, s.ResetsSent, uint64(got), "every reset received was counted as sent")
	require.Equal(t, s.DatagramsReceived, s.ResetsSent+s.ResetsLimited+s.DroppedQueueFull, "%+v", s)
	if s.DatagramsReceived > uint64(limit) {
		require.Positive(t, s.ResetsLimited)
	}
}

// TestForgedResetIgnored: resets that do not echo the connection's own
// packet (another connection ID, whatever the packet number) leave it
// open.
func TestForgedResetIgnored(t *testing.T) {
	c1, c2, stop := pair(t, nil)
	defer stop()
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer sock.Close()
	for _, c := range []*rudp.Conn{c1, c2} {
		to := c.LocalAddr().(*net.UDPAddr)
		to = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: to.Port}
		for i := range 1000 {
			_, err := sock.WriteToUDP(rawPacket(core.PacketReset, uint64(i)*0x9e3779b97f4a7c15+1, uint32(i), 0), to)
			require.NoError(t, err)
		}
	}
	// Both still talk.
	go func() {
		buf := make([]byte, 64)
		n, err := c2.Read(buf)
		if err == nil {
			_, _ = c2.Write(buf[:n])
		}
	}()
	echoOnce(t, c1, "still here")
}

// TestClientGoneICMP: the client's process died (SIGKILL: it closed
// nothing). The server's next packets come back as ICMP port unreachable,
// and the server's connection ends in a few probe timeouts with an error
// matching syscall.ECONNREFUSED, not after its idle timeout (30s).
func TestClientGoneICMP(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ICMP errors reach an unconnected UDP socket on Linux only (IP_RECVERR)")
	}
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	served := make(chan *rudp.Conn, 1)
	go func() {
		defer close(served)
		c, err := ln.AcceptRUDP()
		if err != nil {
			return
		}
		buf := make([]byte, 64)
		if n, err := c.Read(buf); err == nil {
			_, _ = c.Write(buf[:n])
		}
		served <- c
	}()
	line, kill := startChild(t, "client "+ln.Addr().String())
	require.Equal(t, "ok", line)
	s := <-served
	require.NotNil(t, s)
	defer s.Close()
	kill()

	elapsed, err := writeThenRead(t, s, "to a dead client")
	t.Logf("server learnt the client is gone after %v: %v", elapsed, err)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.Less(t, elapsed, 5*time.Second)
}

// writeThenRead writes msg to c, then reads until the connection ends (or
// 40 s pass): the read's error and how long after the write it came.
func writeThenRead(t *testing.T, c net.Conn, msg string) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(40*time.Second)))
	_, err = c.Read(make([]byte, 100))
	return time.Since(start), err
}
