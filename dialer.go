package rudp

import (
	"context"
	"net"
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
// handshake (ctx does not affect the connection once established).
func DialContext(ctx context.Context, network, address string, cfg *Config) (*Conn, error) {
	return dial(ctx, network, address, cfg, nil)
}

// Dialer dials rudp connections with one Config and local address. Its
// DialContext fits http.Transport.DialContext. A Dialer may be used by
// several goroutines at once.
type Dialer struct {
	Config    *Config      // nil means defaults
	LocalAddr *net.UDPAddr // nil picks a free port
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
	c, err := dial(ctx, network, address, d.Config, d.LocalAddr)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

func dial(ctx context.Context, network, address string, cfg *Config, laddr *net.UDPAddr) (*Conn, error) {
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
	if err := checkNetwork(network); err != nil {
		return fail(nil, err)
	}
	raddr, err := net.ResolveUDPAddr(network, address)
	if err != nil {
		return fail(nil, err)
	}
	sock, err := listenUDP(network, laddr)
	if err != nil {
		return fail(raddr, err)
	}
	m := newMux(sock, set, 0)
	c, err := m.dial(time.Now(), unmap(raddr.AddrPort()), nil)
	if err != nil {
		_ = sock.Close()
		return fail(raddr, err)
	}
	if err := c.awaitHandshake(ctx, set.handshakeTimeout); err != nil {
		c.abandon()
		return nil, &net.OpError{Op: "dial", Net: network, Source: m.laddr, Addr: raddr, Err: err}
	}
	return c, nil
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
				return err
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
