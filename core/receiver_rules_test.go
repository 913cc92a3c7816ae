package core

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The receiver's side of what docs/PROTOCOL.md §3 lists as a sender's
// conventions: each test pins what a receiver does with a peer that does
// not follow one, so a second implementation knows what it may rely on.

// readStrings returns the messages c has ready, as strings.
func readStrings(t *testing.T, c *Conn) []string {
	t.Helper()
	msgs, err := recvAllOf(c)
	require.NoError(t, err)
	var got []string
	for _, m := range msgs {
		got = append(got, string(m))
	}
	return got
}

// hostileInitial is the InitialSeq of newHostilePeer's HELLO, where its
// numbering starts.
const hostileInitial = 0xFFFFFFF0

func deliveryMsg(seq uint32, data string) []byte {
	return appendMsg(nil, &msgFrame{guarantee: Delivery, seq: seq, d: seq, data: []byte(data)})
}

// TestFramesBeforeMalformedApplied: the frames before a malformed one take
// effect, the packet is dropped, not recorded and not acknowledged (§3).
func TestFramesBeforeMalformedApplied(t *testing.T) {
	h := newHostilePeer(t)
	before := h.c.Stats()
	largest, _ := LargestReceived(h.c)
	h.send(append(deliveryMsg(hostileInitial, "before"), 0x55))
	after := h.c.Stats()
	require.Equal(t, before.DatagramsDropped+1, after.DatagramsDropped)
	require.Equal(t, before.PacketsReceived, after.PacketsReceived)
	got, _ := LargestReceived(h.c)
	require.Equal(t, largest, got, "the dropped packet is not recorded as received")
	require.Equal(t, []string{"before"}, readStrings(t, h.c))
	// The sender resends it: a duplicate, applied and acknowledged.
	h.send(deliveryMsg(hostileInitial, "before"))
	require.Equal(t, after.PacketsReceived+1, h.c.Stats().PacketsReceived)
	require.Empty(t, readStrings(t, h.c))
}

// TestPaddingBeforeFrames: PADDING may stand before other frames (§3.1).
func TestPaddingBeforeFrames(t *testing.T) {
	h := newHostilePeer(t)
	before := h.c.Stats().PacketsReceived
	h.send(append([]byte{framePadding, framePadding, framePadding}, deliveryMsg(hostileInitial, "padded")...))
	require.Equal(t, before+1, h.c.Stats().PacketsReceived)
	require.Equal(t, []string{"padded"}, readStrings(t, h.c))
}

// TestWholeMessageAsOneFragment: a message sent with the fragment flag,
// offset 0 and length = total, is taken (§3.6: sending it whole is the
// sender's convention, not the receiver's rule).
func TestWholeMessageAsOneFragment(t *testing.T) {
	h := newHostilePeer(t)
	h.send(appendMsg(nil, &msgFrame{guarantee: Delivery, seq: hostileInitial, d: hostileInitial,
		fragment: true, total: 5, offset: 0, data: []byte("whole")}))
	require.Equal(t, []string{"whole"}, readStrings(t, h.c))
}

// TestOrderBaseOffIgnored: an Order message waits for the Delivery
// messages below its d whatever its baseOff says (§3.6): with the baseOff
// used as for Delivery it would have been read before the Delivery message
// it follows.
func TestOrderBaseOffIgnored(t *testing.T) {
	h := newHostilePeer(t)
	h.send(appendMsg(nil, &msgFrame{guarantee: Order, seq: hostileInitial + 1, d: hostileInitial + 1,
		inSet: true, baseOff: 1, data: []byte("order")}))
	require.Empty(t, readStrings(t, h.c), "the Order message waits for Delivery message InitialSeq")
	h.send(deliveryMsg(hostileInitial, "delivery"))
	require.Equal(t, []string{"delivery", "order"}, readStrings(t, h.c))
}

// TestFirstPacket: before the peer's HELLO, a packet must start with a
// HELLO (PADDING before it is not allowed there), in a datagram of any
// size; its number is unwrapped against the InitialSeq it carries, and the
// messages after the HELLO are received (§3.4, §5).
func TestFirstPacket(t *testing.T) {
	now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := NewConn(&Config{}, 0xC0FFEE, now)
	require.NoError(t, err)
	hello := appendHello(nil, &HelloFrame{SrcCID: 0xBAD, InitialSeq: hostileInitial, MaxData: 1 << 20,
		MaxAckDelay: 1000, MaxMessageSize: 1 << 20, MaxDatagramSize: 1400})
	packet := func(pn uint32, body []byte) []byte {
		return sealed(Header{Type: PacketData, DstCID: c.localCID, PacketNumber: pn}, body)
	}

	c.HandleDatagram(now, packet(hostileInitial, append([]byte{framePadding}, hello...)))
	require.False(t, c.Established(), "a first packet with PADDING before its HELLO is dropped")
	require.EqualValues(t, 1, c.Stats().DatagramsDropped)

	// The 22nd packet is the first to arrive: number 5 is 2^32 + 5.
	first := packet(5, append(hello, deliveryMsg(hostileInitial, "with the HELLO")...))
	require.Less(t, len(first), MinHelloDatagram, "a connection takes a HELLO in a short datagram")
	c.HandleDatagram(now, first)
	require.True(t, c.Established())
	largest, ok := LargestReceived(c)
	require.True(t, ok)
	require.Equal(t, uint64(1)<<32+5, largest)
	require.Equal(t, []string{"with the HELLO"}, readStrings(t, c))
}

// TestRetryNumberIgnored: a Retry's packet number means nothing (§4); the
// HELLO sent after it carries the same InitialSeq in a new packet number
// (§8.1).
func TestRetryNumberIgnored(t *testing.T) {
	now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	const initial = 1000
	c, err := NewConn(&Config{InitialSequence: initial}, 0xC0FFEE, now)
	require.NoError(t, err)
	buf := make([]byte, 2048)
	var sent int
	for n := c.PollTransmit(now, buf); n > 0; n = c.PollTransmit(now, buf) {
		sent++
	}
	require.Positive(t, sent, "the first HELLO")
	cookie := append([]byte{6}, "cookie"...) // its length, then the cookie
	c.HandleDatagram(now, sealed(Header{Type: PacketRetry, DstCID: c.localCID, PacketNumber: 0xDEADBEEF}, cookie))
	require.Zero(t, c.Stats().DatagramsDropped)

	n := c.PollTransmit(now, buf)
	require.Positive(t, n)
	h, body, err := ParseHeader(buf[:n])
	require.NoError(t, err)
	require.EqualValues(t, initial+sent, h.PacketNumber, "packet numbers go on after a Retry")
	hello, ok := PeekHello(body)
	require.True(t, ok)
	require.EqualValues(t, initial, hello.InitialSeq, "the same InitialSeq")
	require.Equal(t, "cookie", string(hello.Cookie))
}
