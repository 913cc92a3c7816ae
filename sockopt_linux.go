package rudp

import (
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/rudp-go/rudp/core"
)

// setDontFragment makes the kernel send every datagram unfragmented and
// never cut one to a path MTU it learnt from ICMP (IP_PMTUDISC_PROBE): the
// core's path MTU discovery (DPLPMTUD) then learns what the path carries
// from what arrives. A datagram larger than the interface's MTU fails to
// send (EMSGSIZE) and counts as lost, as a probe too large should. Failing
// leaves the kernel's default (fragmentation where needed): probes then
// succeed as fragments, which costs only efficiency, so errors are ignored.
func setDontFragment(sock *net.UDPConn) {
	raw, err := sock.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		// Both: an IPv6 socket may carry IPv4 (mapped addresses).
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE)
	})
}

// setSocketBuffers asks for size-byte kernel send and receive buffers.
// SO_RCVBUFFORCE and SO_SNDBUFFORCE pass the net.core.rmem_max and
// wmem_max limits but need CAP_NET_ADMIN; without it the plain options get
// what those limits allow. Failing only costs throughput, so errors are
// ignored.
func setSocketBuffers(sock *net.UDPConn, size int) {
	raw, err := sock.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size)
		}
	})
}

// routeCeilings: whether routeDatagramCeiling asks the kernel (see
// Config.MaxDatagramSize).
const routeCeilings = true

// routeDatagramCeiling returns the largest UDP payload the route to to
// carries unfragmented, as the kernel knows it: the MTU of the interface
// the route leaves by (or a smaller path MTU the kernel learnt for to),
// less the IP and UDP headers, at most core.MaxDatagramSizeLimit. It asks
// through a throwaway UDP socket connect()ed to to (a UDP connect sends
// nothing; it only picks the route) and IP_MTU or IPV6_MTU: four system
// calls, once per dial. 0 means unknown (no route, an error): the caller
// keeps the core's default. What it returns is only the ceiling of path MTU
// discovery, which confirms every size by probing.
func routeDatagramCeiling(to netip.AddrPort) int {
	a := to.Addr().Unmap()
	var (
		sa       unix.Sockaddr
		domain   int
		level    int
		opt      int
		overhead int // IP and UDP headers
	)
	if a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(to.Port()), Addr: a.As4()}
		domain, level, opt, overhead = unix.AF_INET, unix.IPPROTO_IP, unix.IP_MTU, 20+8
	} else {
		sa6 := &unix.SockaddrInet6{Port: int(to.Port()), Addr: a.As16()}
		if a.Zone() != "" {
			if ifi, err := net.InterfaceByName(a.Zone()); err == nil {
				sa6.ZoneId = uint32(ifi.Index)
			}
		}
		sa = sa6
		domain, level, opt, overhead = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_MTU, 40+8
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	if unix.Connect(fd, sa) != nil {
		return 0
	}
	mtu, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil || mtu-overhead < core.MinHelloDatagram {
		return 0
	}
	return min(mtu-overhead, core.MaxDatagramSizeLimit)
}
