//go:build !linux

package rudp

import "net"

// setSocketBuffers asks for size-byte kernel send and receive buffers;
// failing only costs throughput, so errors are ignored.
func setSocketBuffers(sock *net.UDPConn, size int) {
	_ = sock.SetReadBuffer(size)
	_ = sock.SetWriteBuffer(size)
}
