package rudp

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/stream"
)

// Conn is one rudp connection as a net.Conn. With Config.Guarantee
// Delivery (the default) Read and Write carry a reliable ordered byte
// stream; with Order or None one Write is one message and one Read returns
// one whole message. SendMessage and ReadMessage move single messages with
// any guarantee.
//
// Every method may be called concurrently with any other. Concurrent
// writers are serialized, each Write whole; concurrent readers each get
// what arrives next (a Read that leaves data behind wakes the next one).
type Conn struct {
	m  *mux
	pc *PacketConn // the PacketConn this connection belongs to, if any

	writeMu sync.Mutex // one Write at a time, so a Write's bytes stay together

	mu        sync.Mutex // guards the fields below and every call on core and stream
	core      *core.Conn
	stream    *stream.Stream
	raddr     netip.AddrPort // the peer's address the core sends to now (followPeerLocked)
	peer      netip.AddrPort // the peer's last validated address: RemoteAddr, ReadFrom's
	origin    netip.AddrPort // the address the connection started with: the core's zero AddrPort
	ended     bool           // core reported Closed; the mux forgot the connection
	estDone   bool           // the handshake ended (established or failed)
	guarantee Guarantee      // what Write sends
	estCh     chan struct{}  // closed when estDone becomes true (dialed connections)
	// offerLater: an accepted protected connection, offered to the
	// acceptor once its handshake completes (offerLocked).
	offerLater bool
	inReady    bool               // in its PacketConn's ready list
	readyNext  *Conn              // the next of its host's in that list; guarded by the PacketConn's mu
	linger     time.Duration      // how long Close waits for the peer (see SetLinger)
	closeBy    monoTime           // a graceful close nobody waits for, making no progress until then, is aborted
	closeBuf   int                // send buffer space free when closeBy was last set
	nextAt     monoTime           // the timeout last passed to mux.schedule
	nextKnown  bool               // nextAt is what the socket's timer holds for c
	remoteSet  bool               // the peer's connection ID was given to the mux's Endpoint (for stateless resets)
	registered bool               // in m.conns; guarded by m.mu
	streams    map[uint64]*Stream // the streams handed out (streams.go), woken with the connection
	// unsettledRead counts the bytes Reads took since the last settle.
	unsettledRead int

	readWake chan struct{} // 1-buffered: something arrived or ended
	// writeWake is 1-buffered: send buffer space may have freed. Made by
	// the first Write that waits (wakeChan), as most connections' writes
	// never wait: 112 bytes less on both ends of every connection.
	writeWake chan struct{}
	// 1-buffered: the peer may have opened a stream (AcceptStream), or let
	// us open more (OpenStream); signalled with the others. Made by the
	// first call that waits (waitStream), so that a connection whose
	// application never opens or accepts a stream, most of them, does not
	// carry two channels (192 bytes; issue 12: memory per connection).
	acceptWake, openWake chan struct{}
	closeOnce            sync.Once
	closing              chan struct{} // closed by Close
	done                 chan struct{} // closed when the connection has ended (ended becomes true)
	rd, wd               deadline

	// Guarded by m.mu (and registered, above).
	cid     uint64
	peerKey netip.AddrPort // set when this is its PacketConn's connection for that address
	timer   timerSlot      // its place in m.timers
	host    netip.Addr     // the host its PacketConn counts it against (set once, before it is registered)
	slot    int            // its index among its host's in the peer table; -1: not counted

	// active is when a message last moved between the application and
	// the peer, in nanoseconds since clockBase (a PacketConn's peer table
	// reclaims the least recently active idle peer first).
	active atomic.Int64
}

func newConn(m *mux, cc *core.Conn, raddr netip.AddrPort) *Conn {
	return &Conn{
		m:         m,
		guarantee: m.set.guarantee,
		linger:    m.set.linger,
		core:      cc,
		stream:    stream.New(cc),
		raddr:     raddr,
		peer:      raddr,
		origin:    raddr,
		readWake:  make(chan struct{}, 1),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		cid:       cc.LocalCID(),
		slot:      -1,
	}
}

// input handles one datagram addressed to this connection. self: the
// connection's own Read is handling it, and looks again without a wakeup.
func (c *Conn) input(now time.Time, b []byte, from netip.AddrPort, self bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	var dropsBefore [4]uint64
	logDrops := c.m.set.debugOn()
	if logDrops {
		dropsBefore = core.ConnDrops(c.core)
	}
	if from == c.raddr {
		c.core.HandleDatagram(now, b)
	} else {
		// Another address: the core decides whether the connection moves
		// there (the newest packet, then a challenge; core/path.go). It
		// names the address the connection started with by the zero
		// AddrPort.
		if from == c.origin {
			from = netip.AddrPort{}
		}
		c.core.HandleDatagramFrom(now, from, b)
	}
	if logDrops {
		c.logDropsLocked(now, from, dropsBefore)
	}
	c.settleLocked(now)
	if self {
		signal(c.writeWake)
		signal(c.acceptWake)
		signal(c.openWake)
		c.wakeStreamsLocked()
		c.queueReadyLocked()
		return
	}
	c.wakeLocked()
}

// handleTimeout fires the connection's due timers.
func (c *Conn) handleTimeout(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.nextKnown = false // fired: the socket's timer forgot c
	c.core.HandleTimeout(now)
	c.settleLocked(now)
	c.wakeLocked()
}

// settleLocked sends what the core has ready, then either forgets the
// ended connection or reschedules its timer.
func (c *Conn) settleLocked(now time.Time) {
	if c.ended {
		return
	}
	c.unsettledRead = 0
	c.followPeerLocked()
	if !c.remoteSet {
		if id := c.core.RemoteCID(); id != 0 {
			c.remoteSet = true
			c.m.learnRemote(c)
		}
	}
	c.flushLocked(now)
	if !c.estDone && (c.core.Established() || c.core.Closed()) {
		c.endHandshakeLocked()
	}
	if c.offerLater && c.core.Established() {
		c.offerLocked(now)
	}
	next := c.core.NextTimeout()
	if c.closeBy != 0 && !c.core.Closed() {
		if free := c.core.SendBufferAvailable(); free > c.closeBuf {
			// The peer is still taking data: the close is progressing.
			c.closeBuf = free
			c.closeBy = toMono(now.Add(closeStall(c.m.set.core.IdleTimeout)))
		}
		if closeBy := c.closeBy.time(); !now.Before(closeBy) {
			// The graceful close made no end in time (a peer that stopped
			// reading can hold it up forever): give up on it.
			c.closeBy = 0
			c.core.Abort(now, core.ErrClosed)
			c.flushLocked(now)
			next = c.core.NextTimeout()
		} else if next.IsZero() || closeBy.Before(next) {
			next = closeBy
		}
	}
	if c.core.Closed() {
		c.endLocked()
		return
	}
	if c.nextKnown && toMono(next) == c.nextAt {
		return // the socket's timer already knows (most settles change nothing)
	}
	c.nextAt, c.nextKnown = toMono(next), true
	c.m.schedule(c, next)
}

// followPeerLocked keeps raddr the address the core sends to (after the
// peer's address changed, before it is validated too: core/path.go), and
// peer its last validated address, which the application sees: a
// PacketConn's ReadFrom reports it, and WriteTo to it takes this
// connection. A spoofed packet moves neither.
func (c *Conn) followPeerLocked() {
	c.raddr = c.orOrigin(c.core.PeerAddr())
	peer := c.orOrigin(c.core.ValidatedPeerAddr())
	if peer == c.peer {
		return
	}
	c.peer = peer
	if c.pc != nil {
		c.m.movePeer(c, peer)
	}
}

// orOrigin is a, or the address the connection started with if a is the
// zero AddrPort (as the core names it).
func (c *Conn) orOrigin(a netip.AddrPort) netip.AddrPort {
	if !a.IsValid() {
		return c.origin
	}
	return a
}

// readLocked follows a Read that took n bytes. What the application reads
// frees receive window, which the core advertises once a quarter of the
// window was read: a settle after every small read mostly finds nothing to
// send. Settling once readSettleBytes were read since the last settle (any
// settle sends a due window update) makes the update at most that late,
// far less than the data still buffered when it falls due, so a sender
// waiting for it never waits on a reader that has run dry. A zero now
// means: read the clock if a settle needs it (a Read reads it only then).
func (c *Conn) readLocked(now time.Time, n int) {
	c.unsettledRead += n
	if c.unsettledRead >= c.m.set.readSettleBytes() {
		c.settleLocked(orNow(now))
	}
}

// drainedLocked follows a stream's Read that found nothing to read and is
// about to wait: what was read since the last settle is settled now. A
// stream's writer may be waiting for the credit that reading gave back
// (the core sends it once the reader ran dry, docs/PROTOCOL.md §17.6),
// and nothing else would send it before the next timer.
func (c *Conn) drainedLocked(now time.Time) {
	if c.unsettledRead > 0 {
		c.settleLocked(orNow(now))
	}
}

// orNow is t, or the time now if t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return monoNow()
	}
	return t
}

// closeStall bounds how long a graceful close that nobody waits for (Close
// with a negative linger, a PacketConn's peer closed by ReadFrom) may go
// without progress (the peer taking none of the data still queued: it
// stopped reading) before it is aborted: a third of the idle timeout,
// between 1s and 10s. A close that Close or Shutdown waits for is bounded
// by their linger or context instead.
func closeStall(idle time.Duration) time.Duration {
	return min(max(idle/3, time.Second), 10*time.Second)
}

func (c *Conn) endHandshakeLocked() {
	if c.core.Established() {
		c.m.counts.handshakes.Add(1)
	} else {
		c.m.counts.handshakesFailed.Add(1)
	}
	c.estDone = true
	if c.estCh != nil {
		close(c.estCh)
	}
}

// offerLocked offers an accepted protected connection, its handshake
// complete, to the acceptor (Listener.Accept, PacketConn's peers); one
// it has no room for (or that is gone) is aborted.
func (c *Conn) offerLocked(now time.Time) {
	c.offerLater = false
	m := c.m
	m.mu.Lock()
	why := refusedClosed
	if m.acceptor != nil && !m.sockClosed.Load() {
		why = m.acceptor.offer(now, c)
	}
	m.mu.Unlock()
	if why != admitted {
		m.counts.count(why)
		c.core.Abort(now, ErrRefused)
		c.flushLocked(now)
	}
}

// ConnectionState returns the cryptographic handshake's state: with
// Config.TLS what crypto/tls reports (the peer's certificates, the
// negotiated protocol, the cipher suite), with Config.PSK the cipher suite;
// the zero value on a plaintext connection. Safe for concurrent use.
func (c *Conn) ConnectionState() tls.ConnectionState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.core.ConnectionState()
}

// endLocked forgets the connection: the core is done with it (or it is
// abandoned before its handshake completed).
func (c *Conn) endLocked() {
	if c.ended {
		return
	}
	c.ended = true
	close(c.done)
	if c.m.set.debugOn() {
		c.m.set.debug("rudp: connection closed", slog.Uint64("cid", c.cid), slog.String("laddr", c.m.laddr.String()),
			slog.String("raddr", c.raddr.String()), slog.Any("err", c.core.Err()))
	}
	if !c.estDone {
		c.endHandshakeLocked()
	}
	c.m.remove(c)
	c.wakeLocked()
	c.m.owner.interruptCaller()
}

// logDropsLocked logs (rate limited, through the socket's Endpoint) the
// datagram from from that the connection dropped, if it did: its drop
// counts are no longer before.
func (c *Conn) logDropsLocked(now time.Time, from netip.AddrPort, before [4]uint64) {
	after := core.ConnDrops(c.core)
	if after == before {
		return
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for i := range after {
		if after[i] != before[i] {
			c.m.ep.LogDrop(now, core.ConnDropCauses[i], from)
		}
	}
}

// flushLocked sends every datagram the core has ready, on the caller's
// goroutine, batched into as few system calls as the socket allows. While
// the reader hands the connection a batch of datagrams it waits for the
// batch's end, so that acknowledgements coalesce.
func (c *Conn) flushLocked(now time.Time) {
	if c.m.deferredFlush(c) {
		return
	}
	b := c.m.txBatches.Get().(*txBatch)
	gather := c.m.gathers()
	for {
		need := c.core.DatagramSize()
		room := b.next(need)
		if room == nil {
			c.m.send(b, c.raddr)
			b.reset()
			room = b.next(need)
		}
		var (
			n, at int
			data  []byte
			to    netip.AddrPort
		)
		if gather {
			// Large data goes from the send buffer (an iovec), not copied
			// into room first: b is sent before c.mu is let go.
			n, at, data, to = c.core.PollTransmitGather(now, room, gatherMin)
		} else {
			n, to = c.core.PollTransmitTo(now, room)
			at = n
		}
		if n == 0 {
			break
		}
		if to = c.orOrigin(to); to != c.raddr {
			// A datagram for another address than the current one (a
			// path challenge or its answer): rare, sent on its own.
			c.m.writeTo(joinGathered(room, n, at, data), to)
			continue
		}
		if n > c.core.DatagramSize() {
			b.addProbe(n) // (PING and PADDING: never gathered)
		} else {
			b.addGathered(n, at, data)
		}
	}
	c.m.send(b, c.raddr)
	b.reset()
	c.m.txBatches.Put(b)
}

// gatherMin is the least data a flush leaves in the send buffer, sent from
// there by an iovec of its own (PollTransmitGather): smaller data (a
// 1500-byte path's) is copied, which costs less than the iovec.
const gatherMin = 2048

// joinGathered puts a datagram PollTransmitGather left in pieces together
// in room (room[:at], data, room[at:n]; room holds a datagram) and returns it.
func joinGathered(room []byte, n, at int, data []byte) []byte {
	copy(room[at+len(data):], room[at:n])
	copy(room[at:], data)
	return room[:n+len(data)]
}

// wakeLocked tells blocked readers and writers that something changed.
func (c *Conn) wakeLocked() {
	signal(c.readWake)
	signal(c.writeWake)
	signal(c.acceptWake)
	signal(c.openWake)
	c.wakeStreamsLocked()
	c.queueReadyLocked()
}

// queueReadyLocked queues c for its PacketConn's ReadFrom if it has
// something to read.
func (c *Conn) queueReadyLocked() {
	// An ended connection is not queued: the core dropped what it held,
	// so a read would only find its error, and a write-only PacketConn
	// would pile up ended connections nobody pops.
	if c.pc != nil && !c.inReady && !c.ended && c.stream.Readable() {
		c.inReady = true
		c.pc.pushReady(c)
	}
}

// wakeChan returns the 1-buffered wake channel *ch, made if it is nil (by
// the first call that waits on it); the caller holds c.mu, and waits on
// what it got after letting c.mu go: a signal sent meanwhile stays in the
// channel. A channel not yet made is signalled by nobody (signal on nil
// does nothing), as nobody waits on it.
func wakeChan(ch *chan struct{}) chan struct{} {
	if *ch == nil {
		*ch = make(chan struct{}, 1)
	}
	return *ch
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// check reports why an operation bounded by dl must not proceed.
func (c *Conn) check(dl *deadline) error { return c.checkAt(dl, time.Time{}) }

// checkAt is check with the time now (zero: read the clock if dl is set).
func (c *Conn) checkAt(dl *deadline, now time.Time) error { return checkOpen(c.closing, dl, now) }

// checkOpen is the error a Conn's or PacketConn's call fails with at now,
// if any: net.ErrClosed once closing is closed, os.ErrDeadlineExceeded
// once dl passed (now zero: read the clock if dl is set).
func checkOpen(closing <-chan struct{}, dl *deadline, now time.Time) error {
	select {
	case <-closing:
		return net.ErrClosed
	default:
	}
	if dl.expiredAt(now) {
		return os.ErrDeadlineExceeded
	}
	return nil
}

func (c *Conn) remote() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peer
}

func (c *Conn) opErr(op string, err error) error {
	return opError(op, c.m.laddr, c.remote(), err)
}

// passWakeLocked passes the read wakeup on to another Read waiting
// concurrently when a returning Read leaves something readable: a wakeup
// wakes one Read, and a direct read's own datagrams wake none (the Read
// holding the socket looks again without one), so what one batch brought
// for several Reads would otherwise wait for the next datagram.
func (c *Conn) passWakeLocked() {
	if c.stream.Readable() {
		signal(c.readWake)
	}
}

// Read reads bytes of the stream (Delivery) or one whole message (Order,
// None: a too-small p gets an error matching ErrBufferTooSmall). It returns
// io.EOF after the peer's graceful close and everything it sent.
func (c *Conn) Read(p []byte) (int, error) {
	if c.guarantee != Delivery {
		n, _, err := c.readMessage("read", p)
		return n, err
	}
	w := c.readWaiter()
	defer w.stop()
	for {
		now := w.now()
		if err := c.checkAt(&c.rd, now); err != nil {
			return 0, c.opErr("read", err)
		}
		c.mu.Lock()
		n, err := c.stream.Read(p)
		if n > 0 {
			c.readLocked(now, n)
		}
		if n > 0 || err != nil {
			c.passWakeLocked()
		}
		c.mu.Unlock()
		switch {
		case n > 0:
			return n, nil
		case err != nil:
			return 0, c.opErr("read", err)
		case len(p) == 0:
			return 0, nil
		}
		w.wait(c.readWake, &c.rd)
	}
}

// ReadMessage reads one whole message and its guarantee, whatever
// Config.Guarantee says. If p is too small it returns an error matching
// ErrBufferTooSmall and keeps the message. A Delivery connection's Write
// cuts its bytes into messages of one datagram each.
func (c *Conn) ReadMessage(p []byte) (n int, g Guarantee, err error) {
	return c.readMessage("read", p)
}

func (c *Conn) readMessage(op string, p []byte) (int, Guarantee, error) {
	w := c.readWaiter()
	defer w.stop()
	for {
		now := w.now()
		if err := c.checkAt(&c.rd, now); err != nil {
			return 0, 0, c.opErr(op, err)
		}
		c.mu.Lock()
		n, g, err := c.stream.ReadMessage(p)
		if g != 0 && err == nil {
			c.readLocked(now, max(n, 1))
		}
		if g != 0 || err != nil {
			c.passWakeLocked()
		}
		c.mu.Unlock()
		if err != nil {
			return 0, g, c.opErr(op, err)
		}
		if g != 0 {
			return n, g, nil
		}
		w.wait(c.readWake, &c.rd)
	}
}

// Write writes p: with Delivery as bytes of the stream, with Order or None
// as one message. It blocks while the send buffer is full (backpressure),
// until the write deadline.
func (c *Conn) Write(p []byte) (int, error) {
	if c.guarantee != Delivery {
		if err := c.sendMessage("write", c.guarantee, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	w := c.waiter()
	defer w.stop()
	sent := 0
	for {
		now := monoNow()
		if err := c.checkAt(&c.wd, now); err != nil {
			return sent, c.opErr("write", err)
		}
		c.mu.Lock()
		n, err := c.stream.Write(p[sent:])
		sent += n
		if n > 0 {
			c.settleLocked(now)
		}
		var wake chan struct{}
		if sent < len(p) {
			wake = wakeChan(&c.writeWake)
		}
		c.mu.Unlock()
		if sent == len(p) {
			return sent, nil
		}
		if err != nil && !errors.Is(err, core.ErrWouldBlock) {
			return sent, c.opErr("write", err)
		}
		w.wait(wake, &c.wd)
	}
}

// SendMessage sends p as one message with guarantee g, whatever
// Config.Guarantee says. It blocks while the send buffer is full, until
// the write deadline.
func (c *Conn) SendMessage(g Guarantee, p []byte) error {
	return c.sendMessage("write", g, p)
}

func (c *Conn) sendMessage(op string, g Guarantee, p []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	w := c.waiter()
	defer w.stop()
	for {
		now := monoNow()
		if err := c.checkAt(&c.wd, now); err != nil {
			return c.opErr(op, err)
		}
		c.mu.Lock()
		err := c.stream.WriteMessage(g, p)
		if err == nil {
			c.settleLocked(now)
		}
		var wake chan struct{}
		if err != nil {
			wake = wakeChan(&c.writeWake)
		}
		c.mu.Unlock()
		if err == nil {
			return nil
		}
		if !errors.Is(err, core.ErrWouldBlock) {
			return c.opErr(op, err)
		}
		w.wait(wake, &c.wd)
	}
}

// Close closes the connection as a TCP socket with SO_LINGER set does, so
// that code written for TCP may close and exit: blocked Read and Write
// calls return net.ErrClosed at once, what was written is still delivered,
// then the peer is told (its Read returns io.EOF), and Close returns once
// the peer has acknowledged all of it, usually about a round trip. A rudp
// connection has no kernel to finish that work once the process exits, so
// Close does not return before it (TCP's Close returns at once). If the
// peer has closed too, nothing is owed to it and Close returns at once.
//
// The wait is bounded by the linger time (Config.Linger, SetLinger;
// default 10s): when it passes, the connection is aborted (the peer reads
// an error matching ErrAborted) and Close returns an error matching
// os.ErrDeadlineExceeded. If the connection ends with an error while Close
// waits (the peer aborted, the idle timeout), Close returns that error: what
// was written may not have arrived. A negative linger makes Close return
// at once, the close completing in the background while the process runs
// (its progress bounded as described in Config.Linger); a zero one makes
// Close abort the connection, discarding what is still unsent.
//
// In Manual mode Close drives the socket itself while it waits; with a
// negative linger keep calling Pump until it returns net.ErrClosed.
func (c *Conn) Close() error {
	if !c.markClosing() {
		return c.opErr("close", net.ErrClosed)
	}
	now := monoNow()
	c.mu.Lock()
	linger := c.linger
	pending := c.startCloseLocked(now, linger)
	c.mu.Unlock()
	if !pending || linger <= 0 {
		return nil
	}
	var dl deadline
	dl.set(now.Add(linger))
	if err := c.awaitClose(&dl, nil); err != nil {
		return c.opErr("close", err)
	}
	return nil
}

// CloseWrite shuts down the writing side of the connection, as
// *net.TCPConn's CloseWrite does: from then on Write and SendMessage fail
// with an error wrapping net.ErrClosed (a Write blocked on backpressure
// returns what it wrote so far with it), what was written is still
// delivered, and the peer's Read returns io.EOF once it has read all of it.
// Read goes on until the peer closes, or shuts down its own writing side.
// The connection stays open until Close, which waits as ever (bounded by
// the linger) for what was written to be acknowledged. Calling CloseWrite
// again does nothing; after Close it fails with net.ErrClosed.
func (c *Conn) CloseWrite() error {
	if err := c.check(&noDeadline); err != nil {
		return c.opErr("close", err)
	}
	now := monoNow()
	c.mu.Lock()
	err := c.core.CloseWrite(now)
	c.settleLocked(now)
	signal(c.writeWake) // a Write waiting for buffer space fails now
	c.mu.Unlock()
	if err != nil {
		return c.opErr("close", err)
	}
	return nil
}

// SetRedundancy turns redundancy on or off for what Write and
// SendMessage send on the connection's own stream (stream 0) from now on,
// as StreamOptions.Redundancy does for a stream; Config.Redundancy sets it
// from the start.
func (c *Conn) SetRedundancy(on bool) error {
	if c.check(&noDeadline) != nil {
		return c.opErr("set", net.ErrClosed)
	}
	c.mu.Lock()
	err := c.core.SetStreamRedundancy(0, on)
	c.mu.Unlock()
	if err != nil {
		return c.opErr("set", err)
	}
	return nil
}

// SetLinger sets how Close ends the connection, as *net.TCPConn's
// SetLinger does (in a Duration, not whole seconds): d > 0 makes Close
// wait up to d for the peer to acknowledge what was written, then abort;
// d < 0 makes Close return at once and finish the close in the background;
// d == 0 makes Close abort the connection, discarding unsent data. The
// default is Config.Linger's.
func (c *Conn) SetLinger(d time.Duration) error {
	if c.check(&noDeadline) != nil {
		return c.opErr("set", net.ErrClosed)
	}
	c.mu.Lock()
	c.linger = d
	c.mu.Unlock()
	return nil
}

// markClosing makes c closing: blocked and later calls fail with
// net.ErrClosed. It reports whether this call did it.
func (c *Conn) markClosing() bool {
	first := false
	c.closeOnce.Do(func() {
		first = true
		close(c.closing)
	})
	if first {
		c.m.owner.interruptCaller()
	}
	return first
}

// startCloseLocked starts ending the connection after markClosing, as
// linger says (see SetLinger): a graceful close, which closeStall bounds
// if linger < 0 (nobody waits for it), or an abort if linger == 0. It
// reports whether a graceful close is under way that awaitClose may wait
// for.
func (c *Conn) startCloseLocked(now time.Time, linger time.Duration) bool {
	switch {
	case c.ended:
		return false
	case !c.core.Established() && !c.core.HasPendingData():
		c.endLocked() // nothing to tell a peer we never heard from, nothing to deliver
		return false
	case linger == 0:
		c.core.Abort(now, core.ErrClosed)
		c.settleLocked(now)
		return false
	}
	// (A dialed connection still in its handshake delivers what WriteTo
	// queued once it is established, then closes.)
	c.core.Close(now)
	if linger < 0 {
		c.closeBy = toMono(now.Add(closeStall(c.m.set.core.IdleTimeout)))
		c.closeBuf = c.core.SendBufferAvailable()
	}
	c.settleLocked(now)
	return !c.ended
}

// closeAsync closes c gracefully without waiting, as Close with a negative
// linger does: for the library's own closes (a PacketConn's peer that
// ended, connections a closed Listener never handed out).
func (c *Conn) closeAsync() {
	if !c.markClosing() {
		return
	}
	c.mu.Lock()
	c.startCloseLocked(monoNow(), -1)
	c.mu.Unlock()
}

// errCloseStopped is what awaitClose returns when its stop channel closed.
var errCloseStopped = errors.New("rudp: close stopped")

// awaitClose waits until the graceful close under way leaves nothing owed
// to the peer: the connection ended (it returns the core's error: nil if
// the close completed) or the peer closed too (it reads nothing more; nil).
// When dl passes it aborts the connection and returns
// os.ErrDeadlineExceeded; when stop is closed, it aborts and returns
// errCloseStopped. In Manual mode it drives the socket while it waits.
func (c *Conn) awaitClose(dl *deadline, stop <-chan struct{}) error {
	// (Not c.waiter: c.closing is closed, and would end every wait.)
	w := waiter{m: c.m, closing: stop}
	defer w.stop()
	for {
		now := monoNow()
		expired := dl.expiredAt(now)
		stopped := ready(stop)
		c.mu.Lock()
		if c.ended || c.core.PeerClosed() {
			err := c.core.Err()
			c.mu.Unlock()
			return err
		}
		if expired || stopped {
			c.closeBy = 0
			c.core.Abort(now, core.ErrClosed)
			c.settleLocked(now)
			c.mu.Unlock()
			if expired {
				return os.ErrDeadlineExceeded
			}
			return errCloseStopped
		}
		wake := wakeChan(&c.writeWake)
		c.mu.Unlock()
		// Every datagram and timer that moves the close settles c, which
		// signals writeWake (no Write waits on it any more: c is closing).
		w.wait(wake, dl)
	}
}

// Shutdown closes the connection gracefully, as Close does, and waits until
// the close has completed: everything written was acknowledged by the peer
// and the peer was told (or the peer closed too). Where Close's wait is
// bounded by the linger time, Shutdown's is bounded by ctx: if ctx ends
// first, the connection is aborted and ctx's error returned (a ctx without
// a deadline leaves the close bounded only by its progress, as a
// background close is: see Config.Linger). Called after Close, it waits for
// the close Close began. In Manual mode Shutdown pumps the socket while it
// waits.
func (c *Conn) Shutdown(ctx context.Context) error {
	if c.markClosing() {
		c.mu.Lock()
		c.startCloseLocked(monoNow(), -1)
		c.mu.Unlock()
	}
	if _, ok := ctx.Deadline(); ok {
		c.mu.Lock()
		c.closeBy = 0 // ctx bounds this close, not its progress
		c.mu.Unlock()
	}
	switch err := c.awaitClose(&noDeadline, ctx.Done()); {
	case errors.Is(err, errCloseStopped):
		return c.opErr("close", ctx.Err())
	case err != nil:
		return c.opErr("close", err)
	}
	return nil
}

// TryReadMessage is ReadMessage that never waits, for game loops and
// other event loops (above all in Manual mode, after Pump): it returns
// (0, 0, nil) when no whole message is ready now. Deadlines do not apply.
func (c *Conn) TryReadMessage(p []byte) (n int, g Guarantee, err error) {
	if err := c.check(&noDeadline); err != nil {
		return 0, 0, c.opErr("read", err)
	}
	c.mu.Lock()
	n, g, err = c.stream.ReadMessage(p)
	if g != 0 && err == nil {
		c.readLocked(monoNow(), max(n, 1))
	}
	c.mu.Unlock()
	if err != nil {
		return 0, g, c.opErr("read", err)
	}
	return n, g, nil
}

// LocalAddr returns the local address of the connection's socket.
func (c *Conn) LocalAddr() net.Addr { return c.m.laddr }

// RemoteAddr returns the peer's current address (it follows NAT rebinding).
func (c *Conn) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(c.remote()) }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets when pending and future reads fail with an error
// matching os.ErrDeadlineExceeded; the zero time means never.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.check(&noDeadline) != nil {
		return c.opErr("set", net.ErrClosed)
	}
	c.rd.set(t)
	c.m.owner.interruptCaller()
	return nil
}

// SetWriteDeadline sets when pending and future writes fail with an error
// matching os.ErrDeadlineExceeded; the zero time means never.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.check(&noDeadline) != nil {
		return c.opErr("set", net.ErrClosed)
	}
	c.wd.set(t)
	return nil
}

// Stats returns the connection's counters and estimates.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.core.Stats()
}

// Pump does the connection's due work now and never blocks. In Manual mode
// it reads the datagrams ready on the socket (for every connection sharing
// it), fires due timers and sends what they make ready; after Close it
// keeps doing so and returns net.ErrClosed once the close completed. In
// default mode the library's goroutines do that work and Pump does nothing.
func (c *Conn) Pump() error {
	if !c.m.set.manual {
		return nil
	}
	_ = c.m.pump()
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	if ended && c.check(&noDeadline) != nil {
		return c.opErr("pump", net.ErrClosed)
	}
	return nil
}

// waiter waits for a blocked call's next chance to make progress.
func (c *Conn) waiter() waiter { return waiter{m: c.m, closing: c.closing} }

// readWaiter is the waiter of a blocked Read, which may read the socket
// itself (direct.go).
func (c *Conn) readWaiter() waiter {
	w := waiter{m: c.m, closing: c.closing}
	if c.m.owner.on {
		w.c = c
	}
	return w
}

// noDeadline is a deadline that is never reached.
var noDeadline deadline

// deadline is an absolute time bounding pending and future operations, as
// in net/pipe.go, but without a goroutine: waiters arm their own timer and
// are woken through changed when the deadline moves.
type deadline struct {
	mu      sync.Mutex
	at      time.Time
	changed chan struct{} // closed and dropped when at changes; made by get
	set0    atomic.Bool   // at is not zero: expired need not take mu or read the clock otherwise
}

// set makes t the deadline. A t without a monotonic reading (time.Unix, a
// decoded timestamp, t.Round(0)) is taken as the wall clock says now, and
// turned into a time on monoNow's clock, as package net turns a deadline
// into a duration from now when it is set: expiry (against monoNow) and
// the waits (time.Until, the socket's read deadline) then read the one
// clock, which they would not once the system clock stepped since
// clockBase was read. A time.Now-based t (the usual) keeps its monotonic
// reading and costs no clock read.
func (d *deadline) set(t time.Time) {
	if !t.IsZero() && t == t.Round(0) {
		t = monoNow().Add(time.Until(t))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = t
	d.set0.Store(!t.IsZero())
	if d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
}

func (d *deadline) get() (time.Time, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	return d.at, d.changed
}

// expiredAt reports whether the deadline passed at now (zero: read the
// clock if one is set).
func (d *deadline) expiredAt(now time.Time) bool {
	if !d.set0.Load() {
		return false
	}
	d.mu.Lock()
	at := d.at
	d.mu.Unlock()
	if at.IsZero() {
		return false
	}
	if now.IsZero() {
		now = monoNow()
	}
	return !now.Before(at)
}

// Manual mode: a blocked call pumps the socket, then sleeps a little
// (growing from manualPollMin to manualPollMax while nothing happens) or
// until woken.
const (
	manualPollMin = 20 * time.Microsecond
	manualPollMax = time.Millisecond
)

// waiter is the waiting part of one blocked call.
type waiter struct {
	m       *mux
	c       *Conn // a Read's connection, when it may read the socket itself
	closing <-chan struct{}
	done    <-chan struct{} // a context's Done (OpenStream, AcceptStream), or nil
	backoff time.Duration
	timer   *time.Timer
	read    time.Time // when a direct read handled what it read
}

// now returns the time a direct read just handled its datagrams at, or
// the zero time: a Read needs the clock only to check a read deadline
// (checkAt reads it if one is set) or to settle what it read (readLocked
// reads it then), and a round trip of small messages is CPU-bound on one
// thread (issue 12 target 2), a clock read a message each way.
func (w *waiter) now() time.Time {
	t := w.read
	w.read = time.Time{}
	return t
}

// wait returns when the caller should look again: wake fired, the
// deadline moved or passed, the connection was closed, or (Manual mode)
// after a pump and a short sleep. The caller checks what happened.
func (w *waiter) wait(wake <-chan struct{}, dl *deadline) {
	at, changed := dl.get()
	// A Read reading the socket itself arms the socket's read deadline
	// with at: its caller checked that at has not passed.
	if w.c != nil && w.readDirect(wake, at, changed) {
		return
	}
	d := time.Duration(-1)
	if !at.IsZero() {
		if d = time.Until(at); d <= 0 {
			return
		}
	}
	if w.m.set.manual {
		_ = w.m.pump()
		select {
		case <-wake:
			w.backoff = 0
			return
		default:
		}
		w.backoff = min(max(2*w.backoff, manualPollMin), manualPollMax)
		if d < 0 || w.backoff < d {
			d = w.backoff
		}
	}
	var expiry <-chan time.Time
	if d >= 0 {
		if w.timer == nil {
			w.timer = getTimer(d)
		} else {
			w.timer.Reset(d)
		}
		expiry = w.timer.C
	}
	select {
	case <-wake:
		w.backoff = 0
	case <-changed:
	case <-w.closing:
	case <-w.done:
	case <-expiry:
	}
}

func (w *waiter) stop() {
	if w.timer != nil {
		w.timer.Stop()
		timerPool.Put(w.timer)
		w.timer = nil
	}
}

// timerPool keeps stopped timers for the next blocked call: a Read or
// Write that waits with a deadline must not allocate one each time. Since
// Go 1.23 a stopped timer delivers no stale tick after Reset.
var timerPool sync.Pool

func getTimer(d time.Duration) *time.Timer {
	if t, ok := timerPool.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}
