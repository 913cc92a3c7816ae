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
