package rudp

import (
	"net"
	"net/netip"
	"sync"
)

// Listener accepts rudp connections on one UDP socket, demultiplexed by
// connection ID. Its handshake is stateless until a client echoes a valid
// cookie, so spoofed HELLOs cost it no memory, and it never answers an
// unvalidated address with more than it received. Connections beyond
// Config.AcceptBacklog waiting in Accept are refused (the dialer gets
// ErrRefused).
//
// All methods are safe for concurrent use.
type Listener struct {
	m         *mux
	queue     chan *Conn // accepted by the handshake, waiting for Accept
	closeOnce sync.Once
	closing   chan struct{}
}

// Listen listens on the UDP address ("udp", "udp4" or "udp6"). A nil cfg
// means defaults; its settings apply to every accepted connection.
func Listen(network, address string, cfg *Config) (*Listener, error) {
	set, sock, err := openSocket(network, address, cfg)
	if err != nil {
		return nil, err
	}
	l := &Listener{
		queue:   make(chan *Conn, set.backlog),
		closing: make(chan struct{}),
	}
	l.m = newMux(sock, set, 1, true, netip.AddrPort{})
	l.m.mu.Lock()
	l.m.acceptor = l
	l.m.mu.Unlock()
	return l, nil
}

// offer queues an accepted connection for Accept; false when the queue is full.
func (l *Listener) offer(c *Conn) bool {
	select {
	case l.queue <- c:
		return true
	default:
		return false
	}
}

// Accept waits for the next connection; its dynamic type is *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptRUDP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptRUDP is Accept returning the *Conn.
func (l *Listener) AcceptRUDP() (*Conn, error) {
	w := waiter{m: l.m, closing: l.closing}
	defer w.stop()
	for {
		select {
		case c := <-l.queue:
			return c, nil
		default:
		}
		select {
		case <-l.closing:
			return nil, &net.OpError{Op: "accept", Net: "udp", Addr: l.m.laddr, Err: net.ErrClosed}
		default:
		}
		if l.m.set.manual {
			w.wait(nil, &noDeadline)
			continue
		}
		select {
		case c := <-l.queue:
			return c, nil
		case <-l.closing:
		}
	}
}

// Addr returns the listener's local address.
func (l *Listener) Addr() net.Addr { return l.m.laddr }

// Close stops accepting: blocked and later Accept calls return
// net.ErrClosed and new clients are refused (their Dial fails with
// ErrRefused).
//
// Connections already returned by Accept stay open, as with
// net.TCPListener: they belong to the application, which closes them.
// http.Server.Shutdown relies on this: it closes the listener first, then
// lets the requests in flight finish on their connections. The socket
// stays open for them and is closed when the last one ends.
//
// Connections the handshake completed but Accept has not yet returned
// (the queue) are closed gracefully: their clients read io.EOF, not a
// silence lasting until the idle timeout. In Manual mode keep calling Pump
// (the Listener's or an accepted connection's) until it returns
// net.ErrClosed, so that those closes complete.
func (l *Listener) Close() error {
	first := false
	l.closeOnce.Do(func() {
		first = true
		close(l.closing)
	})
	if !first {
		return &net.OpError{Op: "close", Net: "udp", Addr: l.m.laddr, Err: net.ErrClosed}
	}
	l.m.mu.Lock()
	l.m.acceptor = nil
	l.m.refuse = true
	l.m.mu.Unlock()
	for {
		select {
		case c := <-l.queue:
			_ = c.Close()
			continue
		default:
		}
		break
	}
	l.m.release()
	return nil
}

// Pump does the listener's due work now and never blocks (Manual mode):
// it reads the datagrams ready on the socket, for every connection on it,
// fires due timers and sends what they make ready. It returns
// net.ErrClosed once the socket is closed. In default mode it does nothing.
func (l *Listener) Pump() error {
	if !l.m.set.manual {
		return nil
	}
	if err := l.m.pump(); err != nil {
		return &net.OpError{Op: "pump", Net: "udp", Addr: l.m.laddr, Err: err}
	}
	return nil
}

// openSocket validates cfg and network and opens the UDP socket a Listener
// or PacketConn serves on; errors are *net.OpError with Op "listen".
func openSocket(network, address string, cfg *Config) (*settings, *net.UDPConn, error) {
	fail := func(err error) (*settings, *net.UDPConn, error) {
		return nil, nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	set, err := cfg.resolve()
	if err != nil {
		return fail(err)
	}
	if err := checkNetwork(network); err != nil {
		return fail(err)
	}
	laddr, err := net.ResolveUDPAddr(network, address)
	if err != nil {
		return fail(err)
	}
	sock, err := listenUDP(network, laddr)
	if err != nil {
		return fail(err)
	}
	return set, sock, nil
}
