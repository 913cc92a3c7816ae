package sim

import (
	"encoding/binary"
	"hash/crc32"
	"time"
)

// Toy nodes for the tests: each implements Node with as little protocol as the test needs.

// datagram layout used by pacer and checked by recorder: seq (8 bytes), filler, crc32 (4 bytes).
const headerSize = 12

func fillDatagram(buf []byte, seq uint64, size int) int {
	binary.BigEndian.PutUint64(buf, seq)
	for i := 8; i < size-4; i++ {
		buf[i] = byte(seq) + byte(i)
	}
	binary.BigEndian.PutUint32(buf[size-4:], crc32.ChecksumIEEE(buf[:size-4]))
	return size
}

// pacer sends count numbered datagrams, one every interval (all at once when interval is 0),
// and records the arrival time of whatever comes back.
type pacer struct {
	count    int
	interval time.Duration
	sizes    []int // size of datagram i is sizes[i%len(sizes)]

	sent     int
	nextSend time.Time
	arrivals []time.Time
}

func newPacer(count int, interval time.Duration, sizes ...int) *pacer {
	return &pacer{count: count, interval: interval, sizes: sizes, nextSend: Epoch}
}

func (p *pacer) HandleDatagram(now time.Time, _ []byte) { p.arrivals = append(p.arrivals, now) }

func (p *pacer) PollTransmit(now time.Time, buf []byte) int {
	if p.sent >= p.count || now.Before(p.nextSend) {
		return 0
	}
	size := fillDatagram(buf, uint64(p.sent), p.sizes[p.sent%len(p.sizes)])
	p.sent++
	p.nextSend = p.nextSend.Add(p.interval)
	return size
}

func (p *pacer) NextTimeout() time.Time {
	if p.sent >= p.count {
		return time.Time{}
	}
	return p.nextSend
}

func (p *pacer) HandleTimeout(time.Time) {} // PollTransmit does the sending

// arrival is one datagram as a recorder saw it.
type arrival struct {
	at   time.Time
	seq  uint64 // meaningful only when len(data) >= 8
	data []byte // a copy, kept only when recorder.keep is set
	size int
	ok   bool // length and checksum intact
}

// recorder records every datagram it receives and sends nothing.
type recorder struct {
	keep     bool
	arrivals []arrival
}

func (r *recorder) HandleDatagram(now time.Time, b []byte) {
	a := arrival{at: now, size: len(b)}
	if len(b) >= 8 {
		a.seq = binary.BigEndian.Uint64(b)
	}
	if len(b) >= headerSize {
		a.ok = crc32.ChecksumIEEE(b[:len(b)-4]) == binary.BigEndian.Uint32(b[len(b)-4:])
	}
	if r.keep {
		a.data = append([]byte(nil), b...)
	}
	r.arrivals = append(r.arrivals, a)
}

func (r *recorder) PollTransmit(time.Time, []byte) int { return 0 }
func (r *recorder) NextTimeout() time.Time             { return time.Time{} }
func (r *recorder) HandleTimeout(time.Time)            {}

// echo sends back every datagram it receives, and whatever a test queues with send.
type echo struct {
	pending [][]byte
}

func (e *echo) HandleDatagram(_ time.Time, b []byte) { e.send(b) }
func (e *echo) send(b []byte)                        { e.pending = append(e.pending, append([]byte(nil), b...)) }

func (e *echo) PollTransmit(_ time.Time, buf []byte) int {
	if len(e.pending) == 0 {
		return 0
	}
	n := copy(buf, e.pending[0])
	e.pending = e.pending[1:]
	return n
}

func (e *echo) NextTimeout() time.Time  { return time.Time{} }
func (e *echo) HandleTimeout(time.Time) {}

// stuckTimer always reports a timer at a fixed time, however often it fires: a livelock.
type stuckTimer struct {
	at    time.Time
	fired int
}

func (s *stuckTimer) HandleDatagram(time.Time, []byte)   {}
func (s *stuckTimer) PollTransmit(time.Time, []byte) int { return 0 }
func (s *stuckTimer) NextTimeout() time.Time             { return s.at }
func (s *stuckTimer) HandleTimeout(time.Time)            { s.fired++ }

// chatty always has one more byte to send.
type chatty struct{ length int }

func (c *chatty) HandleDatagram(time.Time, []byte) {}
func (c *chatty) PollTransmit(_ time.Time, buf []byte) int {
	if c.length != 0 {
		return c.length
	}
	return 1
}
func (c *chatty) NextTimeout() time.Time  { return time.Time{} }
func (c *chatty) HandleTimeout(time.Time) {}

// backwardsTimer fires every second, but after its second firing it once reports a timer an
// hour in the past.
type backwardsTimer struct {
	next  time.Time
	fires []time.Time
}

func (b *backwardsTimer) HandleDatagram(time.Time, []byte)   {}
func (b *backwardsTimer) PollTransmit(time.Time, []byte) int { return 0 }
func (b *backwardsTimer) NextTimeout() time.Time             { return b.next }
func (b *backwardsTimer) HandleTimeout(now time.Time) {
	b.fires = append(b.fires, now)
	if len(b.fires) == 2 {
		b.next = now.Add(-time.Hour)
		return
	}
	b.next = now.Add(time.Second)
}

// arqSender moves total bytes to an arqReceiver in numbered chunks over a lossy link: a window
// of chunks in flight, one ack per chunk, retransmission after a fixed timeout. It allocates
// nothing once built, so the tests can count the simulator's own allocations.
type arqSender struct {
	chunk, window int
	rto           time.Duration
	chunks        int
	base          int // lowest unacked chunk
	acked         []bool
	sentAt        []time.Time
	ackedCount    int
}

func newARQSender(total, chunk, window int, rto time.Duration) *arqSender {
	n := (total + chunk - 1) / chunk
	return &arqSender{
		chunk: chunk, window: window, rto: rto, chunks: n,
		acked: make([]bool, n), sentAt: make([]time.Time, n),
	}
}

func (s *arqSender) done() bool { return s.ackedCount == s.chunks }

func (s *arqSender) HandleDatagram(_ time.Time, b []byte) {
	if len(b) != 8 {
		return // damaged ack
	}
	seq := binary.BigEndian.Uint64(b)
	if seq >= uint64(s.chunks) || s.acked[seq] {
		return
	}
	s.acked[seq] = true
	s.ackedCount++
	for s.base < s.chunks && s.acked[s.base] {
		s.base++
	}
}

func (s *arqSender) PollTransmit(now time.Time, buf []byte) int {
	for i := s.base; i < min(s.base+s.window, s.chunks); i++ {
		if s.acked[i] || (!s.sentAt[i].IsZero() && now.Before(s.sentAt[i].Add(s.rto))) {
			continue
		}
		s.sentAt[i] = now
		return fillDatagram(buf, uint64(i), s.chunk)
	}
	return 0
}

func (s *arqSender) NextTimeout() time.Time {
	var next time.Time
	for i := s.base; i < min(s.base+s.window, s.chunks); i++ {
		if s.acked[i] || s.sentAt[i].IsZero() {
			continue
		}
		if t := s.sentAt[i].Add(s.rto); next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}

func (s *arqSender) HandleTimeout(time.Time) {} // PollTransmit retransmits what is due

// arqReceiver acks every intact chunk and counts the distinct ones.
type arqReceiver struct {
	got      []bool
	distinct int
	acks     []uint64
	ackHead  int
}

func newARQReceiver(chunks int) *arqReceiver {
	return &arqReceiver{got: make([]bool, chunks), acks: make([]uint64, 0, 1024)}
}

func (r *arqReceiver) HandleDatagram(_ time.Time, b []byte) {
	if len(b) < headerSize || crc32.ChecksumIEEE(b[:len(b)-4]) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return
	}
	seq := binary.BigEndian.Uint64(b)
	if seq >= uint64(len(r.got)) {
		return
	}
	if !r.got[seq] {
		r.got[seq] = true
		r.distinct++
	}
	r.acks = append(r.acks, seq)
}

func (r *arqReceiver) PollTransmit(_ time.Time, buf []byte) int {
	if r.ackHead == len(r.acks) {
		r.acks, r.ackHead = r.acks[:0], 0
		return 0
	}
	binary.BigEndian.PutUint64(buf, r.acks[r.ackHead])
	r.ackHead++
	return 8
}

func (r *arqReceiver) NextTimeout() time.Time  { return time.Time{} }
func (r *arqReceiver) HandleTimeout(time.Time) {}
