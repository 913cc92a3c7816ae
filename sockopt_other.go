//go:build !linux

package rudp

import (
	"net"
	"net/netip"
)

// setDontFragment does nothing here: the kernel's default applies, and a
// probe larger than the path's MTU may arrive as IP fragments (the search
// then settles higher than the path's MTU, at a cost in efficiency only).
func setDontFragment(*net.UDPConn) {}

// setSocketBuffers asks for size-byte kernel send and receive buffers;
// failing only costs throughput, so errors are ignored.
func setSocketBuffers(sock *net.UDPConn, size int) {
	_ = sock.SetReadBuffer(size)
	_ = sock.SetWriteBuffer(size)
}

// routeCeilings: whether routeDatagramCeiling asks the kernel. Not here: a
// Config that leaves MaxDatagramSize 0 keeps the core's default (1452).
const routeCeilings = false

// routeDatagramCeiling is unknown here (see routeCeilings).
func routeDatagramCeiling(netip.AddrPort) int { return 0 }
