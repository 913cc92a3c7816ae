package rudp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/rudp-go/rudp/core"
)

// Failing fast (docs/PROTOCOL.md §14). The socket's core.Endpoint answers
// a data packet for a connection it does not know with a stateless reset,
// and routes a reset it receives to the connection it names by the peer's
// connection ID; this file reads the ICMP errors the kernel reports
// (Linux: IP_RECVERR) and passes a port unreachable to the connection
// whose packet it quotes (the Endpoint finds it). The protocol's rules
// (what a reset must echo, what a report does to a connection) are the
// core's; this file only moves them.

// Stateless resets a socket sends, and ICMP reports it handles, are
// bounded by token buckets: an unauthenticated sender can make a socket
// do at most this much work and send at most resetRate small datagrams
// (ResetLen bytes, or TokenResetLen answering a protected packet, each
// smaller than or as long as the datagram it answers) a second.
const (
	resetRate   = 1000
	resetBurst  = 100
	reportRate  = 1000
	reportBurst = 100
)

// learnRemote tells the Endpoint c's peer's connection ID, which
// stateless resets echo (c.mu held).
func (m *mux) learnRemote(c *Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.registered {
		m.ep.Update(c.core)
	}
}

// socketError handles an error a read of the socket returned: an ICMP
// report, whose details wait in the kernel's error queue. It reports
// whether it was one (the reader need not pause then).
func (m *mux) socketError(err error) bool {
	if !isReportErr(err) {
		return false
	}
	m.handleErrQueue(monoNow())
	return true
}

// sendFailed notes a send that failed with the socket's pending error (an
// ICMP report): the sender holds its connection's lock, so the socket's
// timer (Manual mode: the next pump) reads the error queue.
func (m *mux) sendFailed(err error) {
	if !isReportErr(err) || m.errPending.Swap(true) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.timers.fireNow() // (Manual mode: the next pump)
}

// isReportErr reports whether err is one an ICMP report makes a socket
// call fail with.
func isReportErr(err error) bool {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTDOWN)
}

// handleErrQueue reads the ICMP reports queued on the socket and passes
// each port unreachable, within the rate limit, to the connection whose
// packet it quotes, if that connection's peer is where the packet went.
func (m *mux) handleErrQueue(now time.Time) {
	m.readErrQueue(func(dst netip.AddrPort, quote []byte) {
		q, ok := core.ParseQuoted(quote)
		if !ok {
			return // a quote that names no connection of ours
		}
		m.mu.Lock()
		if !m.reports.Allow(now) {
			m.mu.Unlock()
			return
		}
		var c *Conn
		if cc := m.ep.QuotedConn(q); cc != nil {
			c = m.conns[cc.LocalCID()]
		}
		m.mu.Unlock()
		if c != nil {
			c.unreachable(now, unmap(dst))
		}
	})
}

// unreachable passes a port-unreachable report about dst to c.
func (c *Conn) unreachable(now time.Time, dst netip.AddrPort) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.raddr != dst {
		return
	}
	c.core.HandleUnreachable(now)
	c.settleLocked(now)
	c.wakeLocked()
}
