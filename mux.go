package rudp

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rudp-go/rudp/core"
)

// acceptor takes the connections a mux's handshake accepts: a Listener
// queues them for Accept, a PacketConn keeps them for ReadFrom and WriteTo.
// admit is called first, with no lock held: it may make room for a new
// peer at from (a PacketConn reclaims an idle peer). offer is called with
// the connection's and mux.mu held and must not block; false refuses. Until
// the application takes a connection (core.Endpoint.Take), its receive
// window is the Endpoint's UnacceptedReceiveWindow. offer returns
// admitted, or why it refuses.
type acceptor interface {
	admit(now time.Time, from netip.AddrPort)
	offer(now time.Time, c *Conn) refusal
}

// mux is one UDP socket and the connections on it. What a datagram means
// (which connection it is for, a new connection, a Retry, a refusal or a
// stateless reset to send) is decided by its core.Endpoint, sans I/O; the
// mux reads the socket, hands each datagram to the Endpoint and then to its
// connection, writes what they have to send, and wakes blocked callers. In
// default mode one reader goroutine reads the socket and one timer
// (time.AfterFunc) fires the connections' timers, reset to the earliest of
// them; in Manual mode pump does both, without blocking.
//
// Its jobs, and where each is done:
//
//	routing and accepting  the decisions: core.Endpoint (ep); handing over: handleDatagram, accept, dial (this file)
//	the connection table   registerLocked, remove, release, addPeerLocked, movePeer (this file)
//	handing over batches   handleBatch, deliver, deferredFlush (this file)
//	the socket's reader    readLoop, pump (this file); who reads: direct.go (readOwner)
//	timers                 schedule, onTimer, fireTimers (this file); timers.go (timerQueue)
//	socket I/O             socket.go (udpSocket, embedded: receive, send, writeTo) and the platform files it names
//	failing fast           stateless resets: core.Endpoint; ICMP reports: failfast.go
//
// Lock order: Conn.mu, then mux.mu, then a PacketConn's mu. mux.mu is never
// held while a Conn's mutex is taken.
// The sockets of a sharded Listener (socketGroup) take each other's mu
// only in the last release of the group, when none serves a connection.
type mux struct {
	set *settings

	udpSocket              // the socket and the platform's I/O on it (socket.go)
	errPending atomic.Bool // a send failed with an error the kernel's error queue explains (see sendFailed)
	sockClosed atomic.Bool // the socket was closed (set under mu)

	// The reader's state: the state of whoever reads the socket (the
	// reader goroutine or a direct read in default mode, whoever holds
	// pumpMu in Manual mode), with udpSocket's receive state.
	owner   readOwner  // who reads the socket (direct.go)
	pumpMu  sync.Mutex // serializes Manual mode socket reads (pump)
	touched []*Conn    // connections whose flush waits for the batch's end
	rxMore  bool       // the datagram being handled is not the batch's last
	// rxConn is the connection the reader is handing a datagram: its
	// flushes wait until the whole batch is handled (see deferredFlush).
	rxConn atomic.Pointer[Conn]

	mu sync.Mutex
	// Routing and accepting. ep decides what every datagram means
	// (core.Endpoint: routing by connection ID, the stateless cookie
	// handshake, refusals, stateless resets); the mux moves datagrams
	// between it, the socket and the connections.
	ep       *core.Endpoint
	conns    map[uint64]*Conn         // the connections ep routes to, by local connection ID
	peers    map[netip.AddrPort]*Conn // PacketConn: the connection WriteTo uses per address
	acceptor acceptor                 // nil: HELLOs from new peers are dropped (a dialed socket) or refused (closed: ep.Refuse)
	users    int                      // the listener or PacketConn, plus every connection not yet ended
	// Failing fast (stateless resets: ep).
	reports core.TokenBucket // ICMP reports handled
	// Timers.
	timers timerQueue // every connection's timers, on one time.Timer
	// counts are the socket's counts beyond its Endpoint's (SocketStats).
	counts socketCounts
	// group is the sharded Listener's sockets this one closes with (nil:
	// it closes alone; see socketGroup).
	group *socketGroup
}

// newMux serves sock. direct lets a blocked Read read the socket itself
// while it carries one connection (direct.go); it needs default mode.
func newMux(sock *net.UDPConn, set *settings, users int, direct bool) *mux {
	return newMuxServer(sock, set, users, direct, set.serverID)
}

// newMuxServer is newMux whose connection IDs carry serverID (nil: random
// ones): a sharded Listener's socket has its own (settings.shardServerID).
func newMuxServer(sock *net.UDPConn, set *settings, users int, direct bool, serverID []byte) *mux {
	m := &mux{
		set:     set,
		conns:   make(map[uint64]*Conn),
		users:   users,
		reports: core.TokenBucket{Rate: reportRate, Burst: reportBurst},
	}
	m.timers = timerQueue{manual: set.manual, fire: m.onTimer}
	m.owner = newReadOwner(sock, direct && !set.manual, &m.sockClosed)
	m.udpSocket = udpSocket{sock: sock, laddr: sock.LocalAddr(), set: set, failed: m.sendFailed}
	m.raw, _ = sock.SyscallConn()
	m.initIO()
	m.enableErrQueue()
	m.rxSize = set.core.MaxDatagramSize
	if m.rxGRO {
		m.rxSize = maxUDPPayload
	}
	m.setRxPool()
	m.txBatches = txPool(set.core.MaxDatagramSize)
	// (The cookie key and connection IDs come from a ChaCha8 source seeded
	// from crypto/rand: the core reads no randomness of its own. The accept
	// budget is a Listener's: its connections wait in Accept until taken,
	// each with the Endpoint's UnacceptedReceiveWindow (its default, the
	// root's UnacceptedReceiveWindow) until then; a PacketConn takes each
	// at once, within its peer table's bounds.)
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	m.ep, _ = core.NewEndpoint(&core.EndpointConfig{
		Rand:         rand.NewChaCha8(seed),
		Conn:         &set.core,
		AcceptBudget: set.backlog,
		HostShare:    defaultHostShare(set.backlog),
		ResetRate:    resetRate,
		ResetBurst:   resetBurst,
		ResetKey:     set.resetKey, // (nil: derived from the random cookie key)
		ServerID:     serverID,
	})
	if !set.manual {
		go m.readLoop()
	}
	return m
}

// readLoop is the socket's reader goroutine (default mode).
func (m *mux) readLoop() {
	o := &m.owner
	defer o.stop()
	for {
		if o.on {
			if !o.readerTake() {
				return // the socket closed
			}
			if m.yieldSocket() {
				continue
			}
		}
		b, err := m.receive(true)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if o.on && errors.Is(err, os.ErrDeadlineExceeded) {
				// Interrupted: a caller wants the socket (or an
				// interruption meant for a caller came late).
				o.interrupted()
				m.yieldSocket()
				continue
			}
			// ICMP errors and the like concern one datagram, not the socket.
			if m.sockClosed.Load() {
				return
			}
			if !m.socketError(err) {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		drained := m.rxBatched && b.drained()
		m.handleBatch(b)
		if drained {
			// The socket is most likely empty, and the next read would
			// find so and park before a reader this batch woke gets to
			// run: let that reader run first, on this thread.
			runtime.Gosched()
		}
	}
}

// handleBatch routes a batch of received datagrams, then flushes each
// connection they went to once: their acknowledgements coalesce, and what
// the acknowledgements they carried let through goes out in one batch. It
// returns the time it last read the clock.
func (m *mux) handleBatch(b *rxBatch) time.Time {
	now := monoNow()
	for i := range b.n {
		if b.lens[i] > b.size {
			// Truncated: the peer sends datagrams longer than ours. It is
			// lost (recovery repairs it); later reads take any size.
			m.rxSize = maxUDPPayload
			m.setRxPool()
			m.counts.truncated.Add(1)
			if m.set.debugOn() {
				m.mu.Lock()
				m.ep.LogDrop(now, core.DropTruncated, b.from[i])
				m.mu.Unlock()
			}
			continue
		}
		msg := b.bufs[i][:b.lens[i]]
		seg := b.segs[i]
		if seg <= 0 || seg > len(msg) {
			seg = len(msg)
		}
		for len(msg) > 0 {
			d := msg[:min(seg, len(msg))]
			msg = msg[len(d):]
			m.rxMore = i < b.n-1 || len(msg) > 0
			m.handleDatagram(now, d, b.from[i])
		}
	}
	b.release()
	if len(m.touched) == 0 {
		return now
	}
	now = monoNow()
	for i, c := range m.touched {
		c.mu.Lock()
		c.settleLocked(now)
		c.mu.Unlock()
		m.touched[i] = nil
	}
	m.touched = m.touched[:0]
	return now
}

// deliver hands c one datagram of the batch being handled. Unless it is the
// batch's last, c's flush waits for the batch's end; the last flushes at
// once what c has ready, so a lone datagram (a request, say) costs no
// second pass.
func (m *mux) deliver(now time.Time, c *Conn, b []byte, from netip.AddrPort) {
	i := slices.Index(m.touched, c)
	self := m.owner.holder.self == c // that connection's Read is the one reading: it looks again anyway
	if !m.rxMore {
		if i >= 0 {
			m.touched = slices.Delete(m.touched, i, i+1)
		}
		c.input(now, b, from, self)
		return
	}
	if i < 0 {
		m.touched = append(m.touched, c)
	}
	m.rxConn.Store(c)
	c.input(now, b, from, self)
	m.rxConn.Store(nil)
}

// deferredFlush reports whether c's flush (c.mu held) should wait for the
// end of the batch the reader is handing it, which flushes c again. A
// connection whose core closed flushes at once: it is forgotten before the
// batch ends.
func (m *mux) deferredFlush(c *Conn) bool {
	return m.rxConn.Load() == c && !c.core.Closed()
}

// unmap gives IPv4 peers of a dual-stack socket their plain IPv4 address,
// so that one peer has one address whichever way it was learnt.
func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// handleDatagram routes one received datagram: the Endpoint decides (a
// connection's datagram, a new connection, or something it answers or
// drops), the mux hands it over.
func (m *mux) handleDatagram(now time.Time, b []byte, from netip.AddrPort) {
	if c := m.owner.holder.self; c != nil && len(b) >= core.PacketOverhead && core.IsDataPacket(b[1]) &&
		binary.BigEndian.Uint64(b[2:10]) == c.cid {
		// A direct read's own connection needs no lookup (its cid never
		// changes); the connection checks the datagram.
		m.deliver(now, c, b, from)
		return
	}
	var reply [64]byte
	m.mu.Lock()
	ev := m.ep.HandleDatagram(now, from, b)
	n, to, ok := m.ep.PollTransmit(now, reply[:])
	var c *Conn
	if ev.Kind == core.EventDatagram {
		c = m.conns[ev.Conn.LocalCID()]
	}
	m.mu.Unlock()
	if ok && !m.sockClosed.Load() {
		m.writeTo(reply[:n], to)
	}
	switch ev.Kind {
	case core.EventDatagram:
		if c != nil {
			m.deliver(now, c, b, from)
		}
	case core.EventNewConn:
		m.accept(now, ev.Conn, b, from)
	}
}

// accept takes the server side of a connection the Endpoint created for a
// HELLO that echoed a valid cookie, and offers it to the acceptor; if that
// is full (or gone), the Endpoint refuses the attempt.
func (m *mux) accept(now time.Time, cc *core.Conn, b []byte, from netip.AddrPort) {
	m.mu.Lock()
	acc := m.acceptor
	m.mu.Unlock()
	if acc != nil {
		acc.admit(now, from)
	}
	c := newConn(m, cc, from)
	c.touch(now)
	c.mu.Lock()
	defer c.mu.Unlock()
	// A protected connection is offered once its handshake completed
	// (settleLocked): the application never sees one that fails it.
	c.offerLater = !cc.Acceptable()
	m.mu.Lock()
	why := refusedClosed
	if m.acceptor != nil && !m.sockClosed.Load() {
		why = admitted
		if !c.offerLater {
			why = m.acceptor.offer(now, c)
		}
	}
	if why != admitted {
		if m.ep.Reject(cc) {
			m.counts.count(why)
		}
		var reply [64]byte
		n, to, ok := m.ep.PollTransmit(now, reply[:])
		m.mu.Unlock()
		if ok {
			m.writeTo(reply[:n], to)
		}
		return
	}
	if c.pc != nil {
		m.addPeerLocked(c, from)
	}
	m.registerLocked(c)
	m.mu.Unlock()
	m.counts.accepted.Add(1)
	c.core.HandleDatagramFrom(now, netip.AddrPort{}, b)
	c.settleLocked(now)
}

// dialCeiling is the MaxDatagramSize of a connection dialed to raddr when
// it follows the route (settings.datagramFromRoute): the route's, or the
// core's default where the kernel does not tell it. The answer is kept a
// while per destination (routeCache).
func dialCeiling(raddr netip.AddrPort) int {
	return dialCeilings.ceiling(raddr, monoNow(), func(to netip.AddrPort) int {
		if route := routeDatagramCeiling(to); route > 0 {
			return route
		}
		return core.DefaultMaxDatagramSize
	})
}

// dialCeilings is the process's routeCache for dialCeiling.
var dialCeilings routeCache

// A routeCache keeps, for routeCacheTTL, the datagram ceiling asked of the
// route to each destination address: asking costs a throwaway socket and
// three more system calls, an eighth of a loopback dial's CPU (profile of
// rudpbench conns, 1000 dials), while a route's MTU seldom changes (a path
// that shrank is found by the path MTU search's black-hole detection,
// PROTOCOL.md §15). It holds at most routeCacheMax addresses (the
// application's dial targets, not a peer's choice): when full it starts
// afresh.
type routeCache struct {
	mu sync.Mutex
	m  map[netip.Addr]routeCeiling
}

type routeCeiling struct {
	size int
	at   time.Time // when it was asked
}

const (
	routeCacheTTL = 5 * time.Second
	routeCacheMax = 1024
)

// ceiling returns to's ceiling: the one kept for its address if asked
// less than routeCacheTTL before now, else what ask returns (with no lock
// held), which is kept.
func (r *routeCache) ceiling(to netip.AddrPort, now time.Time, ask func(netip.AddrPort) int) int {
	a := to.Addr().Unmap()
	r.mu.Lock()
	e, ok := r.m[a]
	r.mu.Unlock()
	if ok && now.Sub(e.at) < routeCacheTTL {
		return e.size
	}
	size := ask(to)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= routeCacheMax {
		r.m = make(map[netip.Addr]routeCeiling)
	}
	r.m[a] = routeCeiling{size, now}
	return size
}

// dial makes the client side of a new connection to raddr and sends its
// first HELLO. The connection is registered, so the socket stays open while
// it lives.
func (m *mux) dial(now time.Time, raddr netip.AddrPort, pc *PacketConn, host string) (*Conn, error) {
	cfg := m.set.coreForHost(host)
	if m.set.datagramFromRoute {
		// (Asked before m.mu is taken: it is a few system calls.)
		own := *cfg
		own.MaxDatagramSize = dialCeiling(raddr)
		cfg = &own
	}
	m.mu.Lock()
	cc, err := m.ep.Connect(now, raddr, cfg)
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	c := newConn(m, cc, raddr)
	c.touch(now)
	c.pc = pc
	c.estCh = make(chan struct{})
	c.mu.Lock()
	defer c.mu.Unlock()
	m.mu.Lock()
	// A PacketConn's Close clears the acceptor under m.mu: a WriteTo that
	// raced it must not open a connection nobody can reach or close.
	// A sharded Listener's socket with no user left only waits for the
	// group's others to close with them.
	if m.sockClosed.Load() || (m.group != nil && m.users == 0) || (pc != nil && m.acceptor != acceptor(pc)) {
		m.ep.Remove(cc)
		m.mu.Unlock()
		return nil, net.ErrClosed
	}
	m.registerLocked(c)
	if pc != nil {
		pc.table.add(c, hostOf(raddr)) // counted, never refused: the application chose this peer
		m.addPeerLocked(c, raddr)
	}
	m.mu.Unlock()
	if pc == nil {
		c.settleLocked(now)
	}
	// A PacketConn's connection is settled (its HELLO sent) by the WriteTo
	// that dialed it, once its message is queued: settled here, a peer's
	// refusal could end it before that message, and the WriteTo would
	// report the failure at once instead of queueing and reporting it on
	// the next call, as every other failure is.
	return c, nil
}

// addPeerLocked makes c the connection a PacketConn's WriteTo uses for
// addr, unless one is already there. A failure of an earlier connection
// to addr is not reported once the peer connected again.
func (m *mux) addPeerLocked(c *Conn, addr netip.AddrPort) {
	if m.peers == nil {
		m.peers = make(map[netip.AddrPort]*Conn)
	}
	if m.peers[addr] == nil {
		m.peers[addr] = c
		c.peerKey = addr
		c.pc.table.takeFailure(addr)
	}
}

// movePeer makes c the connection a PacketConn's WriteTo uses for its
// peer's new address to (c.mu held), unless another holds that address:
// ReadFrom reports the new address, and a reply to it must take this
// connection, not open a second one, which a dialed peer never accepts.
func (m *mux) movePeer(c *Conn, to netip.AddrPort) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !c.registered {
		return
	}
	from := netip.AddrPort{}
	if m.peers[c.peerKey] == c {
		from = c.peerKey
		delete(m.peers, c.peerKey)
		c.peerKey = netip.AddrPort{}
	}
	c.pc.table.moved(c, from)
	m.addPeerLocked(c, to)
}

// remove forgets an ended connection and releases its hold on the socket
// (c.mu held). If c was the connection a PacketConn's WriteTo used for its
// address and it failed, the next WriteTo there reports why.
func (m *mux) remove(c *Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conns[c.cid] != c {
		return
	}
	c.registered = false
	delete(m.conns, c.cid)
	m.ep.Remove(c.core)
	m.owner.conns.Store(int32(len(m.conns)))
	if c.pc != nil {
		c.pc.table.drop(c)
		c.pc.table.forgetLeft(c)
		if m.peers[c.peerKey] == c {
			delete(m.peers, c.peerKey)
			if err := c.core.Err(); isFailure(err) {
				c.pc.table.fail(c.peerKey, err)
			}
		}
	}
	m.timers.remove(c)
	m.releaseLocked()
}

// release drops a Listener's or PacketConn's hold on the socket.
func (m *mux) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releaseLocked()
}

// registerLocked makes c one of the socket's connections (remove undoes
// it): datagrams for its CID reach it, and the socket stays open while it
// lives.
func (m *mux) registerLocked(c *Conn) {
	m.conns[c.cid] = c
	c.registered = true
	m.owner.conns.Store(int32(len(m.conns)))
	m.users++
}

// releaseLocked closes the socket once nothing uses it (a sharded
// Listener's once nothing uses any of its group).
func (m *mux) releaseLocked() {
	m.users--
	if m.users > 0 || m.sockClosed.Load() {
		return
	}
	if m.group != nil {
		m.group.idle(m)
		return
	}
	m.closeSocketLocked()
}

// closeSocketLocked closes the socket (m.mu held).
func (m *mux) closeSocketLocked() {
	if m.sockClosed.Load() {
		return
	}
	m.sockClosed.Store(true)
	m.timers.stop()
	_ = m.sock.Close()     // the reader goroutine ends with it
	m.owner.socketClosed() // also while it waits for callers to free the socket
}

// schedule sets when c's timers are next due (zero: never).
func (m *mux) schedule(c *Conn, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.registered {
		m.timers.schedule(c, at)
	}
}

// onTimer is what the socket's time.Timer runs (default mode).
func (m *mux) onTimer() {
	m.mu.Lock()
	m.timers.fired()
	m.mu.Unlock()
	m.fireTimers(monoNow())
}

// fireTimers runs the timers of every connection due at now, after the
// ICMP reports a failed send left for it.
func (m *mux) fireTimers(now time.Time) {
	if m.errPending.Swap(false) {
		m.handleErrQueue(now)
	}
	var some [8]*Conn // usually enough, without allocating
	due := some[:0]
	m.mu.Lock()
	due = m.timers.popDue(now, due)
	m.mu.Unlock()
	for _, c := range due {
		c.handleTimeout(now)
	}
}

// pump is Manual mode's engine: it reads every datagram ready on the
// socket, fires due timers and so flushes what they make ready. It never
// blocks (a concurrent pump's socket reads are skipped, not waited for).
func (m *mux) pump() error {
	if m.sockClosed.Load() {
		return net.ErrClosed
	}
	if m.pumpMu.TryLock() {
		for read, failed := 0, 0; read < 4096; {
			b, err := m.receive(false)
			if err != nil {
				if failed++; failed < 8 && m.socketError(err) {
					continue
				}
				break
			}
			read += b.n
			m.handleBatch(b)
		}
		m.pumpMu.Unlock()
	}
	m.fireTimers(monoNow())
	return nil
}
