package rudp

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Dial connects to address over UDP ("udp", "udp4" or "udp6") and returns
// once the handshake completed. A nil cfg means defaults. A peer that never
// answers makes it fail after Config.HandshakeTimeout with an error whose
// Timeout method reports true.
func Dial(network, address string, cfg *Config) (*Conn, error) {
	return DialContext(context.Background(), network, address, cfg)
}

// DialContext is Dial bounded by ctx as well: cancelling ctx abandons the
// name lookup or the handshake (ctx does not affect the connection once
// established).
func DialContext(ctx context.Context, network, address string, cfg *Config) (*Conn, error) {
	return dial(ctx, network, address, cfg, nil, nil)
}

// Dialer dials rudp connections with one Config and local address. Its
// DialContext fits http.Transport.DialContext. A Dialer may be used by
// several goroutines at once.
type Dialer struct {
	Config    *Config      // nil means defaults
	LocalAddr *net.UDPAddr // nil picks a free port

	// Resolver looks up host names, as net.Dialer's does; nil means
	// net.DefaultResolver.
	Resolver *net.Resolver

	// Listener, if set, is the socket every connection is dialed through
	// (see Listener.DialContext): many connections then share one socket
	// and one reader goroutine instead of owning one each. Config and
	// LocalAddr are ignored: the Listener's apply.
	Listener *Listener
}

// Dial connects to address; see DialContext.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to address. It takes "tcp", "tcp4" and "tcp6" as
// "udp", "udp4" and "udp6": code written for a stream transport (such as
// http.Transport) asks for tcp. The net.Conn is a *Conn.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp":
		network = "udp"
	case "tcp4":
		network = "udp4"
	case "tcp6":
		network = "udp6"
	}
	var c *Conn
	var err error
	if d.Listener != nil {
		c, err = d.Listener.dial(ctx, network, address, d.Resolver)
	} else {
		c, err = dial(ctx, network, address, d.Config, d.LocalAddr, d.Resolver)
	}
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

func dial(ctx context.Context, network, address string, cfg *Config, laddr *net.UDPAddr, r *net.Resolver) (*Conn, error) {
	fail := func(raddr net.Addr, err error) (*Conn, error) {
		var src net.Addr
		if laddr != nil {
			src = laddr
		}
		return nil, &net.OpError{Op: "dial", Net: network, Source: src, Addr: raddr, Err: err}
	}
	set, err := cfg.resolve()
	if err != nil {
		return fail(nil, err)
	}
	to, err := resolveUDP(ctx, r, network, address)
	if err != nil {
		return fail(nil, err)
	}
	raddr := net.UDPAddrFromAddrPort(to)
	// An IPv4 peer gets an IPv4 socket, as net.DialUDP gives it: the
	// kernel's path is shorter than a dual-stack socket's.
	sockNet := network
	if network == "udp" && to.Addr().Is4() && (laddr == nil || laddr.IP == nil || laddr.IP.To4() != nil) {
		sockNet = "udp4"
	}
	sock, err := listenUDP(sockNet, laddr)
	if err != nil {
		return fail(raddr, err)
	}
	// The socket is this connection's alone, but it is not connected to
	// the peer: the peer may answer from another address than the one
	// dialed (a server bound to the wildcard address answers from the one
	// its route picks; a multi-homed one, a virtual IP; a peer that moved),
	// and a connected socket drops what comes from any but the one.
	m := newMux(sock, set, 0, true)
	c, err := m.dial(monoNow(), to, nil, dialHost(address))
	if err != nil {
		_ = sock.Close()
		return fail(raddr, err)
	}
	if err := c.awaitHandshake(ctx, set.core.HandshakeTimeout); err != nil {
		c.abandon()
		return nil, &net.OpError{Op: "dial", Net: network, Source: m.laddr, Addr: raddr, Err: err}
	}
	return c, nil
}

// dialHost is the host part of a dial address, which names the server
// for TLS when Config.TLS.ServerName is empty (see mux.dial).
func dialHost(address string) string {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return ""
	}
	return host
}

// resolveUDP resolves a dial address ("host:port") for network ("udp",
// "udp4", "udp6") as net.ResolveUDPAddr does, but through r (nil:
// net.DefaultResolver) and bounded by ctx, so that a cancelled dial does not
// wait for a slow name server. An empty host means the local system. For
// "udp" a name's IPv4 address is preferred, as package net does; "udp4" and
// "udp6" take only addresses of their family; any other network is an
// error.
func resolveUDP(ctx context.Context, r *net.Resolver, network, address string) (netip.AddrPort, error) {
	if err := checkNetwork(network); err != nil {
		return netip.AddrPort{}, err
	}
	if err := ctx.Err(); err != nil {
		return netip.AddrPort{}, err
	}
	if r == nil {
		r = net.DefaultResolver
	}
	host, service, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := r.LookupPort(ctx, network, service)
	if err != nil {
		return netip.AddrPort{}, err
	}
	fits := func(a netip.Addr) bool {
		switch network {
		case "udp4":
			return a.Is4()
		case "udp6":
			return a.Is6()
		}
		return true
	}
	var addrs []netip.Addr
	switch ip, perr := netip.ParseAddr(host); {
	case host == "":
		if network == "udp6" {
			addrs = []netip.Addr{netip.IPv6Loopback()}
		} else {
			addrs = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}
		}
	case perr == nil:
		addrs = []netip.Addr{ip.Unmap()}
	default:
		ipNet := "ip"
		switch network {
		case "udp4":
			ipNet = "ip4"
		case "udp6":
			ipNet = "ip6"
		}
		found, err := r.LookupNetIP(ctx, ipNet, host)
		if err != nil {
			return netip.AddrPort{}, err
		}
		for _, a := range found {
			a = a.Unmap()
			if a.Is4() && network == "udp" {
				addrs = []netip.Addr{a}
				break
			}
			addrs = append(addrs, a)
		}
	}
	for _, a := range addrs {
		if fits(a) {
			return netip.AddrPortFrom(a, uint16(port)), nil
		}
	}
	return netip.AddrPort{}, &net.AddrError{Err: "no suitable address found", Addr: host}
}

func checkNetwork(network string) error {
	switch network {
	case "udp", "udp4", "udp6":
		return nil
	}
	return net.UnknownNetworkError(network)
}

// awaitHandshake waits until the connection is established, failed, ctx
// is done or timeout passed.
func (c *Conn) awaitHandshake(ctx context.Context, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	w := c.waiter()
	defer w.stop()
	for {
		select {
		case <-c.estCh:
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.core.Established() {
				return nil
			}
			if err := c.core.Err(); err != nil {
				return withErrno(err)
			}
			return net.ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return ErrHandshakeTimeout
		default:
		}
		if c.m.set.manual {
			w.wait(c.estCh, &noDeadline)
			continue
		}
		select {
		case <-c.estCh:
		case <-ctx.Done():
		case <-deadline.C:
			return ErrHandshakeTimeout
		}
	}
}

// abandon forgets a connection whose handshake did not complete.
func (c *Conn) abandon() {
	c.closeOnce.Do(func() { close(c.closing) })
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked()
}
