package core

import (
	"testing"
	"time"
)

// hostilePeer crafts packets by hand for a Conn, as a misbehaving peer may.
type hostilePeer struct {
	c    *Conn
	now  time.Time
	pn   uint32
	buf  []byte
	sent [][]byte // what c sent in answer to the last packet
}

func newHostilePeer(t testing.TB) *hostilePeer {
	return newHostilePeerConfig(t, &Config{MaxMessageSize: hostileWindow / 2, ReceiveWindow: hostileWindow})
}

func newHostilePeerConfig(t testing.TB, cfg *Config) *hostilePeer {
	return newHostilePeerLimited(t, cfg, 0)
}

// newHostilePeerLimited is a hostile peer of a Conn whose receive window
// is capped at limit (SetReceiveLimit) from the start.
func newHostilePeerLimited(t testing.TB, cfg *Config, limit int) *hostilePeer {
	t.Helper()
	now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := NewConn(cfg, 0xC0FFEE, now)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReceiveLimit(now, limit)
	h := &hostilePeer{c: c, now: now, pn: 0xFFFFFFF0, buf: make([]byte, 0, 2048)}
	hello := HelloFrame{SrcCID: 0xBAD, InitialSeq: 0xFFFFFFF0, MaxData: 1 << 30, MaxAckDelay: 1000, MaxMessageSize: 1 << 20, MaxDatagramSize: 1400}
	h.send(appendHello(nil, &hello))
	if !c.Established() {
		t.Fatal("not established by the peer's HELLO")
	}
	return h
}

// send delivers one packet with the given frames and a fresh packet number.
func (h *hostilePeer) send(frames []byte) {
	b := h.buf[:headerLen]
	putHeader(b, Header{Type: PacketData, DstCID: h.c.localCID, PacketNumber: h.pn})
	h.pn++
	b = append(b, frames...)
	b = b[:len(b)+trailerLen]
	n := sealPacket(b, len(b)-trailerLen)
	h.now = h.now.Add(time.Microsecond)
	h.c.HandleDatagram(h.now, b[:n])
	h.sent = h.sent[:0]
	buf := make([]byte, 2048)
	for n := h.c.PollTransmit(h.now, buf); n > 0; n = h.c.PollTransmit(h.now, buf) {
		h.sent = append(h.sent, append([]byte(nil), buf[:n]...))
	}
}

// hostileWindow takes two messages of 4 KiB (what one is charged, msgCredit, twice).
const hostileWindow = 2 * (4096 + msgCreditOverhead + 4096/64)

// footprint is what the receiver holds for a peer.
func footprint(c *Conn) int {
	n := len(c.ord.pending) + len(c.ord.noneMsgs) + len(c.acks.recvd.runs)
	for _, m := range c.ord.pending {
		n += m.footprint()
	}
	for _, m := range c.ord.noneMsgs {
		n += m.footprint()
	}
	return n
}

// TestHostilePeerMemoryBounded sends what an honest peer never would and
// checks that what the receiver keeps stays bounded while the application
// reads (or does not read) slowly.
func TestHostilePeerMemoryBounded(t *testing.T) {
	const rounds = 20000
	cases := []struct {
		name string
		read bool
		msg  func(i uint32) msgFrame
	}{
		{"empty None flood, unread", false, func(i uint32) msgFrame {
			return msgFrame{guarantee: None, seq: 0xFFFFFFF0 + i}
		}},
		{"empty Order set without end, read", true, func(i uint32) msgFrame {
			return msgFrame{guarantee: Order, seq: 0xFFFFFFF0 + i, d: 0xFFFFFFF0, inSet: true, groupOff: uint64(i)}
		}},
		{"empty Order set without end, unread", false, func(i uint32) msgFrame {
			return msgFrame{guarantee: Order, seq: 0xFFFFFFF0 + i, d: 0xFFFFFFF0, inSet: true, groupOff: uint64(i)}
		}},
		{"Delivery set whose first message never comes, read", true, func(i uint32) msgFrame {
			return msgFrame{guarantee: Delivery, seq: 0xFFFFFFF0 + i + 1, d: 0xFFFFFFF0 + i + 1, inSet: true,
				groupOff: uint64(i + 1), baseOff: uint64(i + 1)}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostilePeer(t)
			peak := 0
			for i := uint32(0); i < rounds; i++ {
				m := tc.msg(i)
				h.send(appendMsg(nil, &m))
				if tc.read {
					for {
						msg, err := h.c.Recv()
						if err != nil || msg.Data == nil {
							break
						}
					}
				}
				peak = max(peak, footprint(h.c))
			}
			if h.c.Closed() {
				t.Logf("connection ended: %v", h.c.Err())
			}
			// Bounded by the window: its bytes, and an entry per msgCreditOverhead of it.
			if peak > hostileWindow+2*hostileWindow/msgCreditOverhead+maxAckRanges {
				t.Fatalf("receiver holds %d entries+bytes after %d hostile messages (pending %d, none %d)",
					peak, rounds, len(h.c.ord.pending), len(h.c.ord.noneMsgs))
			}
			t.Logf("peak footprint %d", peak)
		})
	}
}

// TestHostileAckRangesBounded: a peer whose packets arrive with gaps
// (every other number) cannot grow the receiver's ack ranges.
func TestHostileAckRangesBounded(t *testing.T) {
	h := newHostilePeer(t)
	for i := 0; i < 5000; i++ {
		h.pn++ // skip one
		h.send([]byte{framePing})
	}
	if n := len(h.c.acks.recvd.runs); n > maxAckRanges {
		t.Fatalf("%d ack ranges kept, want at most %d", n, maxAckRanges)
	}
}

// TestTinyMessagesBounded: empty messages cost no buffer bytes, but the
// sender still bounds how many it queues, and SendBufferAvailable says so.
func TestTinyMessagesBounded(t *testing.T) {
	c, err := NewConn(&Config{SendBufferSize: 64 << 10, MaxMessageSize: 32 << 10}, 1, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; n < 1<<20; n++ {
		if err := c.Send(Delivery, nil); err != nil {
			if err != ErrSendBufferFull {
				t.Fatalf("Send: %v", err)
			}
			break
		}
	}
	if n != c.maxFrags || c.SendBufferAvailable() != 0 {
		t.Fatalf("queued %d empty messages (bound %d), %d bytes still available", n, c.maxFrags, c.SendBufferAvailable())
	}
}
