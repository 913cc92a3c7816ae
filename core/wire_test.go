package core

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWireConstants pins every value that appears on the wire: changing one
// breaks interoperability and must be a deliberate version change.
func TestWireConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"Version", Version, 2},
		{"headerLen", headerLen, 14},
		{"trailerLen", trailerLen, 4},
		{"PacketOverhead", PacketOverhead, 18},
		{"MinHelloDatagram", MinHelloDatagram, 1200},
		{"MaxCookieLen", MaxCookieLen, 64},
		{"maxAckRanges", maxAckRanges, 64},
		{"PacketData", int(PacketData), 1},
		{"PacketRetry", int(PacketRetry), 2},
		{"PacketReset", int(PacketReset), 3},
		{"ResetLen", ResetLen, 18},
		{"framePadding", framePadding, 0x00},
		{"framePing", framePing, 0x01},
		{"frameAck", frameAck, 0x02},
		{"frameHello", frameHello, 0x03},
		{"frameClose", frameClose, 0x04},
		{"framePathChallenge", framePathChallenge, 0x05},
		{"framePathResponse", framePathResponse, 0x06},
		{"frameStreamFin", frameStreamFin, 0x07},
		{"maxStreamFinLen", maxStreamFinLen, 15},
		{"pathDataLen", pathDataLen, 8},
		{"frameStreamOpen", frameStreamOpen, 0x08},
		{"frameStreamReset", frameStreamReset, 0x09},
		{"frameStopSending", frameStopSending, 0x0a},
		{"frameStreamCredit", frameStreamCredit, 0x0b},
		{"frameStreamLimit", frameStreamLimit, 0x0c},
		{"frameCrypto", frameCrypto, 0x0f},
		{"helloTLS", helloTLS, 0xf1},
		{"helloPSK", helloPSK, 0xf2},
		{"CloseHandshakeFailed", CloseHandshakeFailed, 4},
		{"frameMsg", frameMsg, 0x10},
		{"frameStreamMsg", frameStreamMsg, 0x20},
		{"msgFlagGuarantee", msgFlagGuarantee, 0x03},
		{"msgFlagFragment", msgFlagFragment, 0x04},
		{"msgFlagSet", msgFlagSet, 0x08},
		{"CloseGraceful", CloseGraceful, 0},
		{"CloseRefused", CloseRefused, 1},
		{"CloseError", CloseError, 2},
		{"CloseProtocolViolation", CloseProtocolViolation, 3},
		{"None", int(None), 1},
		{"Order", int(Order), 2},
		{"Delivery", int(Delivery), 3},
		{"msgCreditOverhead", msgCreditOverhead, 256},
		{"packetThreshold", packetThreshold, 3},
		{"maxMsgHeader", maxMsgHeader, 1 + 4 + 4 + 5 + 5 + 10 + 10 + 5},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	// The checksum is CRC-32C (Castagnoli), not IEEE.
	require.Equal(t, uint32(0xe3069283), crc32.Checksum([]byte("123456789"), castagnoli))
}

// sealed builds a datagram: header, body, CRC-32C trailer.
func sealed(h Header, body []byte) []byte {
	b := make([]byte, headerLen, headerLen+len(body)+trailerLen)
	putHeader(b, h)
	b = append(b, body...)
	b = append(b, 0, 0, 0, 0)
	sealPacket(b, len(b)-trailerLen)
	return b
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, c := range []struct {
		h    Header
		body []byte
	}{
		{Header{Type: PacketData}, nil},
		{Header{Type: PacketData, DstCID: 1, PacketNumber: 1}, []byte{framePing}},
		{Header{Type: PacketData, DstCID: ^uint64(0), PacketNumber: ^uint32(0)}, bytes.Repeat([]byte{0}, 1182)},
		{Header{Type: PacketRetry, DstCID: 0x0102030405060708, PacketNumber: 0x0a0b0c0d}, []byte{1, 0xaa}},
	} {
		t.Run(fmt.Sprintf("%+v", c.h), func(t *testing.T) {
			b := sealed(c.h, c.body)
			require.Len(t, b, PacketOverhead+len(c.body))
			// Byte order is big endian at fixed offsets.
			require.Equal(t, byte(Version), b[0])
			require.Equal(t, byte(c.h.Type), b[1])
			require.Equal(t, c.h.DstCID, binary.BigEndian.Uint64(b[2:10]))
			require.Equal(t, c.h.PacketNumber, binary.BigEndian.Uint32(b[10:14]))
			require.Equal(t, crc32.Checksum(b[:len(b)-4], castagnoli), binary.BigEndian.Uint32(b[len(b)-4:]))

			h, body, err := ParseHeader(b)
			require.NoError(t, err)
			require.Equal(t, c.h, h)
			require.Equal(t, len(c.body), len(body))
			require.True(t, bytes.Equal(c.body, body))

			// Every shorter datagram and every single bit flip is rejected
			// (or, a flip of the type byte's, makes a protected packet's
			// header, whose check is the connection's: its AEAD).
			for k := 0; k < len(b); k++ {
				_, _, err := ParseHeader(b[:k])
				require.Error(t, err, "prefix of %d bytes accepted", k)
			}
			for i := 0; i < len(b)*8; i++ {
				x := bytes.Clone(b)
				x[i/8] ^= 1 << (i % 8)
				h, _, err := ParseHeader(x)
				if err == nil && (h.Type == PacketHandshake || h.Type == PacketApp) {
					continue
				}
				require.Error(t, err, "bit %d flipped accepted", i)
			}
		})
	}
}

func TestParseHeaderErrors(t *testing.T) {
	good := sealed(Header{Type: PacketData, DstCID: 7, PacketNumber: 9}, []byte{framePing})
	reseal := func(mut func(b []byte)) []byte {
		b := bytes.Clone(good)
		mut(b)
		sealPacket(b, len(b)-trailerLen)
		return b
	}
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errTruncated},
		{"short", good[:PacketOverhead-1], errTruncated},
		{"version 0", reseal(func(b []byte) { b[0] = 0 }), errBadVersion},
		{"version 1", reseal(func(b []byte) { b[0] = 1 }), errBadVersion},
		{"version 3", reseal(func(b []byte) { b[0] = 3 }), errBadVersion},
		{"type 0", reseal(func(b []byte) { b[1] = 0 }), errBadType},
		{"type 8", reseal(func(b []byte) { b[1] = 8 }), errBadType},
		{"protected, short", reseal(func(b []byte) { b[1] = byte(PacketApp) }), errTruncated},
		{"checksum", append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^0x80), errBadChecksum},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ParseHeader(c.b)
			require.ErrorIs(t, err, c.want)
		})
	}
	// An empty body is a valid header (the frame decoder then has nothing to do).
	_, body, err := ParseHeader(sealed(Header{Type: PacketData, DstCID: 1}, nil))
	require.NoError(t, err)
	require.Empty(t, body)
}

// encodeFrame encodes f (typ selects the part) as the sender does.
func encodeFrame(f *frame) []byte {
	switch {
	case f.typ == framePadding:
		return []byte{framePadding}
	case f.typ == framePing:
		return []byte{framePing}
	case f.typ == frameAck:
		return appendAck(nil, &f.ack)
	case f.typ == frameHello:
		return appendHello(nil, &f.hello)
	case f.typ == frameClose:
		return appendClose(nil, f.close.code, f.close.final, string(f.close.reason))
	case f.typ == framePathChallenge, f.typ == framePathResponse:
		return appendPathData(nil, f.typ, &f.path)
	case f.typ == frameStreamFin:
		return appendStreamFin(nil, &f.fin)
	case isStreamCtl(f.typ):
		return appendStreamCtl(nil, f.typ, &f.stream)
	case f.typ == frameCrypto:
		return appendCryptoFrame(nil, f.crypto.level, f.crypto.offset, f.crypto.data)
	default:
		return appendMsg(nil, &f.msg)
	}
}

// requireSameFrame compares the part of two decoded frames their type selects.
func requireSameFrame(t testing.TB, want, got *frame) {
	t.Helper()
	require.Equal(t, want.typ, got.typ)
	switch {
	case want.typ == frameAck:
		require.Equal(t, want.ack.largest, got.ack.largest)
		require.Equal(t, want.ack.delay, got.ack.delay)
		require.Equal(t, want.ack.maxData, got.ack.maxData)
		require.Equal(t, want.ack.ranges, got.ack.ranges)
	case want.typ == frameHello:
		w, g := want.hello, got.hello
		require.True(t, bytes.Equal(w.Cookie, g.Cookie))
		w.Cookie, g.Cookie = nil, nil
		require.Equal(t, w, g)
	case want.typ == frameClose:
		require.Equal(t, want.close.code, got.close.code)
		require.Equal(t, want.close.final, got.close.final)
		require.True(t, bytes.Equal(want.close.reason, got.close.reason))
	case want.typ == framePathChallenge, want.typ == framePathResponse:
		require.Equal(t, want.path, got.path)
	case want.typ == frameStreamFin:
		require.Equal(t, want.fin, got.fin)
	case isStreamCtl(want.typ):
		require.Equal(t, want.stream, got.stream)
	case want.typ == frameCrypto:
		require.Equal(t, want.crypto.level, got.crypto.level)
		require.Equal(t, want.crypto.offset, got.crypto.offset)
		require.True(t, bytes.Equal(want.crypto.data, got.crypto.data))
	case want.typ&0xf0 == frameMsg, want.typ&0xf0 == frameStreamMsg:
		w, g := want.msg, got.msg
		require.True(t, bytes.Equal(w.data, g.data))
		w.data, g.data = nil, nil
		require.Equal(t, w, g)
	}
}

// checkPrefixes: every shorter prefix of a valid frame fails to decode, or
// (padding only) decodes to a shorter frame.
func checkPrefixes(t testing.TB, b []byte) {
	t.Helper()
	for k := 0; k < len(b); k++ {
		var f frame
		n, err := decodeFrame(b[:k], &f)
		if err == nil {
			require.Equal(t, byte(framePadding), b[0], "prefix of %d bytes of %x decoded", k, b)
			require.LessOrEqual(t, n, k)
			require.Positive(t, n)
		}
	}
}

// isStreamCtl reports whether t is a stream control frame's type.
func isStreamCtl(t byte) bool { return t >= frameStreamOpen && t <= frameStreamLimit }

// streamCtlFrames are valid stream control frames of every type.
func streamCtlFrames() []frame {
	return []frame{
		{typ: frameStreamOpen, stream: streamCtlFrame{id: 1, guarantee: None}},
		{typ: frameStreamOpen, stream: streamCtlFrame{id: 2, guarantee: Order}},
		{typ: frameStreamOpen, stream: streamCtlFrame{id: ^uint64(0), guarantee: Delivery}},
		{typ: frameStreamReset, stream: streamCtlFrame{id: 3}},
		{typ: frameStreamReset, stream: streamCtlFrame{id: 1 << 40, code: ^uint64(0), value: 1 << 33}},
		{typ: frameStopSending, stream: streamCtlFrame{id: 4, code: 7}},
		{typ: frameStreamCredit, stream: streamCtlFrame{id: 0, value: 1 << 22}},
		{typ: frameStreamCredit, stream: streamCtlFrame{id: 5, value: ^uint64(0)}},
		{typ: frameStreamLimit, stream: streamCtlFrame{value: 0}},
		{typ: frameStreamLimit, stream: streamCtlFrame{value: 100}},
	}
}

func msgFrames() []msgFrame {
	return []msgFrame{
		{stream: 1, guarantee: None, seq: 3, data: []byte("s")},
		{stream: 2, guarantee: Delivery, seq: 5, d: 5, data: []byte("stream two")},
		{stream: ^uint64(0), guarantee: Order, seq: 1, d: 2, inSet: true, groupOff: 1, fragment: true, total: 1 << 30, offset: 1<<30 - 1, data: []byte{1}},
		{guarantee: None, seq: 0, data: []byte{}},
		{guarantee: None, seq: ^uint32(0), data: []byte("x")},
		{guarantee: None, seq: 7, fragment: true, total: 1 << 20, offset: 1<<20 - 3, data: []byte("end")},
		{guarantee: Order, seq: 1, d: 2, data: []byte("order")},
		{guarantee: Order, seq: 1, d: 2, inSet: true, groupOff: 1<<31 - 1, data: []byte("set")},
		{guarantee: Delivery, seq: 0xfffffffe, d: 0xffffffff, data: bytes.Repeat([]byte{9}, 300)},
		{guarantee: Delivery, seq: 5, d: 5, inSet: true, groupOff: 3, baseOff: 2, fragment: true, total: 5000, offset: 1100, data: bytes.Repeat([]byte{1}, 1100)},
		{guarantee: Delivery, seq: 5, d: 5, fragment: true, total: 1, offset: 0, data: []byte{0}},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	frames := []frame{
		{typ: framePing},
		{typ: frameAck, ack: ackFrame{largest: 0, ranges: []ackRange{{0, 0}}}},
		{typ: frameAck, ack: ackFrame{largest: ^uint32(0), delay: 25000, maxData: 1 << 40, ranges: []ackRange{{0, 10}, {12, 12}, {100, 1 << 20}}}},
		{typ: frameAck, ack: ackFrame{largest: 5, delay: ^uint64(0), maxData: ^uint64(0), ranges: []ackRange{{0, 1 << 32}}}},
		{typ: frameHello, hello: HelloFrame{SrcCID: 1, MaxMessageSize: 1, MaxDatagramSize: MinHelloDatagram, Cookie: []byte{}}},
		{typ: frameHello, hello: HelloFrame{SrcCID: 2, MaxMessageSize: 1, MaxDatagramSize: MinHelloDatagram, Cookie: []byte{}, Protection: ProtectionTLS}},
		{typ: frameHello, hello: HelloFrame{SrcCID: 3, MaxMessageSize: 1, MaxDatagramSize: MinHelloDatagram, Cookie: []byte("c"), Protection: ProtectionPSK}},
		{typ: frameCrypto, crypto: cryptoFrame{level: levelHandshake, offset: 1 << 16, data: []byte("finished")}},
		{typ: frameHello, hello: HelloFrame{SrcCID: ^uint64(0), InitialSeq: 0xfffffff0, MaxData: 4 << 20, MaxAckDelay: 1000,
			MaxMessageSize: maxMessageLimit, MaxDatagramSize: maxUDPPayload, Cookie: bytes.Repeat([]byte{0xc0}, MaxCookieLen)}},
		{typ: frameClose, close: closeFrame{code: CloseGraceful}},
		{typ: frameClose, close: closeFrame{code: CloseGraceful, final: ^uint32(0)}},
		{typ: frameClose, close: closeFrame{code: CloseRefused}},
		{typ: frameClose, close: closeFrame{code: CloseError, reason: []byte{}}},
		{typ: frameClose, close: closeFrame{code: CloseProtocolViolation, reason: bytes.Repeat([]byte("r"), maxCloseReason)}},
		// unknown codes decode, with a reason; the receiver treats them as errors
		{typ: frameClose, close: closeFrame{code: 1 << 62, reason: []byte("why")}},
		{typ: framePathChallenge, path: [pathDataLen]byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{typ: framePathChallenge},
		{typ: framePathResponse, path: [pathDataLen]byte{0xff, 0, 0xff, 0, 0xff, 0, 0xff, 0}},
		{typ: frameStreamFin},
		{typ: frameStreamFin, fin: streamFinFrame{stream: 0, final: ^uint32(0)}},
		{typ: frameStreamFin, fin: streamFinFrame{stream: 1<<7 - 1, final: 1}},
		{typ: frameStreamFin, fin: streamFinFrame{stream: ^uint64(0), final: 0x80000000}},
	}
	frames = append(frames, streamCtlFrames()...)
	for _, m := range msgFrames() {
		frames = append(frames, frame{typ: msgType(&m), msg: m})
	}
	for i := range frames {
		want := &frames[i]
		t.Run(fmt.Sprintf("%d-type%#x", i, want.typ), func(t *testing.T) {
			b := encodeFrame(want)
			var got frame
			n, err := decodeFrame(b, &got)
			require.NoError(t, err)
			require.Equal(t, len(b), n)
			requireSameFrame(t, want, &got)
			// Trailing bytes (the next frame) are not consumed.
			n, err = decodeFrame(append(bytes.Clone(b), framePing, 0xff), &got)
			require.NoError(t, err)
			require.Equal(t, len(b), n)
			if want.typ == frameHello && want.hello.Protection != Plaintext {
				// Without its protection byte, a HELLO is a plaintext one
				// (the byte is optional); shorter, it fails.
				n, err = decodeFrame(b[:len(b)-1], &got)
				require.NoError(t, err)
				require.Equal(t, len(b)-1, n)
				require.Equal(t, Plaintext, got.hello.Protection)
				b = b[:len(b)-1]
			}
			checkPrefixes(t, b)
		})
	}
}

func TestPaddingRuns(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want int
	}{
		{[]byte{0}, 1},
		{[]byte{0, 0, 0}, 3},
		{[]byte{0, 0, framePing}, 2},
		{append(make([]byte, 1182), framePing), 1182},
	} {
		var f frame
		n, err := decodeFrame(c.b, &f)
		require.NoError(t, err)
		require.Equal(t, c.want, n)
	}
}

func TestUnknownFrameTypes(t *testing.T) {
	for typ := 0; typ < 256; typ++ {
		b := append([]byte{byte(typ)}, make([]byte, 64)...)
		var f frame
		_, err := decodeFrame(b, &f)
		known := typ <= frameStreamLimit || typ == frameCrypto || typ&0xf0 == frameMsg || typ&0xf0 == frameStreamMsg
		if !known {
			require.ErrorIs(t, err, errBadFrame, "type %#x", typ)
		}
	}
	var f frame
	_, err := decodeFrame(nil, &f)
	require.ErrorIs(t, err, errTruncated)
}

func TestReadUvarint(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 16383, 16384, 1<<32 - 1, 1 << 32, 1<<63 - 1, 1 << 63, ^uint64(0)} {
		b := binary.AppendUvarint(nil, v)
		got, n, err := readUvarint(b)
		require.NoError(t, err)
		require.Equal(t, v, got)
		require.Equal(t, len(b), n)
		require.Equal(t, len(b), uvarintLen(v))
		for k := 0; k < len(b); k++ {
			_, _, err := readUvarint(b[:k])
			require.ErrorIs(t, err, errTruncated)
		}
	}
	for _, b := range [][]byte{
		{0x80, 0x00},             // 0 in two bytes
		{0x81, 0x00},             // 1 in two bytes
		{0xff, 0x80, 0x00},       // 127 in three bytes
		{0x80, 0x80, 0x80, 0x00}, // 0 in four bytes
		append(bytes.Repeat([]byte{0xff}, 9), 0x02),  // overflows 64 bits
		append(bytes.Repeat([]byte{0x80}, 10), 0x01), // 11 bytes
		append(bytes.Repeat([]byte{0xff}, 9), 0x00),  // non-minimal 10-byte form
		append(bytes.Repeat([]byte{0x80}, 11), 0x00), // far too long
	} {
		_, _, err := readUvarint(b)
		require.ErrorIs(t, err, errBadVarint, "%x", b)
	}
	// A non-minimal varint inside a frame makes the frame invalid.
	for _, b := range [][]byte{
		{frameClose, 0x80, 0x00},
		{frameAck, 0, 0, 0, 9, 0x80, 0x00, 0, 0, 0},
		{byte(frameMsg) | byte(None), 0, 0, 0, 1, 0x81, 0x00, 'x'},
		append(append([]byte{frameHello}, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0), 0, 0, 0x80, 0x00),
	} {
		var f frame
		_, err := decodeFrame(b, &f)
		require.ErrorIs(t, err, errBadVarint, "%x", b)
	}
}

// ackOf builds the ACK frame for a set of received runs, as buildAck does.
func ackOf(runs []pnRange) ackFrame {
	largest := runs[0].hi
	a := ackFrame{largest: uint32(largest)}
	for _, r := range runs {
		a.ranges = append(a.ranges, ackRange{lo: largest - r.hi, hi: largest - r.lo})
	}
	return a
}

func TestAckRangeShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	shapes := [][]pnRange{
		{{0, 0}},
		{{10, 10}, {8, 8}},                // smallest gap (one missing number)
		{{1 << 32, 1 << 32}, {0, 0}},      // span of 2^32
		{{0xffffffff + 5, 0xfffffff0}},    // across the 32-bit wrap
		{{1000, 900}, {800, 700}, {2, 0}}, // written hi, lo: fixed below
		{{1<<40 + 3, 1 << 40}, {1<<40 - 2, 1<<40 - 2}},
	}
	for i, s := range shapes {
		for j := range s {
			if s[j].lo > s[j].hi {
				s[j].lo, s[j].hi = s[j].hi, s[j].lo
			}
		}
		shapes[i] = s
	}
	for i := 0; i < 500; i++ {
		n := 1 + rng.IntN(maxAckRanges)
		hi := rng.Uint64N(1 << 40)
		var s []pnRange
		for k := 0; k < n && hi > 0; k++ {
			length := rng.Uint64N(min(hi, 1000) + 1)
			r := pnRange{lo: hi - length, hi: hi}
			s = append(s, r)
			gap := 2 + rng.Uint64N(1000)
			if r.lo < gap {
				break
			}
			hi = r.lo - gap
		}
		shapes = append(shapes, s)
	}
	for _, s := range shapes {
		want := frame{typ: frameAck, ack: ackOf(s)}
		want.ack.delay, want.ack.maxData = rng.Uint64(), rng.Uint64()
		b := encodeFrame(&want)
		var got frame
		n, err := decodeFrame(b, &got)
		require.NoError(t, err, "%v", s)
		require.Equal(t, len(b), n)
		requireSameFrame(t, &want, &got)
		checkPrefixes(t, b)
	}
}

func TestAckRangeLimits(t *testing.T) {
	build := func(count int) []byte {
		var runs []pnRange
		hi := uint64(10 * count)
		for i := 0; i < count; i++ {
			runs = append(runs, pnRange{hi - 1, hi})
			hi -= 5
		}
		a := ackOf(runs)
		return appendAck(nil, &a)
	}
	var f frame
	_, err := decodeFrame(build(maxAckRanges), &f)
	require.NoError(t, err)
	require.Len(t, f.ack.ranges, maxAckRanges)
	_, err = decodeFrame(build(maxAckRanges+1), &f)
	require.ErrorIs(t, err, errBadAck)

	// Distances beyond 2^32 cannot name a 32-bit packet number.
	for _, a := range []ackFrame{
		{ranges: []ackRange{{0, 1<<32 + 1}}},
		{ranges: []ackRange{{0, 0}, {1<<32 + 1, 1<<32 + 1}}},
		{ranges: []ackRange{{0, 0}, {2, 1<<32 + 1}}},
	} {
		_, err := decodeFrame(appendAck(nil, &a), &f)
		require.ErrorIs(t, err, errBadAck, "%v", a.ranges)
	}
	// A gap that overflows 64 bits when added is rejected, not wrapped.
	b := []byte{frameAck, 0, 0, 0, 1, 0, 0, 1, 0}
	b = binary.AppendUvarint(b, ^uint64(0)) // gap
	b = binary.AppendUvarint(b, 0)
	_, err = decodeFrame(b, &f)
	require.ErrorIs(t, err, errBadAck)
	// A count larger than the bytes that follow fails without allocating for it.
	b = []byte{frameAck, 0, 0, 0, 1, 0, 0, 63, 0}
	_, err = decodeFrame(b, &f)
	require.ErrorIs(t, err, errTruncated)
}

func TestMsgFlagCombinations(t *testing.T) {
	for typ := frameMsg; typ <= frameStreamMsg|0x0f; typ++ {
		if typ&0xf0 != frameMsg && typ&0xf0 != frameStreamMsg {
			continue
		}
		g := Guarantee(typ & msgFlagGuarantee)
		inSet := typ&msgFlagSet != 0
		fragment := typ&msgFlagFragment != 0
		var stream uint64
		if typ&0xf0 == frameStreamMsg {
			stream = 130 // two bytes as a varint
		}
		t.Run(fmt.Sprintf("%#x", typ), func(t *testing.T) {
			m := msgFrame{stream: stream, guarantee: g, seq: 0xdeadbeef, inSet: inSet, fragment: fragment, data: []byte("payload")}
			if g != None {
				m.d = 0xfeedface
			}
			if inSet && g == None && !fragment {
				// The set flag of a None message is msgFlagTwice: a
				// message sent twice, never a fragment.
				m.inSet, m.twice = false, true
			}
			if m.inSet {
				m.groupOff, m.baseOff = 300, 2
				if g == Order {
					m.baseOff = 0
				}
			}
			if fragment {
				m.total, m.offset = 1000, 993
			}
			b := appendMsg(nil, &m)
			require.Equal(t, byte(typ), b[0])
			var f frame
			n, err := decodeFrame(b, &f)
			valid := g.Valid() && !(inSet && g == None && fragment)
			if !valid {
				require.ErrorIs(t, err, errBadMessage)
				return
			}
			require.NoError(t, err)
			require.Equal(t, len(b), n)
			requireSameFrame(t, &frame{typ: byte(typ), msg: m}, &f)
			checkPrefixes(t, b)
		})
	}
}

func TestMsgRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		m    msgFrame
	}{
		{"total 0", msgFrame{guarantee: Delivery, fragment: true, total: 0, offset: 0, data: nil}},
		{"offset at total", msgFrame{guarantee: Delivery, fragment: true, total: 10, offset: 10, data: nil}},
		{"data past total", msgFrame{guarantee: Delivery, fragment: true, total: 10, offset: 5, data: make([]byte, 6)}},
		{"groupOff 2^31", msgFrame{guarantee: Delivery, inSet: true, groupOff: 1 << 31}},
		{"baseOff 2^31", msgFrame{guarantee: Order, inSet: true, baseOff: 1 << 31}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f frame
			_, err := decodeFrame(appendMsg(nil, &c.m), &f)
			require.ErrorIs(t, err, errBadMessage)
		})
	}
	// A length beyond the frame's bytes is truncation.
	var f frame
	_, err := decodeFrame([]byte{byte(frameMsg) | byte(None), 0, 0, 0, 0, 5, 'a', 'b'}, &f)
	require.ErrorIs(t, err, errTruncated)
	// Stream 0's messages are MSG frames: a STREAM_MSG naming it has a
	// second encoding, and is rejected.
	_, err = decodeFrame([]byte{byte(frameStreamMsg) | byte(None), 0, 0, 0, 0, 0, 1, 'a'}, &f)
	require.ErrorIs(t, err, errBadMessage)
}

func TestStreamCtlRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		err  error
	}{
		{"open of stream 0", []byte{frameStreamOpen, 0, byte(Delivery)}, errBadFrame},
		{"reset of stream 0", []byte{frameStreamReset, 0, 0, 0}, errBadFrame},
		{"stop of stream 0", []byte{frameStopSending, 0, 0}, errBadFrame},
		{"open with guarantee 0", []byte{frameStreamOpen, 1, 0}, errBadFrame},
		{"open with guarantee 4", []byte{frameStreamOpen, 1, 4}, errBadFrame},
		{"open without guarantee", []byte{frameStreamOpen, 1}, errTruncated},
		{"reset without final credit", []byte{frameStreamReset, 1, 0}, errTruncated},
		{"non-minimal stream ID", []byte{frameStreamCredit, 0x80, 0x00, 1}, errBadVarint},
		{"non-minimal limit", []byte{frameStreamLimit, 0x81, 0x00}, errBadVarint},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f frame
			n, err := decodeFrame(c.b, &f)
			require.ErrorIs(t, err, c.err)
			require.Zero(t, n)
		})
	}
	for _, f := range streamCtlFrames() {
		require.Len(t, appendStreamCtl(nil, f.typ, &f.stream), streamCtlLen(f.typ, &f.stream), "%+v", f)
	}
}

func TestMsgHeaderLen(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	varint := func() uint64 { return rng.Uint64() >> rng.IntN(64) }
	for i := 0; i < 20000; i++ {
		m := msgFrame{
			guarantee: Guarantee(1 + rng.IntN(3)),
			seq:       rng.Uint32(),
			d:         rng.Uint32(),
			inSet:     rng.IntN(2) == 0,
			fragment:  rng.IntN(2) == 0,
			data:      make([]byte, rng.IntN(3000)>>rng.IntN(12)),
		}
		if m.guarantee == None {
			m.d, m.inSet = 0, false
		}
		if m.inSet {
			m.groupOff, m.baseOff = varint()>>33, varint()>>33
		}
		if m.fragment {
			m.total, m.offset = varint(), varint()
		}
		if rng.IntN(2) == 0 {
			// A stream's message: the bound holds for the totals a Conn
			// sends (below MaxMessageSizeLimit).
			m.stream = max(1, varint())
			m.total, m.offset = min(m.total, MaxMessageSizeLimit), min(m.offset, MaxMessageSizeLimit)
		}
		b := appendMsg(nil, &m)
		require.Equal(t, len(b)-len(m.data), msgHeaderLen(&m), "%+v", m)
		require.LessOrEqual(t, msgHeaderLen(&m), maxMsgHeader)
	}
}

func TestHelloCookieLengths(t *testing.T) {
	for n := 0; n <= MaxCookieLen+1; n++ {
		h := HelloFrame{SrcCID: 42, InitialSeq: 7, MaxData: 1 << 22, MaxAckDelay: 1000, MaxMessageSize: 1 << 20, MaxDatagramSize: 1400, Cookie: bytes.Repeat([]byte{byte(n)}, n)}
		b := appendHello(nil, &h)
		var f frame
		k, err := decodeFrame(b, &f)
		if n > MaxCookieLen {
			require.Error(t, err, "cookie of %d bytes accepted", n)
			_, ok := PeekHello(b)
			require.False(t, ok)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, len(b), k)
		requireSameFrame(t, &frame{typ: frameHello, hello: h}, &f)
		checkPrefixes(t, b)
		got, ok := PeekHello(append(b, framePing, 0, 0))
		require.True(t, ok)
		require.Equal(t, h.SrcCID, got.SrcCID)
		require.True(t, bytes.Equal(h.Cookie, got.Cookie))
	}
	// SrcCID 0 is reserved ("not yet known").
	var f frame
	_, err := decodeFrame(appendHello(nil, &HelloFrame{MaxMessageSize: 1, MaxDatagramSize: MinHelloDatagram}), &f)
	require.ErrorIs(t, err, errBadFrame)
}

func TestPeekHello(t *testing.T) {
	hello := appendHello(nil, &HelloFrame{SrcCID: 9, MaxMessageSize: 1 << 20, MaxDatagramSize: 1400, Cookie: []byte("c")})
	for _, c := range []struct {
		name string
		body []byte
		ok   bool
	}{
		{"hello", hello, true},
		{"hello then frames", append(bytes.Clone(hello), framePing, framePadding), true},
		{"empty", nil, false},
		{"ping first", append([]byte{framePing}, hello...), false},
		{"padding first", append([]byte{framePadding}, hello...), false},
		{"truncated", hello[:len(hello)-1], false},
		{"bad varint", append([]byte{frameHello}, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0x80, 0x00, 0, 0, 1, 0xb0, 0x09, 0), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, ok := PeekHello(c.body)
			require.Equal(t, c.ok, ok)
			if ok {
				require.Equal(t, uint64(9), h.SrcCID)
			}
		})
	}
}

func TestRetryAndRefuse(t *testing.T) {
	prefix := []byte("unrelated bytes before")
	for n := 0; n <= MaxCookieLen+1; n++ {
		cookie := bytes.Repeat([]byte{0x5a}, n)
		d := AppendRetry(bytes.Clone(prefix), 0xabcdef, cookie)
		require.True(t, bytes.HasPrefix(d, prefix))
		d = d[len(prefix):]
		h, body, err := ParseHeader(d)
		require.NoError(t, err)
		require.Equal(t, Header{Type: PacketRetry, DstCID: 0xabcdef}, h)
		got, err := parseRetry(body)
		if n == 0 || n > MaxCookieLen {
			require.Error(t, err, "cookie of %d bytes", n)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, cookie, got)
		for k := 0; k < len(body); k++ {
			_, err := parseRetry(body[:k])
			require.Error(t, err)
		}
		_, err = parseRetry(append(bytes.Clone(body), 0))
		require.Error(t, err, "trailing byte accepted")
	}

	d := AppendRefuse(bytes.Clone(prefix), 77)[len(prefix):]
	h, body, err := ParseHeader(d)
	require.NoError(t, err)
	require.Equal(t, Header{Type: PacketData, DstCID: 77}, h)
	var f frame
	n, err := decodeFrame(body, &f)
	require.NoError(t, err)
	require.Equal(t, len(body), n)
	require.Equal(t, byte(frameClose), f.typ)
	require.Equal(t, uint64(CloseRefused), f.close.code)

	// A connection still in its handshake ends with ErrRefused.
	now := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := NewConn(&Config{Rand: rand.NewPCG(1, 1)}, 77, now)
	require.NoError(t, err)
	c.HandleDatagram(now, d)
	require.True(t, c.Closed())
	require.ErrorIs(t, c.Err(), ErrRefused)

	// A Retry gives a connection in its handshake the cookie to echo.
	c, err = NewConn(&Config{Rand: rand.NewPCG(1, 1)}, 78, now)
	require.NoError(t, err)
	buf := make([]byte, 2048)
	require.Positive(t, c.PollTransmit(now, buf))
	c.HandleDatagram(now, AppendRetry(nil, 78, []byte("cookie!")))
	n = c.PollTransmit(now, buf)
	require.Equal(t, MinHelloDatagram, n)
	_, body, err = ParseHeader(buf[:n])
	require.NoError(t, err)
	hello, ok := PeekHello(body)
	require.True(t, ok)
	require.Equal(t, []byte("cookie!"), hello.Cookie)
	require.Equal(t, uint64(78), hello.SrcCID)
}

// TestHandleAckOnlySent feeds random ACK frames, including ranges that reach
// below packet number 0 and numbers never sent, to a sender with packets in
// flight: only packets it sent and the ranges name may be acknowledged.
func TestHandleAckOnlySent(t *testing.T) {
	for _, initial := range []uint32{0, 3, 0xfffffff8} {
		t.Run(fmt.Sprint(initial), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(initial), 9))
			for iter := 0; iter < 300; iter++ {
				p := newWirePair(t, &Config{InitialSequence: initial, DisablePacing: true})
				a := p.a
				for i := 0; i < 20; i++ {
					require.NoError(t, a.Send(Delivery, make([]byte, 1000)))
				}
				for a.PollTransmit(p.now, p.buf) > 0 {
				}
				inFlight := map[uint64]bool{}
				for pn := a.sent.base; pn < a.nextPN; pn++ {
					if a.sent.at(pn) != nil {
						inFlight[pn] = true
					}
				}
				require.NotEmpty(t, inFlight)
				// largest: around the sent numbers, sometimes beyond.
				largest := uint32(a.nextPN) - 6 + uint32(rng.IntN(10))
				var ranges []ackRange
				hi := uint64(rng.IntN(4))
				ranges = append(ranges, ackRange{0, hi})
				for k := rng.IntN(5); k > 0; k-- {
					lo := hi + 2 + uint64(rng.IntN(4))
					hi = lo + uint64(rng.IntN(1<<uint(rng.IntN(34))))
					hi = min(hi, 1<<32)
					ranges = append(ranges, ackRange{lo, hi})
				}
				af := ackFrame{largest: largest, ranges: ranges}
				b := appendAck(nil, &af)
				var f frame
				if _, err := decodeFrame(b, &f); err != nil {
					continue
				}
				// The numbers the frame names, computed without wrapping.
				full := unwrap32(a.nextPN, largest)
				named := func(pn uint64) bool {
					if full >= a.nextPN {
						return false
					}
					for _, r := range f.ack.ranges {
						if r.hi > full {
							break
						}
						if pn+r.lo <= full && pn+r.hi >= full {
							return true
						}
					}
					return false
				}
				lostBefore := a.stats.PacketsLost
				a.handleAck(p.now, &f.ack)
				var removedUnnamed uint64
				for pn := range inFlight {
					gone := a.sent.at(pn) == nil
					if named(pn) {
						require.True(t, gone, "pn %d named by %+v but still in flight", pn, f.ack)
						continue
					}
					if gone {
						// Only loss detection may remove a packet the ACK did
						// not name, and only below the largest acknowledged.
						removedUnnamed++
						require.Less(t, pn, a.largestAcked, "pn %d removed by %+v", pn, f.ack)
					}
				}
				require.Equal(t, a.stats.PacketsLost-lostBefore, removedUnnamed, "packets acked that the frame did not name: %+v", f.ack)
				if full >= a.nextPN {
					require.Empty(t, removedUnnamed)
					require.ErrorIs(t, a.life.closing.abortReason, ErrProtocolViolation, "ACK of %d, next packet number %d", full, a.nextPN)
				} else {
					require.NoError(t, a.life.closing.abortReason)
				}
				require.GreaterOrEqual(t, a.bytesInFlight, 0)
				require.GreaterOrEqual(t, a.elicitingInFlight, 0)
			}
		})
	}
}

// TestHostileDelaysKeepRTTSane: the microsecond varints of HELLO (MaxAckDelay)
// and ACK (ack delay) may hold any u64; converting them to time.Duration must
// not overflow into negative delays that wreck the RTT estimate and PTO.
func TestHostileDelaysKeepRTTSane(t *testing.T) {
	p := newWirePair(t, nil)
	c, err := NewConn(&Config{Rand: rand.NewPCG(3, 3)}, 5, p.now)
	require.NoError(t, err)
	c.handleHello(p.now, &HelloFrame{SrcCID: 9, MaxAckDelay: 1<<60 + 1, MaxMessageSize: 1 << 20, MaxDatagramSize: 1400})
	require.GreaterOrEqual(t, c.peerMaxAckDelay, time.Duration(0))
	require.LessOrEqual(t, c.peerMaxAckDelay, time.Second)
	require.Positive(t, c.rtt.pto(c.peerMaxAckDelay))

	a := p.a
	require.NoError(t, a.Send(Delivery, []byte("x")))
	require.Positive(t, a.PollTransmit(p.now, p.buf))
	af := ackFrame{largest: uint32(a.nextPN - 1), delay: 1<<60 + 1, ranges: []ackRange{{0, 0}}}
	a.handleAck(p.now.Add(10*time.Millisecond), &af)
	require.Positive(t, a.rtt.smoothed)
	require.LessOrEqual(t, a.rtt.smoothed, 10*time.Millisecond)
	require.LessOrEqual(t, a.rtt.variance, 10*time.Millisecond)
}

// TestIsDataPacket: Data and both protected types, whatever their key
// phase bit, carry a connection's frames; Retry, Reset and unknown types
// do not.
func TestIsDataPacket(t *testing.T) {
	for typ := 0; typ < 256; typ++ {
		want := typ == int(PacketData) || typ == 4 || typ == 5 || typ == 6 || typ == 7
		if got := IsDataPacket(byte(typ)); got != want {
			t.Errorf("type %#02x: %v, want %v", typ, got, want)
		}
	}
}
