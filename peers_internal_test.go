package rudp

import (
	"net/netip"
	"testing"
	"time"
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

// BenchmarkPeerTableVictim: what admitting a new peer costs a PacketConn
// whose table (4,096 peers of 16 hosts, none idle) is full: a host at its
// share scans its own 256 peers; a new host scans the whole table once per
// quiet period (calmUntil), here every time.
func BenchmarkPeerTableVictim(b *testing.B) {
	now := monoNow()
	t := &peerTable{maxPeers: 4096, hostShare: 256, idleAfter: 15 * time.Second, hosts: map[netip.Addr]*hostPeers{}}
	for i := range 4096 {
		c := &Conn{slot: -1}
		c.touch(now)
		t.add(c, netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 16)}))
	}
	b.Run("host-full", func(b *testing.B) {
		host := netip.AddrFrom4([4]byte{192, 0, 2, 0})
		for b.Loop() {
			if t.victim(host, now) != nil {
				b.Fatal("a busy peer was chosen")
			}
		}
	})
	b.Run("table-full", func(b *testing.B) {
		host := netip.AddrFrom4([4]byte{198, 51, 100, 1})
		for b.Loop() {
			t.calmUntil = time.Time{}
			if t.victim(host, now) != nil {
				b.Fatal("a busy peer was chosen")
			}
		}
	})
}

// TestReadyQueueTakesHostsInTurn: one connection of each host in turn;
// within a host, its connections in turn; a connection queued again goes
// behind its host's others. A message's turn allocates nothing.
func TestReadyQueueTakesHostsInTurn(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	conn := func(name string, host netip.Addr) *Conn {
		return &Conn{host: host, raddr: netip.MustParseAddrPort(name)}
	}
	a1, a2, a3 := conn("192.0.2.1:1", a), conn("192.0.2.1:2", a), conn("192.0.2.1:3", a)
	b1 := conn("192.0.2.2:1", b)
	var q readyQueue
	for _, c := range []*Conn{a1, a2, a3, b1} {
		q.push(c)
	}
	var got []*Conn
	for c := q.pop(); c != nil; c = q.pop() {
		got = append(got, c)
		if c == a1 && len(got) == 1 {
			q.push(a1) // still readable: behind a2 and a3
		}
	}
	want := []*Conn{a1, b1, a2, a3, a1}
	if len(got) != len(want) {
		t.Fatalf("popped %d connections, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pop %d: %v, want %v", i, got[i].raddr, want[i].raddr)
		}
	}
	if len(q.hosts) != 0 || q.first != nil || q.last != nil {
		t.Fatal("an empty queue still holds hosts")
	}
	if n := testing.AllocsPerRun(100, func() {
		q.push(a1)
		q.push(b1)
		q.pop()
		q.pop()
	}); n != 0 {
		t.Errorf("a turn allocates %v times", n)
	}
}
