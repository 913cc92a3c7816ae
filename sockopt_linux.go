package rudp

import (
	"net"

	"golang.org/x/sys/unix"
)

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
