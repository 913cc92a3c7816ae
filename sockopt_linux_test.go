package rudp

import (
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
)

// loopbackCeiling is the UDP payload the loopback interface carries for an
// address family's headers, from its MTU in sysfs, at most the core's limit.
func loopbackCeiling(t *testing.T, headers int) int {
	b, err := os.ReadFile("/sys/class/net/lo/mtu")
	if err != nil {
		t.Skipf("no loopback MTU in sysfs: %v", err)
	}
	mtu, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return min(mtu-headers, core.MaxDatagramSizeLimit)
}

// TestRouteDatagramCeiling: the route's ceiling is the interface's MTU less
// the IP and UDP headers, capped at the core's limit (loopback's 65536-byte
// MTU carries more than an IPv4 UDP datagram can hold), for either family,
// and unknown (0) where there is no route.
func TestRouteDatagramCeiling(t *testing.T) {
	require.Equal(t, loopbackCeiling(t, 28), routeDatagramCeiling(netip.MustParseAddrPort("127.0.0.1:9")))
	require.Equal(t, loopbackCeiling(t, 28), routeDatagramCeiling(netip.MustParseAddrPort("[::ffff:127.0.0.1]:9")), "a mapped address is IPv4's")
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err == nil {
		c.Close()
		require.Equal(t, loopbackCeiling(t, 48), routeDatagramCeiling(netip.MustParseAddrPort("[::1]:9")))
	}
}

// TestDatagramSizeFollowsRoute: with MaxDatagramSize left 0, a dialer and
// its listener over loopback grow their datagrams to what loopback carries
// (65507 bytes of UDP payload over IPv4), not to the 1452 bytes of the
// core's default, which stopped them before; both advertise it.
// MaxDatagramSize set, or batch I/O off, keep the fixed ceiling.
func TestDatagramSizeFollowsRoute(t *testing.T) {
	want := loopbackCeiling(t, 28)
	for _, tc := range []struct {
		name string
		cfg  *Config
		want int
	}{
		{"default", nil, want},
		{"set", &Config{MaxDatagramSize: 9000}, 9000},
		{"core-set", &Config{Core: &core.Config{MaxDatagramSize: 4000}}, 4000},
		{"no-batch", &Config{DisableBatchIO: true}, core.DefaultMaxDatagramSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := Listen("udp4", "127.0.0.1:0", tc.cfg)
			require.NoError(t, err)
			defer ln.Close()
			c, err := Dial("udp4", ln.Addr().String(), tc.cfg)
			require.NoError(t, err)
			defer c.Close()
			s, err := ln.AcceptRUDP()
			require.NoError(t, err)
			defer s.Close()
			// Data each way keeps the probes going; wait for both sizes.
			data := make([]byte, 256<<10)
			buf := make([]byte, len(data))
			deadline := time.Now().Add(20 * time.Second)
			require.NoError(t, c.SetDeadline(deadline))
			require.NoError(t, s.SetDeadline(deadline))
			for c.Stats().DatagramSize != tc.want || s.Stats().DatagramSize != tc.want {
				require.True(t, time.Now().Before(deadline), "datagram sizes %d and %d, want %d",
					c.Stats().DatagramSize, s.Stats().DatagramSize, tc.want)
				for _, p := range [][2]*Conn{{c, s}, {s, c}} {
					_, err := p[0].Write(data)
					require.NoError(t, err)
					_, err = io.ReadFull(p[1], buf)
					require.NoError(t, err)
				}
			}
		})
	}
}

// TestRouteCacheKeeps: a dial asks the route's ceiling once per
// destination address in routeCacheTTL (the port and a mapped form are the
// same address), asks again after it, and the cache holds at most
// routeCacheMax addresses.
func TestRouteCacheKeeps(t *testing.T) {
	var r routeCache
	asked := map[netip.Addr]int{}
	ask := func(to netip.AddrPort) int {
		asked[to.Addr().Unmap()]++
		return 1000 + int(to.Addr().Unmap().As4()[3])
	}
	now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	a := netip.MustParseAddrPort("10.0.0.1:1000")
	require.Equal(t, 1001, r.ceiling(a, now, ask))
	require.Equal(t, 1001, r.ceiling(netip.MustParseAddrPort("10.0.0.1:2000"), now.Add(routeCacheTTL/2), ask))
	require.Equal(t, 1001, r.ceiling(netip.MustParseAddrPort("[::ffff:10.0.0.1]:3000"), now.Add(routeCacheTTL/2), ask))
	require.Equal(t, 1, asked[a.Addr()], "asked again within the TTL")
	require.Equal(t, 1002, r.ceiling(netip.MustParseAddrPort("10.0.0.2:1000"), now, ask))
	require.Equal(t, 1001, r.ceiling(a, now.Add(routeCacheTTL), ask))
	require.Equal(t, 2, asked[a.Addr()], "not asked again after the TTL")
	for i := range 3 * routeCacheMax {
		b := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		r.ceiling(netip.AddrPortFrom(b, 1), now, ask)
		require.LessOrEqual(t, len(r.m), routeCacheMax)
	}
}
