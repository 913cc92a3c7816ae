//go:build unix

package rudp

import (
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// readNonBlocking reads one datagram if one is ready, without blocking
// (Manual mode). A past read deadline would not do: package net then fails
// the read before trying it.
func readNonBlocking(raw syscall.RawConn, buf []byte) (int, netip.AddrPort, error) {
	var (
		n    int
		from unix.Sockaddr
		rerr error
	)
	err := raw.Read(func(fd uintptr) bool {
		n, from, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
		return true // never wait for readiness
	})
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if rerr != nil {
		return 0, netip.AddrPort{}, rerr
	}
	switch sa := from.(type) {
	case *unix.SockaddrInet4:
		return n, netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		return n, netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)), nil
	}
	return 0, netip.AddrPort{}, net.UnknownNetworkError("unexpected socket address")
}

// connectUDP connects sock to peer, so that the kernel routes datagrams
// sent without an address (mux.peer) once, and delivers only the peer's.
// false: the socket stays unconnected.
func connectUDP(sock *net.UDPConn, peer netip.AddrPort) bool {
	raw, err := sock.SyscallConn()
	if err != nil {
		return false
	}
	var sa unix.Sockaddr
	if la, ok := sock.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil {
		sa = &unix.SockaddrInet6{Port: int(peer.Port()), Addr: peer.Addr().As16()} // IPv4 as mapped
	} else if peer.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(peer.Port()), Addr: peer.Addr().As4()}
	} else {
		return false
	}
	var cerr error
	if err := raw.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err != nil {
		return false
	}
	return cerr == nil
}
