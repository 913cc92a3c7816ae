package rudp

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rudp-go/rudp/core"
)

// Listener accepts rudp connections on one UDP socket, demultiplexed by
// connection ID. Its handshake is stateless until a client echoes a valid
// cookie, so spoofed HELLOs cost it no memory, and it never answers an
// unvalidated address with more than it received. Connections beyond
// Config.AcceptBacklog waiting in Accept are refused (the dialer gets
// ErrRefused). So that one host (an IPv4 address, an IPv6 /64) handshaking
// faster than the application accepts cannot fill the queue for everybody,
// once the queue is half full a host with a sixteenth of AcceptBacklog (at
// least 8) waiting already is refused more.
//
// A connection waiting in Accept gets a receive window of
// UnacceptedReceiveWindow (16 KiB: the mux's core.Endpoint caps it from
// its handshake on); Accept opens the full one. So the
// connections not yet accepted hold at most AcceptBacklog × (2 ×
// UnacceptedReceiveWindow for their messages and buffers, the 4 KiB
// receive arena, and their fixed state), whatever their peers send: about
// 17 KiB each was measured with peers sending 1 MiB at once, 17 MiB for a
// full default backlog of 1024. (With the full window, each held what its
// peer sent, up to 4 MiB and more: 4 GiB for the backlog.)
//
// With Config.Sockets, a Listener serves its port with several sockets,
// each with its own reader goroutine, timer and connections (see Sockets):
// Stats adds theirs up, ShardStats gives each.
//
// All methods are safe for concurrent use.
type Listener struct {
	m      *mux          // the first socket (the only one, unless sharded)
	shards []*mux        // every socket, m first
	next   atomic.Uint32 // the socket the next Dial goes through
	// queue holds the connections the handshake created, waiting for
	// Accept. Its bound (AcceptBacklog) and a host's share of it are the
	// mux's core.Endpoint's accept budget (EndpointConfig.AcceptBudget,
	// HostShare), which refuses the attempts beyond them.
	queue     chan *Conn
	closeOnce sync.Once
	closing   chan struct{}
}

// Listen listens on the UDP address ("udp", "udp4" or "udp6"). A nil cfg
// means defaults; its settings apply to every accepted connection.
func Listen(network, address string, cfg *Config) (*Listener, error) {
	set, socks, err := openSockets(network, address, cfg)
	if err != nil {
		return nil, err
	}
	l := &Listener{
		queue:   make(chan *Conn, set.backlog),
		closing: make(chan struct{}),
	}
	var group *socketGroup
	if len(socks) > 1 {
		group = &socketGroup{}
		group.busy.Store(int32(len(socks)))
	}
	for k, sock := range socks {
		m := newMuxServer(sock, set, 1, len(socks) == 1, set.shardServerID(k))
		m.mu.Lock()
		m.group = group
		m.acceptor = l
		m.ep.Listen()
		m.mu.Unlock()
		l.shards = append(l.shards, m)
	}
	if group != nil {
		group.muxes = l.shards
	}
	l.m = l.shards[0]
	return l, nil
}

// admit makes no room: a queued connection is not the Listener's to reclaim.
func (l *Listener) admit(time.Time, netip.AddrPort) {}

// UnacceptedReceiveWindow is the receive window of a connection waiting in
// Listener.Accept: the Delivery data its peer may send before the
// application accepts it (a message of more waits for Accept). None and
// Order messages may hold a quarter of it, each charged 256 bytes beyond
// its length: more are dropped (Stats.UnreliableDropped), so a burst of
// small messages sent before Accept loses its tail (the 15th 30-byte
// message). Once accepted, a connection has its full window. The mux's
// core.Endpoint applies it (its default
// EndpointConfig.UnacceptedReceiveWindow) and lifts it in Take.
const UnacceptedReceiveWindow = core.DefaultUnacceptedReceiveWindow

// offer queues a connection the handshake created for Accept (mux.mu
// held): the Endpoint's accept budget already left room for it (false only
// if connections that ended in the queue still fill it).
func (l *Listener) offer(_ time.Time, c *Conn) refusal {
	select {
	case l.queue <- c:
		return admitted
	default:
		return refusedBacklog
	}
}

// took follows c out of the accept queue: the mux's Endpoint gives its
// place in the accept budget back and opens its full receive window (the
// credit goes out at once).
func (l *Listener) took(c *Conn) *Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := monoNow()
	c.m.mu.Lock()
	c.m.ep.Take(now, c.core)
	c.m.mu.Unlock()
	c.settleLocked(now)
	return c
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
			return l.took(c), nil
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
			return l.took(c), nil
		case <-l.closing:
		}
	}
}

// Dial connects to address through the listener's socket; see DialContext.
func (l *Listener) Dial(network, address string) (*Conn, error) {
	return l.DialContext(context.Background(), network, address)
}

// DialContext connects to address ("udp", "udp4" or "udp6") through the
// listener's socket, with the listener's Config, and returns once the
// handshake completed, as DialContext does. Connections dialed so share
// the socket, its reader goroutine and its timer with each other and with
// the accepted ones: a dialed connection then costs what an accepted one
// does, not a socket and a goroutine of its own. A client that dials many
// connections and accepts none may use a Listener only for this (peers
// that dial it are queued for Accept, and refused once AcceptBacklog are
// waiting). Dialed connections, like accepted ones, stay open when the
// Listener is closed, but none can be dialed after.
func (l *Listener) DialContext(ctx context.Context, network, address string) (*Conn, error) {
	return l.dial(ctx, network, address, nil)
}

func (l *Listener) dial(ctx context.Context, network, address string, r *net.Resolver) (*Conn, error) {
	fail := func(raddr net.Addr, err error) (*Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Source: l.m.laddr, Addr: raddr, Err: err}
	}
	to, err := resolveUDP(ctx, r, network, address)
	if err != nil {
		return fail(nil, err)
	}
	raddr := net.UDPAddrFromAddrPort(to)
	if la, ok := l.m.laddr.(*net.UDPAddr); ok && la.IP.To4() != nil && !to.Addr().Is4() {
		return fail(raddr, &net.AddrError{Err: "IPv6 address on an IPv4 listener", Addr: to.Addr().String()})
	}
	select {
	case <-l.closing:
		return fail(raddr, net.ErrClosed)
	default:
	}
	// A sharded Listener dials through its sockets in turn: the replies
	// come back to the one that dialed (its connection IDs carry its
	// server ID).
	m := l.shards[int(l.next.Add(1)-1)%len(l.shards)]
	c, err := m.dial(monoNow(), to, nil, dialHost(address))
	if err != nil {
		return fail(raddr, err)
	}
	if err := c.awaitHandshake(ctx, l.m.set.core.HandshakeTimeout); err != nil {
		c.abandon()
		return fail(raddr, err)
	}
	return c, nil
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
	for _, m := range l.shards {
		m.mu.Lock()
		m.acceptor = nil
		m.ep.Refuse()
		m.mu.Unlock()
	}
	for {
		select {
		case c := <-l.queue:
			l.took(c).closeAsync() // nobody waits: the application never had it
			continue
		default:
		}
		break
	}
	for _, m := range l.shards {
		m.release()
	}
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

// openSockets validates cfg and network and opens the UDP sockets a
// Listener serves on: Config.Sockets sharing the port (listenSharded), or
// one; errors are *net.OpError with Op "listen".
func openSockets(network, address string, cfg *Config) (*settings, []*net.UDPConn, error) {
	set, laddr, err := resolveListen(network, address, cfg)
	var socks []*net.UDPConn
	if err == nil && set.sockets > 0 {
		socks, err = listenSharded(network, laddr, set.sockets, len(set.shardServerID(0)))
	} else if err == nil {
		var sock *net.UDPConn
		sock, err = listenUDP(network, laddr)
		socks = []*net.UDPConn{sock}
	}
	if err != nil {
		return nil, nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	return set, socks, nil
}

// openSocket opens the one UDP socket a PacketConn serves on, as
// openSockets does a Listener's (Config.Sockets does not apply).
func openSocket(network, address string, cfg *Config) (*settings, *net.UDPConn, error) {
	set, laddr, err := resolveListen(network, address, cfg)
	var sock *net.UDPConn
	if err == nil {
		sock, err = listenUDP(network, laddr)
	}
	if err != nil {
		return nil, nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	return set, sock, nil
}

// resolveListen validates cfg, network and address for a Listener or a
// PacketConn.
func resolveListen(network, address string, cfg *Config) (*settings, *net.UDPAddr, error) {
	set, err := cfg.resolve()
	if err != nil {
		return nil, nil, err
	}
	if err := checkNetwork(network); err != nil {
		return nil, nil, err
	}
	laddr, err := net.ResolveUDPAddr(network, address)
	if err != nil {
		return nil, nil, err
	}
	return set, laddr, nil
}
