package rudp

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// enableErrQueue asks the kernel to queue the ICMP errors about what the
// socket sends (IP_RECVERR, IPV6_RECVERR): without it an unconnected UDP
// socket hears none of them. A kernel that refuses only costs the reports.
func (u *udpSocket) enableErrQueue() {
	if u.raw == nil {
		return
	}
	_ = u.raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		if domain, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil && domain == unix.AF_INET6 {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
		}
	})
}

// maxReportsPerRead bounds the error-queue entries one call reads; the
// rest wait for the next (the kernel bounds the queue by the receive
// buffer).
const maxReportsPerRead = 64

// sockExtendedErrLen is the size of struct sock_extended_err.
const sockExtendedErrLen = 16

// readErrQueue reads the socket's error queue (MSG_ERRQUEUE) without
// waiting and calls port for each ICMP or ICMPv6 port unreachable: the
// destination of the datagram it reports on, and the start of that
// datagram as the ICMP error quoted it.
func (u *udpSocket) readErrQueue(port func(dst netip.AddrPort, quote []byte)) {
	if u.raw == nil {
		return
	}
	var quote [64]byte
	var oob [256]byte
	type report struct {
		dst netip.AddrPort
		n   int
		q   [64]byte
	}
	var got []report
	_ = u.raw.Control(func(fd uintptr) {
		for range maxReportsPerRead {
			n, oobn, flags, from, err := unix.Recvmsg(int(fd), quote[:], oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return // EAGAIN: the queue is empty
			}
			if flags&unix.MSG_CTRUNC != 0 || !portUnreachable(oob[:oobn]) {
				continue
			}
			var dst netip.AddrPort
			switch sa := from.(type) {
			case *unix.SockaddrInet4:
				dst = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
			case *unix.SockaddrInet6:
				dst = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
			default:
				continue
			}
			r := report{dst: dst, n: n}
			copy(r.q[:], quote[:n])
			got = append(got, r)
		}
	})
	for i := range got {
		port(got[i].dst, got[i].q[:got[i].n])
	}
}

// portUnreachable reports whether the control messages of an error-queue
// entry describe an ICMP or ICMPv6 port unreachable.
func portUnreachable(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, msg := range msgs {
		h := msg.Header
		if !(h.Level == unix.IPPROTO_IP && h.Type == unix.IP_RECVERR) && !(h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_RECVERR) {
			continue
		}
		if len(msg.Data) < sockExtendedErrLen {
			continue
		}
		errno := binary.NativeEndian.Uint32(msg.Data[0:4])
		origin := msg.Data[4]
		if (origin == unix.SO_EE_ORIGIN_ICMP || origin == unix.SO_EE_ORIGIN_ICMP6) && errno == uint32(unix.ECONNREFUSED) {
			return true
		}
	}
	return false
}
