package rudp

import (
	"net/netip"
	"testing"
)

// TestHostOf: a peer's host is its IPv4 address (also when a dual-stack
// socket reports it IPv4-mapped) or its IPv6 /64, without a zone; the
// port never matters.
func TestHostOf(t *testing.T) {
	for _, tc := range []struct{ addr, host string }{
		{"192.0.2.7:1", "192.0.2.7"},
		{"192.0.2.7:65535", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:9", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:9", "2001:db8:1:2::"},
		{"[2001:db8:1:2:ffff:ffff:ffff:ffff]:10", "2001:db8:1:2::"},
		{"[fe80::1%eth0]:9", "fe80::"},
	} {
		if got := hostOf(netip.MustParseAddrPort(tc.addr)); got != netip.MustParseAddr(tc.host) {
			t.Errorf("hostOf(%s) = %v, want %s", tc.addr, got, tc.host)
		}
	}
	if hostOf(netip.MustParseAddrPort("[2001:db8:1:2::1]:1")) == hostOf(netip.MustParseAddrPort("[2001:db8:1:3::1]:1")) {
		t.Error("two /64s are one host")
	}
}

// TestDefaultHostShare: a sixteenth of MaxPeers, at least 8, at most MaxPeers.
func TestDefaultHostShare(t *testing.T) {
	for maxPeers, want := range map[int]int{1: 1, 4: 4, 8: 8, 64: 8, 128: 8, 256: 16, 4096: 256} {
		if got := defaultHostShare(maxPeers); got != want {
			t.Errorf("defaultHostShare(%d) = %d, want %d", maxPeers, got, want)
		}
	}
}
