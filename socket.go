package rudp

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
)

// maxUDPPayload is the largest datagram a UDP socket can deliver.
const maxUDPPayload = 65535

// socketBufferSize is the kernel send and receive buffer asked for on every
// socket: a limit, not memory held by an idle socket.
const socketBufferSize = 4 << 20

// udpSocket is a mux's UDP socket and the platform's I/O on it: the one
// interface between the mux and the platform code. Each platform provides
// its methods in build-tagged files:
//
//	initIO, receive, send               batch_linux.go (recvmmsg, sendmmsg, GSO, GRO), batch_other.go (one datagram per call)
//	enableErrQueue, readErrQueue        icmp_linux.go (IP_RECVERR: ICMP reports), icmp_other.go (none)
//	readNonBlocking                     read_unix.go, read_other.go (Manual mode's read)
//	setDontFragment, setSocketBuffers   sockopt_linux.go, sockopt_other.go (listenUDP)
//
// with the portable parts in batch.go (the batches and their pools,
// receiveOne, sendEach) and here (listenUDP, writeTo). The mux embeds it.
//
// The send side (send, writeTo) is safe for concurrent use; the receive
// side (receive and the rx fields) belongs to whoever reads the socket
// (see readOwner; in Manual mode, whoever holds mux.pumpMu).
type udpSocket struct {
	sock   *net.UDPConn
	raw    syscall.RawConn
	laddr  net.Addr
	set    *settings
	failed func(error) // a send failed: an ICMP report may explain it (mux.sendFailed)
	sys    muxSys      // the platform's batch I/O state

	txBatches *sync.Pool  // the batches flushes borrow, so that an idle connection owns no send buffer
	txBatched atomic.Bool // sendmmsg
	gso       atomic.Bool // UDP GSO

	rxBatched bool       // recvmmsg
	rxGRO     bool       // UDP GRO: a received buffer may hold coalesced datagrams
	rxSize    int        // the longest datagram (or GRO buffer) the receive buffers take
	rxPool    *sync.Pool // receive batches, borrowed for one read
	// rxLonePool: batches of one buffer, for a read that expects a lone
	// datagram (request-response traffic, muxSys.rxOne): it borrows
	// rxSize bytes, not rxBatchBytes.
	rxLonePool *sync.Pool
}

// listenUDP opens the socket of a Listener, PacketConn or Dial.
func listenUDP(network string, laddr *net.UDPAddr) (*net.UDPConn, error) {
	sock, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	// Bursts of a fast sender need more than the default buffers.
	setSocketBuffers(sock, socketBufferSize)
	setDontFragment(sock)
	return sock, nil
}

// writeTo sends one datagram; a failed send is a lost datagram, which
// recovery repairs.
func (u *udpSocket) writeTo(b []byte, to netip.AddrPort) {
	if _, err := u.sock.WriteToUDPAddrPort(b, to); err != nil {
		u.failed(err)
	}
}
