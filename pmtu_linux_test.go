package rudp_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
)

// pmtuNetnsEnv tells the test binary, re-run inside a network namespace,
// to do the transfer itself; its value is the namespace's loopback MTU.
const pmtuNetnsEnv = "RUDP_PMTU_NETNS"

// pmtuSettleWait bounds how long TestPathMTUNetns waits after the transfer
// for the searches to settle: generous, as a loaded machine stretches every
// round trip.
const pmtuSettleWait = 10 * time.Second

// TestPathMTUNetns moves 4 MiB each way over real sockets in a network
// namespace whose loopback has a 1300-byte MTU (as a VPN or tunnel path
// has), with the default config: datagrams start at 1200 bytes and path MTU
// discovery settles within 16 bytes below the 1272 bytes of UDP payload
// the path carries (IPv4). Before it every data packet was 1400 bytes and
// the transfer hung after the handshake (rudpcat: 5,224 bytes of 1 MiB).
// The search may end after the transfer: each of its steps waits for loss
// detection to declare a size's probes lost, and on a loaded machine the
// RTT estimate that paces it grows to tens of milliseconds (the listener
// finished 553 ms after Dial, the transfer in 541 ms), so the test waits up
// to pmtuSettleWait after the transfer for both sizes to settle.
// It needs root (a namespace of its own) and skips without it.
func TestPathMTUNetns(t *testing.T) { pmtuNetns(t, "TestPathMTUNetns", 1300) }

// TestPathMTUFollowsRouteNetns is TestPathMTUNetns over a jumbo-frame path
// (a 9000-byte loopback MTU): with MaxDatagramSize left 0 the ceiling
// follows the route, so both sides settle at the 8972 bytes the path
// carries, where the fixed 1452-byte default stopped them before.
func TestPathMTUFollowsRouteNetns(t *testing.T) {
	pmtuNetns(t, "TestPathMTUFollowsRouteNetns", 9000)
}

// pmtuNetns runs test (TestPathMTUNetns or alike) again in a network
// namespace whose loopback MTU is mtu, where it does pmtuNetnsTransfer.
func pmtuNetns(t *testing.T, test string, mtu int) {
	if os.Getenv(pmtuNetnsEnv) != "" {
		pmtuNetnsTransfer(t, mtu)
		return
	}
	if os.Geteuid() != 0 {
		t.Skipf("needs root: it creates a network namespace with a %d-byte loopback MTU", mtu)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs the ip command (iproute2) to create a network namespace")
	}
	ns := fmt.Sprintf("rudp-pmtu-%d", os.Getpid())
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v: %s", err, out)
	}
	defer func() { _ = exec.Command(ip, "netns", "del", ns).Run() }()
	out, err := exec.Command(ip, "netns", "exec", ns, ip, "link", "set", "lo", "up", "mtu", fmt.Sprint(mtu)).CombinedOutput()
	require.NoError(t, err, "setting the namespace's loopback MTU: %s", out)

	cmd := exec.Command(ip, "netns", "exec", ns, os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), pmtuNetnsEnv+"=1")
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "the transfer in the namespace:\n%s", out)
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "pmtu:"); i >= 0 {
			t.Log(strings.TrimSpace(line[i+len("pmtu:"):]))
		}
	}
}

// pmtuNetnsTransfer runs in the namespace, whose loopback MTU is mtu.
func pmtuNetnsTransfer(t *testing.T, mtu int) {
	carried := mtu - 20 - 8 // IPv4 and UDP headers
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer ln.Close()
	start := time.Now()
	c, err := rudp.Dial("udp4", ln.Addr().String(), nil)
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.AcceptRUDP()
	require.NoError(t, err)
	defer s.Close()
	deadline := time.Now().Add(20 * time.Second)
	require.NoError(t, c.SetDeadline(deadline))
	require.NoError(t, s.SetDeadline(deadline))

	// Note when each side's datagram size changed while the data moves, and
	// after it until both settled within the search's granularity below
	// what the path carries (or pmtuSettleWait passed).
	type change struct {
		size int
		at   time.Duration
	}
	settled := func(size int) bool { return size <= carried && size > carried-16 }
	var last [2]change
	var history [2][]change
	transferred := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		moving, giveUp := transferred, (<-chan time.Time)(nil)
		for {
			for i, conn := range []*rudp.Conn{c, s} {
				if d := conn.Stats().DatagramSize; d != last[i].size {
					last[i] = change{d, time.Since(start)}
					history[i] = append(history[i], last[i])
				}
			}
			if moving == nil && settled(last[0].size) && settled(last[1].size) {
				return
			}
			select {
			case <-moving:
				moving, giveUp = nil, time.After(pmtuSettleWait)
			case <-giveUp:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	back := make(chan error, 1)
	go func() { back <- writeRead(s, c, randBytes(4<<20)) }()
	err = writeRead(c, s, randBytes(4<<20))
	elapsed := time.Since(start)
	close(transferred)
	<-watched
	require.NoError(t, err, "dialer to listener: stats %+v", c.Stats())
	require.NoError(t, <-back, "listener to dialer: stats %+v", s.Stats())
	for i, name := range []string{"dialer", "listener"} {
		got := last[i].size
		require.True(t, settled(got), "%s at %d bytes %v after the transfer, the path carries %d; sizes %v", name, got, pmtuSettleWait, carried, history[i])
		t.Logf("pmtu: %s settled at %d bytes (path carries %d) %v after Dial; 4 MiB each way in %v",
			name, got, carried, last[i].at.Round(time.Microsecond), elapsed.Round(time.Millisecond))
	}
}
