package rudp

import (
	"errors"
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
// recovery repairs. A send that failed with a pending ICMP report's error
// (see reportRetries) is made again.
func (u *udpSocket) writeTo(b []byte, to netip.AddrPort) {
	for try := 0; ; try++ {
		_, err := u.sock.WriteToUDPAddrPort(b, to)
		if err == nil {
			return
		}
		u.failed(err)
		if try == reportRetries || !isPendingReport(err) {
			return
		}
	}
}

// reportRetries is how many times a send that failed with an ICMP report's
// error is made again. Such a failure is almost never about the datagram
// being sent: with IP_RECVERR on (failfast.go), Linux keeps the error of
// every ICMP report the socket receives, about any datagram to any peer,
// as the socket's pending error (sk_err), and the next send on the socket
// fails with it, and clears it, without sending its datagram. A listener
// whose closing connections sent to a client port already closed would
// otherwise lose the next datagram it sends to anyone: a new client's
// Retry or HELLO, repaired only by a 300 ms retransmission (the dial
// stalls of issue 12). A second attempt sends it; an error that is the
// datagram's own (a route refusing it) fails again and ends the tries.
const reportRetries = 2

// isPendingReport reports whether a failed send's error is one an ICMP
// report can leave pending on the socket (Linux's icmp_err_convert and
// icmpv6_err_convert): the send may have failed for an earlier datagram.
func isPendingReport(err error) bool {
	return isReportErr(err) || errors.Is(err, syscall.EMSGSIZE) || errors.Is(err, syscall.EPROTO) ||
		errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EACCES)
}
