package rudp

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/rudp-go/rudp/core"
)

// peerTable is a PacketConn's account of the connections on its socket,
// by host (an IPv4 address, an IPv6 /64: what one machine or one site
// usually holds). It enforces two bounds on the connections it counts:
// MaxPeers in all, and a fair share of them per host (MaxPeersPerHost),
// so that one host opening connections from many source ports cannot take
// the table from everybody else. When a new connection would break a
// bound, the least recently active peer that is idle (it moved no message
// either way for idleAfter, and holds nothing unread) is closed gracefully
// to make room: of the same host when that host's share is full, of the
// whole table otherwise. Only when no such peer exists is a new peer
// refused.
//
// It also keeps, per address, why the connection WriteTo used for it
// failed (refused, timed out, aborted), so that the next WriteTo to that
// address reports it once instead of opening a new connection silently.
//
// A connection counts against the host it connected from (or WriteTo
// dialed), also after its peer's address changed.
//
// All fields and methods are guarded by mux.mu. A counted Conn's host and
// slot are the table's too.
type peerTable struct {
	maxPeers  int           // connections counted at once
	hostShare int           // connections counted at once per host
	idleAfter time.Duration // a peer that moved no message for this long may be reclaimed
	live      int           // connections counted
	hosts     map[netip.Addr]*hostPeers

	// calmUntil: no counted connection becomes idle before then (the last
	// scan of the whole table found none idle; activity only moves later).
	calmUntil time.Time

	// failed: why the connection WriteTo used for an address failed, until
	// a WriteTo to that address reports it or the peer connects again. At
	// most maxPeers entries; beyond, one is dropped.
	failed map[netip.AddrPort]error

	// left and leftOf: the last validated address each connection's peer
	// moved away from (NAT rebinding), one a connection. A message read
	// before the move was validated was reported (ReadFrom) from the old
	// address; a reply to it must still take the connection, now at the
	// new address, not open a second one to a port nobody answers from.
	left   map[netip.AddrPort]*Conn
	leftOf map[*Conn]netip.AddrPort
}

// hostPeers are the counted connections of one host.
type hostPeers struct {
	conns []*Conn // each one's slot is its index here
}

// defaultHostShare is MaxPeersPerHost's default for a MaxPeers: a
// sixteenth of the table, at least 8 (a NAT or a few clients behind one
// address), at most the table.
func defaultHostShare(maxPeers int) int {
	return min(maxPeers, max(8, maxPeers/16))
}

func newPeerTable(s *settings) *peerTable {
	return &peerTable{
		maxPeers:  s.maxPeers,
		hostShare: s.maxPeersPerHost,
		idleAfter: s.peerIdle(),
		hosts:     make(map[netip.Addr]*hostPeers),
	}
}

// hostOf is the host an address counts against: its IPv4 address, or the
// /64 of its IPv6 address (a machine's or a site's whole prefix: a peer
// that owns one can draw any number of addresses from it).
func hostOf(a netip.AddrPort) netip.Addr {
	ip := a.Addr().Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// roomFor reports whether one more connection from host fits both bounds.
func (t *peerTable) roomFor(host netip.Addr) bool {
	if t.live >= t.maxPeers {
		return false
	}
	hp := t.hosts[host]
	return hp == nil || len(hp.conns) < t.hostShare
}

// add counts c as a connection of host.
func (t *peerTable) add(c *Conn, host netip.Addr) {
	hp := t.hosts[host]
	if hp == nil {
		hp = &hostPeers{}
		t.hosts[host] = hp
	}
	c.host, c.slot = host, len(hp.conns)
	hp.conns = append(hp.conns, c)
	t.live++
}

// drop stops counting c (it ended, or it is being reclaimed).
func (t *peerTable) drop(c *Conn) {
	if c.slot < 0 {
		return
	}
	hp := t.hosts[c.host]
	last := len(hp.conns) - 1
	moved := hp.conns[last]
	hp.conns[c.slot], moved.slot = moved, c.slot
	hp.conns[last] = nil
	hp.conns = hp.conns[:last]
	if len(hp.conns) == 0 {
		delete(t.hosts, c.host) // the map holds hosts with connections only
	}
	c.slot = -1
	t.live--
}

// victim returns the connection to reclaim so that one from host fits,
// nil if it fits already or no connection is idle at now: the least
// recently active idle connection of host when host's share is full, of
// the whole table otherwise.
func (t *peerTable) victim(host netip.Addr, now time.Time) *Conn {
	if t.roomFor(host) {
		return nil
	}
	if hp := t.hosts[host]; hp != nil && len(hp.conns) >= t.hostShare {
		v, _ := t.leastActive(hp.conns, now)
		return v
	}
	if now.Before(t.calmUntil) {
		return nil
	}
	var v *Conn
	var vAt time.Time
	calm := time.Time{}
	for _, hp := range t.hosts {
		c, idleAt := t.leastActive(hp.conns, now)
		if c != nil && (v == nil || c.lastActive().Before(vAt)) {
			v, vAt = c, c.lastActive()
		}
		if c == nil && (calm.IsZero() || idleAt.Before(calm)) {
			calm = idleAt
		}
	}
	if v == nil {
		t.calmUntil = calm
	}
	return v
}

// leastActive returns the least recently active of conns if it is idle at
// now; otherwise nil and when the first of them becomes idle.
func (t *peerTable) leastActive(conns []*Conn, now time.Time) (*Conn, time.Time) {
	var v *Conn
	var at time.Time
	for _, c := range conns {
		if a := c.lastActive(); v == nil || a.Before(at) {
			v, at = c, a
		}
	}
	if v == nil {
		return nil, time.Time{}
	}
	if idleAt := at.Add(t.idleAfter); now.Before(idleAt) {
		return nil, idleAt
	}
	return v, time.Time{}
}

// fail remembers err as why the connection WriteTo used for addr ended.
func (t *peerTable) fail(addr netip.AddrPort, err error) {
	if t.failed == nil {
		t.failed = make(map[netip.AddrPort]error)
	}
	if _, ok := t.failed[addr]; !ok && len(t.failed) >= t.maxPeers {
		for a := range t.failed {
			delete(t.failed, a) // any one: a report nobody collected
			break
		}
	}
	t.failed[addr] = err
}

// moved notes that c's peer left the validated address from (c.mu and
// mux.mu held): until c moves again or ends, WriteTo to from takes c
// where no other connection holds from.
func (t *peerTable) moved(c *Conn, from netip.AddrPort) {
	t.forgetLeft(c)
	if !from.IsValid() {
		return
	}
	if t.left == nil {
		t.left = make(map[netip.AddrPort]*Conn)
		t.leftOf = make(map[*Conn]netip.AddrPort)
	}
	if prev := t.left[from]; prev != nil {
		delete(t.leftOf, prev) // another moved away from there before: the newest wins
	}
	t.left[from], t.leftOf[c] = c, from
}

// leftBy returns the connection whose peer last left addr, if any.
func (t *peerTable) leftBy(addr netip.AddrPort) *Conn { return t.left[addr] }

// forgetLeft forgets the address c's peer left (c moved again, or ended).
func (t *peerTable) forgetLeft(c *Conn) {
	if from, ok := t.leftOf[c]; ok {
		delete(t.leftOf, c)
		delete(t.left, from)
	}
}

// takeFailure returns, and forgets, why the last connection to addr failed.
func (t *peerTable) takeFailure(addr netip.AddrPort) error {
	err := t.failed[addr]
	if err != nil {
		delete(t.failed, addr)
	}
	return err
}

// isFailure reports whether err, which ended a connection, is a failure
// to report to the next writer: anything but a local close.
func isFailure(err error) bool {
	return err != nil && !errors.Is(err, core.ErrClosed)
}

// reclaimTries bounds how many busy candidates one admission looks past
// (each found busy counts as active from then on, so the next scan skips it).
const reclaimTries = 4

// makeRoom closes gracefully the idle peer that a new connection from host
// should replace, if the table or host's share is full (no lock held).
// Whether the newcomer then fits is decided when it is counted.
func (p *PacketConn) makeRoom(now time.Time, host netip.Addr) {
	for range reclaimTries {
		p.m.mu.Lock()
		v := p.table.victim(host, now)
		p.m.mu.Unlock()
		if v == nil {
			return
		}
		if v.reclaim(now) {
			return
		}
	}
}

// lastActive is when a message last moved between the application and
// the connection's peer (or when it was made).
func (c *Conn) lastActive() time.Time {
	return clockBase.Add(time.Duration(c.active.Load()))
}

// touch records that a message moved between the application and the peer.
func (c *Conn) touch(now time.Time) { c.active.Store(int64(now.Sub(clockBase))) }

// reclaim closes c gracefully to free its place in its PacketConn's table,
// unless it turns out busy: it holds messages not read yet (they were
// acknowledged: closing would drop them), or it was active meanwhile. A
// busy c counts as active from now on. It reports whether c's place was
// freed.
func (c *Conn) reclaim(now time.Time) bool {
	c.mu.Lock()
	if !c.ended && c.stream.Readable() {
		c.touch(now)
	}
	t := c.pc.table
	c.m.mu.Lock()
	freed := c.slot >= 0 && !c.ended && now.Sub(c.lastActive()) >= t.idleAfter
	if freed {
		t.drop(c)
		if c.m.peers[c.peerKey] == c {
			delete(c.m.peers, c.peerKey) // the next WriteTo opens a new connection
			c.peerKey = netip.AddrPort{}
		}
	}
	c.m.mu.Unlock()
	c.mu.Unlock()
	if freed {
		if c.m.set.debugOn() {
			c.m.set.debug("rudp: idle peer reclaimed for a new one", slog.String("laddr", c.m.laddr.String()),
				slog.String("peer", c.remote().String()), slog.Duration("idle", now.Sub(c.lastActive())))
		}
		c.closeAsync() // (on a new peer's handshake: it must not wait)
	}
	return freed
}

// readyQueue holds a PacketConn's connections with something to read, for
// ReadFrom to take by host in turn: one message of each host with messages
// waiting, then the next round, whatever number of connections each host
// has (within a host, its connections take turns). A host with many busy
// connections so delays another host's message by one of its own, not by
// one per connection. Guarded by PacketConn.mu.
type readyQueue struct {
	first, last *readyHost // hosts with ready connections, in turn order
	hosts       map[netip.Addr]*readyHost
	spare       []*readyHost // entries of hosts that had nothing left, reused
}

// readyHost is one host's ready connections, linked through Conn.readyNext.
type readyHost struct {
	host        netip.Addr
	first, last *Conn
	next        *readyHost // the next host in turn
}

// maxSpareReadyHosts bounds the entries kept for reuse.
const maxSpareReadyHosts = 64

func (q *readyQueue) push(c *Conn) {
	h := q.hosts[c.host]
	if h == nil {
		if n := len(q.spare); n > 0 {
			h, q.spare[n-1] = q.spare[n-1], nil
			q.spare = q.spare[:n-1]
		} else {
			h = &readyHost{}
		}
		h.host = c.host
		if q.hosts == nil {
			q.hosts = make(map[netip.Addr]*readyHost)
		}
		q.hosts[c.host] = h
		q.append(h)
	}
	c.readyNext = nil
	if h.last == nil {
		h.first = c
	} else {
		h.last.readyNext = c
	}
	h.last = c
}

// pop takes the first connection of the host whose turn it is; that host
// goes to the back of the turn order if it has more.
func (q *readyQueue) pop() *Conn {
	h := q.first
	if h == nil {
		return nil
	}
	q.first = h.next
	h.next = nil
	if q.first == nil {
		q.last = nil
	}
	c := h.first
	h.first = c.readyNext
	c.readyNext = nil
	if h.first != nil {
		q.append(h)
		return c
	}
	h.last = nil
	delete(q.hosts, h.host)
	if len(q.spare) < maxSpareReadyHosts {
		q.spare = append(q.spare, h)
	}
	return c
}

func (q *readyQueue) append(h *readyHost) {
	if q.last == nil {
		q.first = h
	} else {
		q.last.next = h
	}
	q.last = h
}
