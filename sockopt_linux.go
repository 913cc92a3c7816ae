package rudp

import (
	"net"

	"golang.org/x/sys/unix"
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
