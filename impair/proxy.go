package impair

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy defaults, changed with ProxyOption values.
const (
	// DefaultMaxClients bounds the clients a Proxy relays for at once.
	DefaultMaxClients = 4096
	// DefaultIdleTimeout is how long a client may stay silent in both
	// directions before its upstream socket is closed.
	DefaultIdleTimeout = time.Minute
)

// maxDatagram is the size of every receive buffer: the largest UDP payload.
const maxDatagram = 65535

// socketBuffer is the kernel buffer size the proxy asks for on its sockets
// (the kernel may grant less), so bursts at high rates are not dropped.
const socketBuffer = 4 << 20

// ProxyOption changes a Proxy default; pass it to NewProxy.
type ProxyOption func(*proxyOptions)

type proxyOptions struct {
	maxClients  int
	idleTimeout time.Duration
}

// WithMaxClients bounds the number of clients relayed at once (default
// DefaultMaxClients). Datagrams from further clients are dropped and counted
// in ProxyStats.Rejected until an idle client is reaped. n must be positive.
func WithMaxClients(n int) ProxyOption {
	return func(o *proxyOptions) { o.maxClients = n }
}

// WithIdleTimeout sets how long a client may be silent in both directions
// before its upstream socket is closed (default DefaultIdleTimeout). d must be
// positive.
func WithIdleTimeout(d time.Duration) ProxyOption {
	return func(o *proxyOptions) { o.idleTimeout = d }
}

// ProxyStats is a snapshot of a Proxy's counts.
type ProxyStats struct {
	// Up counts datagrams relayed from clients to the target, Down those
	// relayed from the target back to clients.
	Up, Down Stats
	// Clients is the number of clients with a live upstream socket.
	Clients int
	// Rejected counts datagrams dropped because MaxClients clients were live
	// or an upstream socket could not be opened.
	Rejected uint64
	// Reaped counts clients whose upstream socket was closed for idleness.
	Reaped uint64
}

// Proxy relays UDP between any number of clients and one target. Each client
// (source address) gets its own upstream socket, so the target sees one
// address per client and its replies go back to the right one. Datagrams from
// clients pass through the up impairment, replies through the down one.
//
// A Proxy runs one goroutine reading its listening socket, one per client
// reading that client's upstream socket (with a 64 KiB buffer), one reaping
// idle clients, and one scheduler per impaired direction. All methods are safe
// for concurrent use.
type Proxy struct {
	ln      *net.UDPConn
	target  *net.UDPAddr
	opts    proxyOptions
	up      *link
	down    *link
	clients *clientSide
	epoch   time.Time

	rejected atomic.Uint64

	mu       sync.Mutex
	sessions map[netip.AddrPort]*session
	reaped   uint64
	closed   bool

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// session is one client's upstream socket, connected to the target.
type session struct {
	conn       *net.UDPConn
	clientAddr *net.UDPAddr // allocated once, so replies need no allocation
	lastActive atomic.Int64 // nanoseconds since Proxy.epoch
}

// send implements sink for the up direction.
func (s *session) send(p []byte, _ net.Addr) error {
	_, err := s.conn.Write(p)
	return err
}

// clientSide is the sink of the down direction: the listening socket.
type clientSide struct{ ln *net.UDPConn }

func (c *clientSide) send(p []byte, to net.Addr) error {
	_, err := c.ln.WriteTo(p, to)
	return err
}

// NewProxy listens on listenAddr (for example "127.0.0.1:0") and relays
// datagrams to targetAddr through up, and replies back through down. Both
// addresses are UDP host:port strings. Close stops it.
func NewProxy(listenAddr, targetAddr string, up, down Config, opts ...ProxyOption) (*Proxy, error) {
	if err := up.Validate(); err != nil {
		return nil, fmt.Errorf("impair: up: %w", err)
	}
	if err := down.Validate(); err != nil {
		return nil, fmt.Errorf("impair: down: %w", err)
	}
	o := proxyOptions{maxClients: DefaultMaxClients, idleTimeout: DefaultIdleTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxClients <= 0 {
		return nil, fmt.Errorf("%w: MaxClients = %d, want > 0", ErrInvalidConfig, o.maxClients)
	}
	if o.idleTimeout <= 0 {
		return nil, fmt.Errorf("%w: IdleTimeout = %v, want > 0", ErrInvalidConfig, o.idleTimeout)
	}
	target, err := net.ResolveUDPAddr("udp", targetAddr)
	if err != nil {
		return nil, fmt.Errorf("impair: target: %w", err)
	}
	laddr, err := net.ResolveUDPAddr("udp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("impair: listen: %w", err)
	}
	ln, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("impair: listen: %w", err)
	}
	_ = ln.SetReadBuffer(socketBuffer)
	_ = ln.SetWriteBuffer(socketBuffer)

	p := &Proxy{
		ln:       ln,
		target:   target,
		opts:     o,
		up:       newLink(up),
		down:     newLink(down),
		clients:  &clientSide{ln: ln},
		epoch:    time.Now(),
		sessions: make(map[netip.AddrPort]*session),
		done:     make(chan struct{}),
	}
	p.wg.Add(2)
	go p.readClients()
	go p.reapIdle()
	return p, nil
}

// Addr returns the address clients send to.
func (p *Proxy) Addr() net.Addr { return p.ln.LocalAddr() }

// Stats returns a snapshot of the proxy's counts.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	n, reaped := len(p.sessions), p.reaped
	p.mu.Unlock()
	return ProxyStats{
		Up:       p.up.stats.snapshot(),
		Down:     p.down.stats.snapshot(),
		Clients:  n,
		Rejected: p.rejected.Load(),
		Reaped:   reaped,
	}
}

// Close stops relaying: it closes every socket, drops datagrams still delayed,
// and waits for all of the proxy's goroutines to exit. Later calls return the
// first call's result.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		sessions := p.sessions
		p.sessions = nil
		p.mu.Unlock()

		p.up.closeQueue()
		p.down.closeQueue()
		// Closing the sockets unblocks the readers and any scheduler write.
		p.closeErr = p.ln.Close()
		for _, s := range sessions {
			s.conn.Close()
		}
		close(p.done)
		p.up.stop()
		p.down.stop()
		p.wg.Wait()
	})
	return p.closeErr
}

func (p *Proxy) now() int64 { return int64(time.Since(p.epoch)) }

// readClients relays datagrams from clients to their upstream sockets.
func (p *Proxy) readClients() {
	defer p.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := p.ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.isClosed() {
				return
			}
			continue // a transient error, e.g. a reported ICMP error
		}
		s := p.session(from)
		if s == nil {
			continue
		}
		s.lastActive.Store(p.now())
		_, _ = p.up.submit(buf[:n], s, nil) // errors count as loss, as on a real link
	}
}

func (p *Proxy) isClosed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// session returns the client's session, opening one on its first datagram,
// or nil if the datagram must be dropped.
func (p *Proxy) session(client netip.AddrPort) *session {
	p.mu.Lock()
	s, ok := p.sessions[client]
	full := len(p.sessions) >= p.opts.maxClients
	closed := p.closed
	p.mu.Unlock()
	if ok {
		return s
	}
	if closed {
		return nil
	}
	if full {
		p.rejected.Add(1)
		return nil
	}

	// Only readClients opens sessions, so dialing outside the lock cannot
	// race with another open for the same client.
	conn, err := net.DialUDP("udp", nil, p.target)
	if err != nil {
		p.rejected.Add(1)
		return nil
	}
	_ = conn.SetReadBuffer(socketBuffer)
	_ = conn.SetWriteBuffer(socketBuffer)
	s = &session{conn: conn, clientAddr: net.UDPAddrFromAddrPort(client)}
	s.lastActive.Store(p.now())

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		conn.Close()
		return nil
	}
	p.sessions[client] = s
	p.wg.Add(1) // under mu, so Close cannot already be waiting
	p.mu.Unlock()
	go p.readTarget(s)
	return s
}

// readTarget relays the target's replies on one client's upstream socket back
// to that client, until the socket is closed.
func (p *Proxy) readTarget(s *session) {
	defer p.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED after the target's port was closed
		}
		s.lastActive.Store(p.now())
		_, _ = p.down.submit(buf[:n], p.clients, s.clientAddr)
	}
}

// reapIdle closes the upstream sockets of clients silent for the idle
// timeout, checking a few times per timeout.
func (p *Proxy) reapIdle() {
	defer p.wg.Done()
	period := min(max(p.opts.idleTimeout/4, 10*time.Millisecond), 5*time.Second)
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	var idle []*session
	for {
		select {
		case <-p.done:
			return
		case <-ticker.C:
		}
		deadline := p.now() - int64(p.opts.idleTimeout)
		p.mu.Lock()
		for client, s := range p.sessions {
			if s.lastActive.Load() < deadline {
				delete(p.sessions, client)
				idle = append(idle, s)
			}
		}
		// Counted under mu, so that Stats never shows a client both gone
		// and not reaped.
		p.reaped += uint64(len(idle))
		p.mu.Unlock()
		for i, s := range idle {
			s.conn.Close()
			idle[i] = nil
		}
		idle = idle[:0]
	}
}
