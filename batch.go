package rudp

import (
	"net/netip"
	"sync"
)

// Batched socket I/O. A reader takes up to rxBatch's worth of datagrams per
// system call (recvmmsg on Linux), and a flush hands the kernel every
// datagram a connection has ready in one call (sendmmsg, with runs of
// equal-sized datagrams as one UDP GSO buffer where the kernel offers it).
// Where the kernel offers UDP GRO, a receive buffer may hold a run of
// datagrams from one sender coalesced, which the reader cuts apart again;
// such sockets take 64 KiB buffers, borrowed only while a read runs.
// Other platforms, and Config.DisableBatchIO, move one datagram per call.
//
// Batches come from pools shared by every socket with the same datagram
// size and are held only while a read or a flush is in progress, so an idle
// socket (each dialed Conn has its own) owns no buffer.

// Batch sizes.
const (
	rxBatchLen   = 32        // datagrams per receive call
	rxBatchBytes = 256 << 10 // bounds rxBatchLen for large datagrams
	txBatchLen   = 64        // datagrams per flush call (and per GSO buffer, UDP_MAX_SEGMENTS)
	gsoMaxBytes  = 65000     // one GSO buffer, under the 65507-byte UDP payload limit of IPv4
)

// rxBatch is what one receive call filled: message i is bufs[i][:lens[i]]
// from from[i], one datagram or, when segs[i] is set, datagrams of segs[i]
// bytes back to back (the last may be shorter) that GRO coalesced.
type rxBatch struct {
	size int // each buffer holds size+1 bytes, so that a longer datagram shows as truncated
	bufs [][]byte
	lens []int
	segs []int
	from []netip.AddrPort
	n    int
	sys  rxSys      // the platform's system-call state
	pool *sync.Pool // where release returns it
}

// txBatch is a flush's datagrams, packed back to back in buf: datagram i
// is lens[i] bytes, of which parts[i].held are in buf, starting where
// datagram i-1's end. buf holds at least two of the largest datagrams, and
// as many datagrams of the size in use as one GSO buffer takes: a
// connection whose datagrams are smaller than its socket's largest (a path
// that carries less) still batches. A datagram may leave its data in its
// connection's send buffer (parts[i].data: core.Conn.PollTransmitGather),
// where it stays unchanged while the connection's lock is held: the
// kernel takes it from there (an iovec), which saves copying every byte
// of a bulk transfer into buf first.
type txBatch struct {
	buf  []byte
	used int // bytes of buf used
	// bytes is the datagrams' length, data elsewhere included: what
	// bounds a batch, so that a flush's bursts are as large as when every
	// datagram was in buf (a batch of a whole window of 64 KiB datagrams
	// left in send buffers drew more probe timeouts on a loaded machine).
	bytes int
	lens  []int
	parts []txParts
	// probe is 1 + the index of a path MTU probe in the batch (0: none).
	// It never shares a GSO buffer: one whose segment size the route's MTU
	// refuses fails whole (EINVAL), and would turn GSO off for the socket.
	probe int
	sys   txSys
}

// txParts is where a datagram of a txBatch is: its held bytes in buf, with
// data, if any, in between at bytes and the rest.
type txParts struct {
	held, at int
	data     []byte
}

// next returns the room left for more datagrams, or nil when the batch is
// full: fewer than need bytes (the connection's datagram size) are left.
// The room may be longer; a path MTU probe longer than need is written only
// into room that holds it (core.Conn.PollTransmit).
func (b *txBatch) next(need int) []byte {
	if len(b.lens) == cap(b.lens) || b.bytes+need > len(b.buf) {
		return nil
	}
	return b.buf[b.used:]
}

// add records that the datagram written into next's room is n bytes.
func (b *txBatch) add(n int) { b.addGathered(n, n, nil) }

// addGathered records a datagram of which n bytes were written into next's
// room, with data (nil: none) to go in between its first at bytes and the
// rest: core.Conn.PollTransmitGather's datagram.
func (b *txBatch) addGathered(n, at int, data []byte) {
	b.lens = append(b.lens, n+len(data))
	b.parts = append(b.parts, txParts{held: n, at: at, data: data})
	b.used += n
	b.bytes += n + len(data)
}

// datagram returns datagram i, whose held bytes start at off in buf, in
// one piece: in buf, or put together in scratch if its data is elsewhere.
func (b *txBatch) datagram(i, off int, scratch *[]byte) []byte {
	p := b.parts[i]
	if p.data == nil {
		return b.buf[off : off+p.held]
	}
	*scratch = append(append(append((*scratch)[:0], b.buf[off:off+p.at]...), p.data...), b.buf[off+p.at:off+p.held]...)
	return *scratch
}

// addProbe is add for a path MTU probe.
func (b *txBatch) addProbe(n int) {
	b.add(n)
	b.probe = len(b.lens)
}

func (b *txBatch) reset() {
	b.lens = b.lens[:0]
	clear(b.parts) // (no send buffer kept alive by a pooled batch)
	b.parts = b.parts[:0]
	b.used, b.bytes = 0, 0
	b.probe = 0
}

type batchKey struct{ size, n int }

var rxPools, txPools sync.Map // batchKey -> *sync.Pool

// rxPool returns the pool of receive batches of n buffers for datagrams of
// up to size bytes.
func rxPool(size, n int) *sync.Pool {
	key := batchKey{size, n}
	if p, ok := rxPools.Load(key); ok {
		return p.(*sync.Pool)
	}
	p, _ := rxPools.LoadOrStore(key, &sync.Pool{New: func() any {
		b := &rxBatch{
			pool: rxPool(size, n),
			size: size,
			bufs: make([][]byte, n),
			lens: make([]int, n),
			segs: make([]int, n),
			from: make([]netip.AddrPort, n),
		}
		mem := make([]byte, n*(size+1))
		for i := range b.bufs {
			b.bufs[i] = mem[i*(size+1) : (i+1)*(size+1) : (i+1)*(size+1)]
		}
		b.sys.init(b)
		return b
	}})
	return p.(*sync.Pool)
}

// drained reports whether the read that filled b most likely emptied the
// socket: it took fewer datagrams than it had room for, or it was a read of
// one datagram (a batch of one buffer: smallRead, muxSys.rxOne), which
// looks for no second.
func (b *rxBatch) drained() bool { return b.n < len(b.bufs) || len(b.bufs) == 1 }

// rxSmallSize is the datagram size of the one-buffer batches a lone small
// datagram is moved into (smallRead): 2 KiB with the extra byte.
const rxSmallSize = 2047

// smallRead moves a lone datagram of b that fits rxSmallSize into a small
// batch and gives b back, so that the big buffer (64 KiB with GRO or large
// datagrams) is held only during the system call, not while the datagram is
// handled, which may wait for its connection's lock: with hundreds of
// request-response connections, each held one (issue 12: memory per active
// connection). The copy is at most 2 KiB.
func smallRead(b *rxBatch) *rxBatch {
	if b.n != 1 || b.lens[0] > rxSmallSize || b.size <= rxSmallSize {
		return b
	}
	s := rxSmallPool.Get().(*rxBatch)
	s.n = 1
	s.lens[0], s.segs[0], s.from[0] = b.lens[0], b.segs[0], b.from[0]
	copy(s.bufs[0], b.bufs[0][:b.lens[0]])
	b.release()
	return s
}

// rxSmallPool is smallRead's pool.
var rxSmallPool = rxPool(rxSmallSize, 1)

// release returns b to the pool it came from, which is not the socket's
// current one after the socket switched buffer sizes: a batch of small
// buffers must never be handed out as large ones.
func (b *rxBatch) release() { b.pool.Put(b) }

// rxBatchLenFor is how many datagrams of up to size bytes one receive call
// takes.
func rxBatchLenFor(size int, batched bool) int {
	if !batched {
		return 1
	}
	return max(1, min(rxBatchLen, rxBatchBytes/(size+1)))
}

// txPool returns the pool of flush batches for datagrams of up to size bytes.
func txPool(size int) *sync.Pool {
	key := batchKey{size, 0}
	if p, ok := txPools.Load(key); ok {
		return p.(*sync.Pool)
	}
	p, _ := txPools.LoadOrStore(key, &sync.Pool{New: func() any {
		b := &txBatch{
			buf:   make([]byte, max(gsoMaxBytes, 2*size)),
			lens:  make([]int, 0, txBatchLen),
			parts: make([]txParts, 0, txBatchLen),
		}
		b.sys.init(b)
		return b
	}})
	return p.(*sync.Pool)
}

// setRxPool picks the receive batches for the current datagram size and
// batching.
func (u *udpSocket) setRxPool() {
	u.rxPool = rxPool(u.rxSize, rxBatchLenFor(u.rxSize, u.rxBatched))
	u.rxLonePool = rxPool(u.rxSize, 1)
}

// receiveOne reads one datagram, waiting for it if wait is set (else
// failing when none is ready).
func (u *udpSocket) receiveOne(wait bool) (*rxBatch, error) {
	b := u.rxPool.Get().(*rxBatch)
	var (
		n    int
		from netip.AddrPort
		err  error
	)
	if wait {
		n, from, err = u.sock.ReadFromUDPAddrPort(b.bufs[0])
	} else {
		n, from, err = readNonBlocking(u.raw, b.bufs[0])
	}
	if err != nil {
		b.release()
		return nil, err
	}
	b.lens[0], b.segs[0], b.from[0], b.n = n, 0, unmap(from), 1
	return b, nil
}

// sendEach sends b's datagrams from datagram from on, one call each.
func (u *udpSocket) sendEach(b *txBatch, from int, to netip.AddrPort) {
	off := 0
	var scratch []byte // (a datagram in pieces: only after a batch call failed)
	for i, p := range b.parts {
		if i >= from {
			u.writeTo(b.datagram(i, off, &scratch), to)
		}
		off += p.held
	}
}
