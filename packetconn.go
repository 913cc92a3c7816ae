package rudp

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rudp-go/rudp/core"
)

// PacketConn is a net.PacketConn over rudp: WriteTo sends one message to a
// peer with Config.Guarantee (Delivery by default), setting up a connection
// to it on first use; ReadFrom returns one whole message from any peer.
// ReadFrom takes the hosts with messages waiting in turn, one message each,
// so a host with many connections is read no more often than one with one.
//
// Peers that dial it (with WriteTo from their PacketConn, or with Dial) are
// accepted on the same socket, up to Config.MaxPeers connections at once
// and Config.MaxPeersPerHost of them from one host (an IPv4 address, an
// IPv6 /64). A new peer beyond either bound takes the place of the least
// recently active idle peer (one that moved no message either way for
// Config.HeartbeatPeriod and holds nothing unread), which is closed
// gracefully; if no peer is idle, the new one is refused (its dialer gets
// ErrRefused).
//
// WriteTo returns once the message is queued, before the peer has it, as
// a UDP socket's does. If the connection to that peer then fails (the
// peer refused it, never answered the handshake, went silent for
// Config.IdleTimeout, aborted it), the next WriteTo to that address
// returns that error (matching ErrRefused, ErrHandshakeTimeout,
// ErrIdleTimeout, ErrAborted...) and sends nothing; the WriteTo after it
// sets up a new connection. A connection that ended gracefully is
// replaced silently.
//
// All methods are safe for concurrent use.
type PacketConn struct {
	m     *mux
	table *peerTable // guarded by m.mu

	dialMu sync.Mutex // one implicit dial per address at a time

	mu       sync.Mutex
	ready    readyQueue // connections with something to read, by host in turn
	readWake chan struct{}

	closeOnce sync.Once
	closing   chan struct{}
	rd, wd    deadline
}

// ListenPacket opens a PacketConn on the UDP address ("udp", "udp4" or
// "udp6"). A nil cfg means defaults.
func ListenPacket(network, address string, cfg *Config) (*PacketConn, error) {
	set, sock, err := openSocket(network, address, cfg)
	if err != nil {
		return nil, err
	}
	p := &PacketConn{
		table:    newPeerTable(set),
		readWake: make(chan struct{}, 1),
		closing:  make(chan struct{}),
	}
	p.m = newMux(sock, set, 1, false)
	p.m.mu.Lock()
	p.m.acceptor = p
	p.m.ep.Listen()
	p.m.mu.Unlock()
	return p, nil
}

// admit reclaims an idle peer if a new one from `from` would not fit.
func (p *PacketConn) admit(now time.Time, from netip.AddrPort) {
	p.makeRoom(now, hostOf(from))
}

// offer adopts a connection a peer opened (mux.mu held), unless the peer
// table or its host's share of it is full (admit found no idle peer to
// reclaim). Only peers whose address echoed a cookie get here, so the
// refusals counted are of real addresses.
func (p *PacketConn) offer(now time.Time, c *Conn) refusal {
	host := hostOf(c.raddr)
	if !p.table.roomFor(host) {
		why, msg := refusedPeers, "rudp: peer refused: MaxPeers connections on the socket"
		if p.table.live < p.table.maxPeers {
			why, msg = refusedPeersPerHost, "rudp: peer refused: MaxPeersPerHost connections from its host"
		}
		if p.m.set.debugOn() {
			p.m.set.debug(msg, slog.String("laddr", p.m.laddr.String()), slog.String("peer", c.raddr.String()),
				slog.String("host", host.String()), slog.Int("peers", p.table.live))
		}
		return why
	}
	c.pc = p
	p.table.add(c, host)
	// In use at once, with its full window (a PacketConn reads its
	// connections as they come; MaxPeers bounds them): the accept budget
	// and the window of connections waiting for Accept are a Listener's.
	p.m.ep.Take(now, c.core)
	return admitted
}

// pushReady queues c for ReadFrom (c.mu held).
func (p *PacketConn) pushReady(c *Conn) {
	p.mu.Lock()
	p.ready.push(c)
	p.mu.Unlock()
	signal(p.readWake)
}

func (p *PacketConn) popReady() *Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready.pop()
}

func (p *PacketConn) check(dl *deadline) error { return checkOpen(p.closing, dl, time.Time{}) }

func (p *PacketConn) opErr(op string, addr netip.AddrPort, err error) error {
	return opError(op, p.m.laddr, addr, err)
}

// ReadFrom reads one whole message from any peer. If b is too small it
// returns an error matching ErrBufferTooSmall and keeps the message.
func (p *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	w := waiter{m: p.m, closing: p.closing}
	defer w.stop()
	for {
		if err := p.check(&p.rd); err != nil {
			return 0, nil, p.opErr("read", netip.AddrPort{}, err)
		}
		c := p.popReady()
		if c == nil {
			w.wait(p.readWake, &p.rd)
			continue
		}
		c.mu.Lock()
		c.inReady = false
		n, g, err := c.stream.ReadMessage(b)
		if err == nil && g != 0 {
			now := monoNow()
			c.touch(now)
			c.readLocked(now, max(n, 1))
		}
		if (err == nil || errors.Is(err, core.ErrBufferTooSmall)) && c.stream.Readable() {
			c.inReady = true
			p.pushReady(c)
		}
		from := c.peer
		c.mu.Unlock()
		switch {
		case errors.Is(err, core.ErrBufferTooSmall):
			return 0, net.UDPAddrFromAddrPort(from), p.opErr("read", from, err)
		case err != nil:
			// That peer's connection ended: finish ours, read on.
			c.closeAsync()
		case g != 0:
			return n, net.UDPAddrFromAddrPort(from), nil
		}
	}
}

// WriteTo sends b as one message to addr (a *net.UDPAddr) with
// Config.Guarantee. It blocks while that connection's send buffer is full,
// until the write deadline.
func (p *PacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if err := p.WriteMessageTo(p.m.set.guarantee, b, addr); err != nil {
		return 0, err
	}
	return len(b), nil
}

// WriteMessageTo sends b as one message with guarantee g to addr. Like
// WriteTo, it reports a failure of the connection to addr once.
func (p *PacketConn) WriteMessageTo(g Guarantee, b []byte, addr net.Addr) error {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return p.opErr("write", netip.AddrPort{}, errAddrType)
	}
	to := unmap(ua.AddrPort())
	w := waiter{m: p.m, closing: p.closing}
	defer w.stop()
	for retried := false; ; {
		if err := p.check(&p.wd); err != nil {
			return p.opErr("write", to, err)
		}
		c, err := p.conn(to)
		if err != nil {
			return p.opErr("write", to, err)
		}
		c.mu.Lock()
		err = c.stream.WriteMessage(g, b)
		now := monoNow()
		if err == nil {
			c.touch(now)
		}
		c.settleLocked(now) // (a connection conn just dialed sends its HELLO now)
		// (Whether this message is the one too large: a connection that
		// ended because of one queued before the handshake fails with an
		// error matching ErrMessageTooLarge too.)
		tooLarge := len(b) > c.core.MaxMessageSize()
		var wake chan struct{}
		if errors.Is(err, core.ErrWouldBlock) {
			wake = wakeChan(&c.writeWake)
		}
		c.mu.Unlock()
		switch {
		case err == nil:
			return nil
		case wake != nil:
			w.wait(wake, &p.wd)
		case tooLarge && errors.Is(err, core.ErrMessageTooLarge), errors.Is(err, core.ErrInvalidGuarantee), retried:
			return p.opErr("write", to, err)
		case isFailure(err) && !errors.Is(err, core.ErrPeerClosed):
			// The connection failed while we held it: this is its report
			// (the one its end left for the next WriteTo). It may still be
			// ending (an abort waits for its CLOSE to be acknowledged):
			// forgotten now, the next WriteTo starts a new one. Forgotten
			// first: the mux records the failure for the address while c
			// is still its peer, so a record made before the forget is
			// taken here and none is made after (taken first, a record
			// made in between was reported again by the next WriteTo).
			p.forget(c, to)
			p.m.mu.Lock()
			p.table.takeFailure(to)
			p.m.mu.Unlock()
			return p.opErr("write", to, err)
		default:
			// The connection to that peer ended or is closing: start a new one.
			p.forget(c, to)
			retried = true
		}
	}
}

// conn returns the connection WriteTo uses for addr, dialing one if needed,
// or why the last one failed (once).
func (p *PacketConn) conn(addr netip.AddrPort) (*Conn, error) {
	if c, err := p.peer(addr); c != nil || err != nil {
		return c, err // the common case: no lock shared by all writers
	}
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	if c, err := p.peer(addr); c != nil || err != nil {
		return c, err // dialed (or failed) meanwhile
	}
	now := monoNow()
	p.makeRoom(now, hostOf(addr))
	return p.m.dial(now, addr, p, "")
}

// peer returns the connection WriteTo uses for addr, or else why the last
// one failed (reported once).
func (p *PacketConn) peer(addr netip.AddrPort) (*Conn, error) {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	if c := p.m.peers[addr]; c != nil {
		return c, nil
	}
	if c := p.table.leftBy(addr); c != nil {
		return c, nil // a reply to where its peer was: it moved on
	}
	return nil, p.table.takeFailure(addr)
}

// forget stops using c for addr (it stays until its close completes).
func (p *PacketConn) forget(c *Conn, addr netip.AddrPort) {
	p.m.mu.Lock()
	if p.m.peers[addr] == c {
		delete(p.m.peers, addr)
		c.peerKey = netip.AddrPort{}
	}
	p.table.forgetLeft(c)
	p.m.mu.Unlock()
	c.closeAsync()
}

// Close closes every connection of the PacketConn and stops accepting new
// ones; blocked ReadFrom and WriteTo calls return net.ErrClosed at once.
// Like Conn.Close it then waits, for all the peers at once, until each has
// acknowledged what was written to it (or closed too), bounded by
// Config.Linger: when that passes, the connections still closing are
// aborted and Close returns an error matching os.ErrDeadlineExceeded. So a
// program may exit right after Close. With a negative Linger, Close returns
// at once and the closes complete in the background. The socket is closed
// when the last connection ended (in Manual mode, Close pumps while it
// waits; with a negative Linger keep calling Pump until it returns
// net.ErrClosed).
func (p *PacketConn) Close() error {
	first := false
	p.closeOnce.Do(func() {
		first = true
		close(p.closing)
	})
	if !first {
		return p.opErr("close", netip.AddrPort{}, net.ErrClosed)
	}
	p.m.mu.Lock()
	p.m.acceptor = nil
	p.m.ep.Refuse()
	conns := make([]*Conn, 0, len(p.m.conns))
	for _, c := range p.m.conns {
		conns = append(conns, c)
	}
	p.m.mu.Unlock()
	now := monoNow()
	linger := p.m.set.linger
	closing := conns[:0] // the graceful closes under way, to wait for
	for _, c := range conns {
		first := c.markClosing() // (else closing already, in the background)
		c.mu.Lock()
		if first && c.startCloseLocked(now, linger) || !first && !c.ended {
			closing = append(closing, c)
		}
		c.mu.Unlock()
	}
	p.m.release()
	if linger <= 0 {
		return nil
	}
	// One bound for all: the peers' closes run at once, and each wait
	// below ends when its connection's close did, or at the bound.
	var dl deadline
	dl.set(now.Add(linger))
	var errs []error
	for _, c := range closing {
		if err := c.awaitClose(&dl, nil); err != nil {
			errs = append(errs, p.opErr("close", c.remote(), err))
		}
	}
	return errors.Join(errs...)
}

// LocalAddr returns the socket's local address.
func (p *PacketConn) LocalAddr() net.Addr { return p.m.laddr }

// SetDeadline sets the read and write deadlines.
func (p *PacketConn) SetDeadline(t time.Time) error {
	if err := p.SetReadDeadline(t); err != nil {
		return err
	}
	return p.SetWriteDeadline(t)
}

// SetReadDeadline sets when pending and future ReadFrom calls fail with an
// error matching os.ErrDeadlineExceeded; the zero time means never.
func (p *PacketConn) SetReadDeadline(t time.Time) error {
	if p.check(&noDeadline) != nil {
		return p.opErr("set", netip.AddrPort{}, net.ErrClosed)
	}
	p.rd.set(t)
	return nil
}

// SetWriteDeadline sets when pending and future WriteTo calls fail with an
// error matching os.ErrDeadlineExceeded; the zero time means never.
func (p *PacketConn) SetWriteDeadline(t time.Time) error {
	if p.check(&noDeadline) != nil {
		return p.opErr("set", netip.AddrPort{}, net.ErrClosed)
	}
	p.wd.set(t)
	return nil
}

// Pump does the due work of every connection on the socket now and never
// blocks (Manual mode); it returns net.ErrClosed once the socket is
// closed. In default mode it does nothing.
func (p *PacketConn) Pump() error {
	if !p.m.set.manual {
		return nil
	}
	if err := p.m.pump(); err != nil {
		return p.opErr("pump", netip.AddrPort{}, err)
	}
	return nil
}
