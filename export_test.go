package rudp

import (
	"fmt"
	"net/netip"

	"github.com/rudp-go/rudp/core"
)

// DefaultDatagramCeiling is the core MaxDatagramSize of a socket whose
// Config leaves MaxDatagramSize 0: core.MaxDatagramSizeLimit where the
// ceiling follows the route (Linux), the core's default elsewhere.
var DefaultDatagramCeiling = func() int {
	if routeCeilings {
		return core.MaxDatagramSizeLimit
	}
	return core.DefaultMaxDatagramSize
}()

// ResolvedCore is the core.Config the connections made with c start from,
// every default filled in.
func ResolvedCore(c *Config) (core.Config, error) {
	s, err := c.resolve()
	if err != nil {
		return core.Config{}, err
	}
	return s.core, nil
}

// DebugListener describes the connections still on a listener's socket.
func DebugListener(l *Listener) string {
	l.m.mu.Lock()
	conns := make([]*Conn, 0)
	for _, c := range l.m.conns {
		conns = append(conns, c)
	}
	s := fmt.Sprintf("users=%d closed=%v conns=%d heap=%d", l.m.users, l.m.sockClosed.Load(), len(l.m.conns), l.m.timers.len())
	l.m.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		s += fmt.Sprintf(" [cid=%x est=%v closed=%v err=%v closeBy=%v next=%v timerAt=%v pos=%d]", c.cid, c.core.Established(), c.core.Closed(), c.core.Err(), c.closeBy.time(), c.core.NextTimeout(), c.timer.at, c.timer.pos)
		c.mu.Unlock()
	}
	return s
}

// ListenerConns is how many connections a listener's socket holds.
func ListenerConns(l *Listener) int {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	return len(l.m.conns)
}

// PacketConnPeers is how many connections a PacketConn's socket holds, and
// whether a WriteTo to addr would take one of them (not dial a new one).
func PacketConnPeers(p *PacketConn, addr netip.AddrPort) (conns int, known bool) {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	return len(p.m.conns), p.m.peers[addr] != nil || p.table.leftBy(addr) != nil
}

// PacketConnPeerAt reports whether a connection's validated peer address
// is addr (WriteTo to addr takes it as its current address).
func PacketConnPeerAt(p *PacketConn, addr netip.AddrPort) bool {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	return p.m.peers[addr] != nil
}
