package core

import (
	"encoding/binary"
	"hash/crc32"
	"strconv"
)

// The wire format (docs/PROTOCOL.md is the full description).
//
// Every datagram is a header, a body and a checksum trailer:
//
//	offset size field
//	0      1    version (Version)
//	1      1    packet type (PacketData, PacketRetry, PacketReset)
//	2      8    destination connection ID, big endian (0 = not yet known)
//	10     4    packet number, big endian, low 32 bits of a number never reused
//	14     n    body: frames (PacketData), a cookie (PacketRetry), empty (PacketReset)
//	14+n   4    CRC-32C (Castagnoli) of bytes [0, 14+n), big endian
//
// Variable-length integers are unsigned LEB128 (encoding/binary Uvarint),
// at most 10 bytes; a non-minimal or overflowing varint is rejected.
const (
	// Version is the protocol version carried in every header. Version 2
	// added the sender's limits to the HELLO and the final position or
	// reason to the CLOSE; a version 1 datagram is dropped as unknown.
	Version = 2

	headerLen  = 14
	trailerLen = 4
	// PacketOverhead is the bytes of every datagram that are not frames.
	PacketOverhead = headerLen + trailerLen

	// MinHelloDatagram is the size a datagram carrying a HELLO frame is
	// padded to, so that a listener answering it never sends more than it
	// received (amplification protection).
	MinHelloDatagram = 1200

	// MaxCookieLen bounds the stateless cookie a listener hands out.
	MaxCookieLen = 64

	// maxCloseReason bounds the reason text a CLOSE with an error code carries.
	maxCloseReason = 128

	// maxMessageLimit is the largest MaxMessageSize a HELLO may announce
	// (Config.Validate's bound).
	maxMessageLimit = 1 << 30

	// maxAckRanges bounds the ranges one ACK frame may carry (decoding and
	// the receiver's tracking both stop there).
	maxAckRanges = 64

	// pathDataLen is the length of a PATH_CHALLENGE's data, which its
	// PATH_RESPONSE echoes.
	pathDataLen = 8
)

// PacketType is the second header byte.
type PacketType uint8

// Packet types.
const (
	PacketData  PacketType = 1 // frames
	PacketRetry PacketType = 2 // a listener's cookie, answering a HELLO without one
	PacketReset PacketType = 3 // a stateless reset: "no connection here", answering a data packet (see AppendReset)
	// Protected packets (protect_packet.go): frames sealed with the
	// handshake's or the traffic keys, the 16-byte AEAD tag in place of the
	// checksum. The type byte's lowest bit, masked by header protection, is
	// the key phase (always 0 in a PacketHandshake); Header.Type has it
	// cleared.
	PacketHandshake PacketType = 4
	PacketApp       PacketType = 6
)

// packetKeyPhase is the type byte's key phase bit in a protected packet.
const packetKeyPhase = 0x01

// IsDataPacket reports whether a datagram whose type byte is t carries a
// connection's frames: a plaintext Data packet or a protected one (its
// type byte's lowest bit masked), not a Retry or a Reset.
func IsDataPacket(t byte) bool {
	p := PacketType(t)
	return p == PacketData || p&^packetKeyPhase == PacketHandshake || p&^packetKeyPhase == PacketApp
}

// minProtectedLen is the shortest protected datagram: a header, a byte of
// frames and the tag (the header protection sample, the 16 bytes after
// the packet number, then always exists).
const minProtectedLen = headerLen + 1 + aeadTagLen

// ResetLen is the length of every stateless reset datagram: a header and
// the checksum, no body. No datagram a Conn accepts is shorter, so a reset
// is never larger than the datagram it answers.
const ResetLen = PacketOverhead

// ResetTokenLen is the length of a stateless reset token, and
// TokenResetLen that of the reset carrying one (AppendTokenReset): the
// answer to a protected packet, which only a datagram longer than it
// draws (docs/PROTOCOL.md §14.3).
const (
	ResetTokenLen = 16
	TokenResetLen = ResetLen + ResetTokenLen
)

// Frame types. The low nibble of a MSG frame's type byte carries flags.
const (
	framePadding = 0x00
	framePing    = 0x01
	frameAck     = 0x02
	frameHello   = 0x03
	frameClose   = 0x04
	// PATH_CHALLENGE and PATH_RESPONSE validate a new peer address (path.go):
	// the type byte and pathDataLen bytes of challenge data.
	framePathChallenge = 0x05
	framePathResponse  = 0x06
	// STREAM_FIN ends one direction of a stream (half-close): the stream's
	// ID and the delivery index after its last Delivery message.
	frameStreamFin = 0x07
	// Stream frames (docs/PROTOCOL.md §17): a stream ID varint first.
	frameStreamOpen   = 0x08 // the opener's default guarantee
	frameStreamReset  = 0x09 // the sender abandons its direction
	frameStopSending  = 0x0a // the receiver asks the sender to abandon it
	frameStreamCredit = 0x0b // per-stream flow-control credit
	frameStreamLimit  = 0x0c // streams the peer may open (no stream ID)
	frameMsg          = 0x10 // 0x10..0x1f: a message of stream 0
	frameStreamMsg    = 0x20 // 0x20..0x2f: a message of another stream (MSG with a stream ID)

	msgFlagGuarantee = 0x03 // bits 0-1: Guarantee (1..3)
	msgFlagFragment  = 0x04 // total length and offset follow
	msgFlagSet       = 0x08 // group and base offsets follow
	// msgFlagTwice is bit 3 of a None message's type byte, where no set
	// can be (None messages are never in one): the message is sent twice
	// (redundancy.go), and the receiver drops the second copy by its id.
	msgFlagTwice = msgFlagSet
)

// frameCrypto is the CRYPTO frame: the cryptographic handshake's bytes
// (handshake_stream.go): level u8, offset varint, length varint, data.
const frameCrypto = 0x0f

// Close codes carried by a CLOSE frame. A graceful CLOSE carries the
// sender's final delivery index; a code of CloseError or above carries a
// reason (text for people, at most maxCloseReason bytes).
const (
	CloseGraceful          = 0 // sender finished; everything it sent was acknowledged
	CloseRefused           = 1 // listener refused the connection (accept queue full)
	CloseError             = 2 // sender aborted (a local error)
	CloseProtocolViolation = 3 // the receiver of the frame broke the protocol
	// CloseHandshakeFailed: the sender refused the cryptographic handshake
	// (a certificate, a server name, a pre-shared key, a protection mode
	// it does not speak); the reason says which. A listener sends it
	// alone, as a refusal, to an attempt whose HELLO asks for another
	// mode than its own.
	CloseHandshakeFailed = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the fixed part of every datagram.
type Header struct {
	Type         PacketType
	DstCID       uint64
	PacketNumber uint32
}

// ParseHeader checks a datagram's length, version, type and checksum and
// returns its header and body. The body aliases b. A protected packet
// (PacketHandshake, PacketApp) has no checksum: its body is the ciphertext
// with the tag, and its PacketNumber is still masked (only the connection
// can open it).
func ParseHeader(b []byte) (Header, []byte, error) {
	if len(b) < PacketOverhead {
		return Header{}, nil, errTruncated
	}
	if b[0] != Version {
		return Header{}, nil, errBadVersion
	}
	t := PacketType(b[1])
	if p := t &^ packetKeyPhase; p == PacketHandshake || p == PacketApp {
		if len(b) < minProtectedLen {
			return Header{}, nil, errTruncated
		}
		h := Header{
			Type:         p,
			DstCID:       binary.BigEndian.Uint64(b[2:10]),
			PacketNumber: binary.BigEndian.Uint32(b[10:14]),
		}
		return h, b[headerLen:], nil
	}
	if t != PacketData && t != PacketRetry && t != PacketReset {
		return Header{}, nil, errBadType
	}
	end := len(b) - trailerLen
	if crc32.Checksum(b[:end], castagnoli) != binary.BigEndian.Uint32(b[end:]) {
		return Header{}, nil, errBadChecksum
	}
	h := Header{
		Type:         t,
		DstCID:       binary.BigEndian.Uint64(b[2:10]),
		PacketNumber: binary.BigEndian.Uint32(b[10:14]),
	}
	return h, b[headerLen:end], nil
}

// putHeader writes h into b[:headerLen].
func putHeader(b []byte, h Header) {
	b[0] = Version
	b[1] = byte(h.Type)
	binary.BigEndian.PutUint64(b[2:10], h.DstCID)
	binary.BigEndian.PutUint32(b[10:14], h.PacketNumber)
}

// sealPacket appends the checksum trailer to a packet whose header and body
// occupy b[:n] and returns the datagram length. cap(b) must allow 4 more bytes.
func sealPacket(b []byte, n int) int {
	binary.BigEndian.PutUint32(b[n:n+trailerLen], crc32.Checksum(b[:n], castagnoli))
	return n + trailerLen
}

// AppendRetry appends a complete Retry datagram carrying cookie to b.
func AppendRetry(b []byte, dstCID uint64, cookie []byte) []byte {
	start := len(b)
	var hdr [headerLen]byte
	putHeader(hdr[:], Header{Type: PacketRetry, DstCID: dstCID})
	b = append(b, hdr[:]...)
	b = binary.AppendUvarint(b, uint64(len(cookie)))
	b = append(b, cookie...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// AppendRefuse appends a complete datagram telling the peer whose HELLO
// named srcCID that its connection is refused.
func AppendRefuse(b []byte, dstCID uint64) []byte {
	return appendRefusal(b, dstCID, CloseRefused, "")
}

// appendRefuseMode appends the refusal of a HELLO that asks for another
// protection mode than ours (a listener's, stateless): a Data packet to
// dstCID, packet number 0, whose body is CLOSE(CloseHandshakeFailed) naming
// our mode; at most refuseModeLen bytes.
func appendRefuseMode(b []byte, dstCID uint64, ours Protection) []byte {
	return appendRefusal(b, dstCID, CloseHandshakeFailed, "the listener's mode is "+ours.String())
}

// refuseModeLen bounds appendRefuseMode's datagram (the longest mode name).
const refuseModeLen = headerLen + 3 + len("the listener's mode is a pre-shared key") + trailerLen

func appendRefusal(b []byte, dstCID uint64, code uint64, reason string) []byte {
	start := len(b)
	var hdr [headerLen]byte
	putHeader(hdr[:], Header{Type: PacketData, DstCID: dstCID})
	b = append(b, hdr[:]...)
	b = appendClose(b, code, 0, reason)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// AppendReset appends to b the stateless reset answering a data packet
// whose header was trigger, addressed to a connection this side does not
// know (it lost its state: a restarted process). The reset echoes the
// trigger's destination connection ID and packet number: only the real
// sender of that packet knows both (the ID is 64 random bits, never sent
// but in the handshake), so it recognises the reset as the answer to its
// own packet and an off-path forger cannot make one it accepts (see
// docs/PROTOCOL.md, "Failing fast"). It is ResetLen bytes, never larger
// than the trigger. A reset must never answer a reset (nor a Retry, nor a
// packet whose DstCID is 0): the caller answers only PacketData.
func AppendReset(b []byte, trigger Header) []byte {
	start := len(b)
	var hdr [headerLen]byte
	putHeader(hdr[:], Header{Type: PacketReset, DstCID: trigger.DstCID, PacketNumber: trigger.PacketNumber})
	b = append(b, hdr[:]...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// AppendTokenReset appends to b the stateless reset answering a protected
// packet whose header was trigger: AppendReset's with token, the
// connection's stateless reset token (its sender's Endpoint derives it
// from its reset key and trigger.DstCID, see Endpoint.ResetToken), as the
// body. The peer took the token from the handshake's authenticated
// transport parameters and accepts only a reset that carries it
// (docs/PROTOCOL.md §14.3). It is TokenResetLen bytes: the caller answers
// only a longer datagram.
func AppendTokenReset(b []byte, trigger Header, token *[ResetTokenLen]byte) []byte {
	start := len(b)
	var hdr [headerLen]byte
	putHeader(hdr[:], Header{Type: PacketReset, DstCID: trigger.DstCID, PacketNumber: trigger.PacketNumber})
	b = append(b, hdr[:]...)
	b = append(b, token[:]...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// Quoted is what a possibly truncated copy of a datagram this side sent
// (the quote an ICMP error carries) says about the connection it belonged
// to.
type Quoted struct {
	DstCID uint64 // the peer's connection ID (0: a HELLO before the peer's was known)
	// SrcCID is the sender's own connection ID, known for a HELLO packet
	// quoted far enough; 0 otherwise.
	SrcCID uint64
}

// ParseQuoted decodes the start of a datagram this side sent, as an ICMP
// error quotes it: the quote may end anywhere, so no checksum is checked,
// only the version and the packet type. ok is false when the quote is too
// short to name a connection or is not a data packet of ours.
func ParseQuoted(b []byte) (q Quoted, ok bool) {
	if len(b) < headerLen || b[0] != Version {
		return Quoted{}, false
	}
	if t := PacketType(b[1]) &^ packetKeyPhase; t == PacketHandshake || t == PacketApp {
		// (The connection ID is in the clear; the body is ciphertext.)
		q.DstCID = binary.BigEndian.Uint64(b[2:10])
		return q, q.DstCID != 0
	}
	if PacketType(b[1]) != PacketData {
		return Quoted{}, false
	}
	q.DstCID = binary.BigEndian.Uint64(b[2:10])
	if body := b[headerLen:]; len(body) >= 1+8 && body[0] == frameHello {
		q.SrcCID = binary.BigEndian.Uint64(body[1:9])
	}
	if q.DstCID == 0 && q.SrcCID == 0 {
		return Quoted{}, false // a HELLO cut before its sender's ID: it names no connection
	}
	return q, true
}

// parseRetry decodes a Retry body.
func parseRetry(body []byte) (cookie []byte, err error) {
	n, k, err := readUvarint(body)
	if err != nil {
		return nil, err
	}
	body = body[k:]
	if n == 0 || n > MaxCookieLen || uint64(len(body)) != n {
		return nil, errTruncated
	}
	return body, nil
}

// PeekHello reports the HELLO frame at the start of a data packet's body:
// the sender's connection ID and the cookie it echoes (empty on a first
// attempt). ok is false when the body does not start with a valid HELLO.
// A listener calls it for packets whose DstCID is 0.
func PeekHello(body []byte) (h HelloFrame, ok bool) {
	if len(body) == 0 || body[0] != frameHello {
		return HelloFrame{}, false
	}
	var f frame // decoded directly: through decodeFrame's table f would escape
	if _, err := decodeHello(body, &f); err != nil {
		return HelloFrame{}, false
	}
	return f.hello, true
}

// HelloFrame opens a connection; each side sends one and retransmits it
// until acknowledged.
type HelloFrame struct {
	SrcCID      uint64 // the sender's connection ID: the peer puts it in DstCID
	InitialSeq  uint32 // first packet number, message sequence and delivery index
	MaxData     uint64 // initial flow-control credit (cumulative bytes)
	MaxAckDelay uint64 // microseconds the sender may delay an acknowledgement
	// The limits the peer must respect when it sends here.
	MaxMessageSize  uint64 // the largest message the sender accepts, 1..1 GiB
	MaxDatagramSize uint64 // the largest UDP payload the sender accepts, 1200..65535
	Cookie          []byte // the listener's cookie echoed back (aliases the datagram)
	// Protection is the sender's mode: plaintext, TLS or a PSK. A side
	// configured for protection refuses a peer in another mode (no
	// downgrade); so does a plaintext one.
	Protection Protection
}

// Protection is the mode a HELLO asks for: on the wire, one byte after
// the cookie, HelloTLS or HelloPSK, absent for plaintext. The two values
// are reserved: never frame types, so that a HELLO without the byte (one
// followed by a frame, by PADDING, or ending the body) reads as plaintext,
// and a plaintext HELLO is the same bytes as before protection existed.
type Protection uint8

// The modes of Protection.
const (
	Plaintext     Protection = 0
	ProtectionTLS Protection = 1 // TLS 1.3 (Config.TLS)
	ProtectionPSK Protection = 2 // Noise NNpsk0 with a pre-shared key (Config.PSK)
)

// The HELLO's protection byte for each protected mode (see Protection).
const (
	helloTLS = 0xf1
	helloPSK = 0xf2
)

func (p Protection) String() string {
	switch p {
	case Plaintext:
		return "plaintext"
	case ProtectionTLS:
		return "TLS"
	case ProtectionPSK:
		return "a pre-shared key"
	}
	return "Protection(" + strconv.Itoa(int(p)) + ")"
}

// ackRange is a run of acknowledged packet numbers, as distances below the
// frame's largest: it covers largest-hi .. largest-lo.
type ackRange struct{ lo, hi uint64 }

// ackFrame acknowledges received packets and carries the flow-control credit.
type ackFrame struct {
	largest uint32
	delay   uint64 // microseconds between receiving largest and sending this
	maxData uint64 // cumulative Delivery credit (bytes) the sender may use
	ranges  []ackRange
}

// msgFrame carries one message or one fragment of it.
type msgFrame struct {
	stream    uint64 // 0: a MSG frame; else a STREAM_MSG frame
	guarantee Guarantee
	seq       uint32 // Order/Delivery: sequence; None: message id
	d         uint32 // Delivery: delivery index; Order: delivery messages before it
	inSet     bool
	twice     bool   // None only: sent twice (redundancy), dropped the second time
	groupOff  uint64 // seq - first seq of the set
	baseOff   uint64 // d - delivery index at the start of the set
	fragment  bool
	total     uint64 // whole message length (fragment only)
	offset    uint64 // offset of data in the message (fragment only)
	data      []byte // aliases the datagram
}

// closeFrame ends the connection: gracefully (code CloseGraceful, with the
// sender's final delivery index) or with an error code and a reason.
type closeFrame struct {
	code   uint64
	final  uint32 // CloseGraceful: the delivery index after the last Delivery message sent
	reason []byte // code >= CloseError: aliases the datagram
}

// streamFinFrame ends the sender's direction of one stream (half-close):
// it sends nothing more on it, and every Delivery message it sent there has
// a delivery index below final.
type streamFinFrame struct {
	stream uint64 // the stream's ID; 0 is the connection's own stream
	final  uint32 // the stream's delivery index after its last Delivery message
}

// streamCtlFrame is any stream control frame (STREAM_OPEN, STREAM_RESET,
// STOP_SENDING, STREAM_CREDIT, STREAM_LIMIT); the frame type says which
// fields it carries.
type streamCtlFrame struct {
	id        uint64    // the stream (not STREAM_LIMIT); never 0 but in STREAM_CREDIT
	guarantee Guarantee // STREAM_OPEN: the stream's default guarantee
	code      uint64    // STREAM_RESET, STOP_SENDING: the application's error code
	// value is STREAM_RESET's final credit (the Delivery credit the sender
	// charged on the stream in all), STREAM_CREDIT's cumulative credit,
	// STREAM_LIMIT's cumulative count of streams.
	value uint64
}

// frame is the decoding target of any frame; typ says which part is valid.
type frame struct {
	typ    byte
	ack    ackFrame
	hello  HelloFrame
	close  closeFrame
	fin    streamFinFrame
	msg    msgFrame
	stream streamCtlFrame
	path   [pathDataLen]byte // PATH_CHALLENGE, PATH_RESPONSE
	crypto cryptoFrame
}

// frameDecoders dispatches on the frame type byte (MSG types use 0x10).
var frameDecoders = [...]func(b []byte, f *frame) (int, error){
	framePadding: decodePadding,
	framePing:    func([]byte, *frame) (int, error) { return 1, nil },
	frameAck:     decodeAck,
	frameHello:   decodeHello,
	frameClose:   decodeClose,

	framePathChallenge: decodePathData,
	framePathResponse:  decodePathData,
	frameStreamFin:     decodeStreamFin,

	frameStreamOpen:   decodeStreamCtl,
	frameStreamReset:  decodeStreamCtl,
	frameStopSending:  decodeStreamCtl,
	frameStreamCredit: decodeStreamCtl,
	frameStreamLimit:  decodeStreamCtl,

	frameCrypto: decodeCrypto,
}

// decodeFrame decodes the frame at the start of b into f and returns its
// encoded length. Any malformed input returns an error; nothing is retained.
// f.ack.ranges is reused (append onto f.ack.ranges[:0]).
func decodeFrame(b []byte, f *frame) (int, error) {
	if len(b) == 0 {
		return 0, errTruncated
	}
	t := b[0]
	f.typ = t
	if t&0xf0 == frameMsg || t&0xf0 == frameStreamMsg {
		return decodeMsg(b, f)
	}
	if int(t) >= len(frameDecoders) || frameDecoders[t] == nil {
		return 0, errBadFrame
	}
	return frameDecoders[t](b, f)
}

// paddingIsZero compiles only while framePadding is 0 (decodePadding's
// word scan relies on it).
var _ = [1]struct{}{}[framePadding]

func decodePadding(b []byte, _ *frame) (int, error) {
	n := 1
	// Eight bytes at a time first: a path MTU probe carries up to 64 KiB of
	// padding, and the byte loop alone was a fifth of a loopback dial's
	// CPU (framePadding is 0, so a zero word is eight PADDING frames;
	// paddingIsZero stops the build if it ever is not).
	for n+8 <= len(b) && binary.LittleEndian.Uint64(b[n:]) == 0 {
		n += 8
	}
	for n < len(b) && b[n] == framePadding {
		n++
	}
	return n, nil
}

// decodePathData decodes a PATH_CHALLENGE or PATH_RESPONSE: the type byte
// and pathDataLen bytes of data.
func decodePathData(b []byte, f *frame) (int, error) {
	if len(b) < 1+pathDataLen {
		return 0, errTruncated
	}
	copy(f.path[:], b[1:1+pathDataLen])
	return 1 + pathDataLen, nil
}

// appendPathData appends a PATH_CHALLENGE or PATH_RESPONSE (typ) carrying data.
func appendPathData(b []byte, typ byte, data *[pathDataLen]byte) []byte {
	b = append(b, typ)
	return append(b, data[:]...)
}

// readUvarint decodes a minimal LEB128 varint.
func readUvarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		if n == 0 {
			return 0, 0, errTruncated
		}
		return 0, 0, errBadVarint
	}
	if n > 1 && b[n-1] == 0 { // a trailing zero group: non-minimal encoding
		return 0, 0, errBadVarint
	}
	return v, n, nil
}

// reader walks a frame's fields, remembering the first error.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n, err := readUvarint(r.b[r.off:])
	if err != nil {
		r.err = err
		return 0
	}
	r.off += n
	return v
}

func (r *reader) u32() uint32 {
	if r.err != nil {
		return 0
	}
	if len(r.b)-r.off < 4 {
		r.err = errTruncated
		return 0
	}
	v := binary.BigEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) u64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b)-r.off < 8 {
		r.err = errTruncated
		return 0
	}
	v := binary.BigEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)-r.off) < n {
		r.err = errTruncated
		return nil
	}
	v := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return v
}

// ACK: type, largest u32, delay varint, maxData varint, range count varint
// (ranges after the first), first range length varint, then per range a gap
// and a length, both varints, as in QUIC: the next range ends gap+2 below the
// previous range's smallest and spans length+1 numbers.
func decodeAck(b []byte, f *frame) (int, error) {
	r := reader{b: b, off: 1}
	a := &f.ack
	a.largest = r.u32()
	a.delay = r.uvarint()
	a.maxData = r.uvarint()
	count := r.uvarint()
	first := r.uvarint()
	if r.err != nil {
		return 0, r.err
	}
	if count >= maxAckRanges || first > 1<<32 {
		return 0, errBadAck
	}
	a.ranges = append(a.ranges[:0], ackRange{lo: 0, hi: first})
	hi := first
	for i := uint64(0); i < count; i++ {
		gap := r.uvarint()
		length := r.uvarint()
		if r.err != nil {
			return 0, r.err
		}
		lo := hi + gap + 2
		hi = lo + length
		if gap > 1<<32 || length > 1<<32 || hi > 1<<32 {
			return 0, errBadAck
		}
		a.ranges = append(a.ranges, ackRange{lo: lo, hi: hi})
	}
	return r.off, nil
}

// appendAck encodes an ACK frame; ranges are distances below largest, the
// first containing 0, in decreasing packet number order, not overlapping.
func appendAck(b []byte, a *ackFrame) []byte {
	b = append(b, frameAck)
	b = binary.BigEndian.AppendUint32(b, a.largest)
	b = binary.AppendUvarint(b, a.delay)
	b = binary.AppendUvarint(b, a.maxData)
	b = binary.AppendUvarint(b, uint64(len(a.ranges)-1))
	b = binary.AppendUvarint(b, a.ranges[0].hi)
	prev := a.ranges[0].hi
	for _, rg := range a.ranges[1:] {
		b = binary.AppendUvarint(b, rg.lo-prev-2)
		b = binary.AppendUvarint(b, rg.hi-rg.lo)
		prev = rg.hi
	}
	return b
}

// HELLO: type, srcCID u64, initialSeq u32, maxData varint, maxAckDelay
// varint (µs), maxMessageSize varint, maxDatagramSize varint, cookie length
// varint (≤ MaxCookieLen), cookie.
func decodeHello(b []byte, f *frame) (int, error) {
	r := reader{b: b, off: 1}
	h := &f.hello
	h.SrcCID = r.u64()
	h.InitialSeq = r.u32()
	h.MaxData = r.uvarint()
	h.MaxAckDelay = r.uvarint()
	h.MaxMessageSize = r.uvarint()
	h.MaxDatagramSize = r.uvarint()
	if r.err == nil && (h.MaxMessageSize == 0 || h.MaxMessageSize > maxMessageLimit ||
		h.MaxDatagramSize < MinHelloDatagram || h.MaxDatagramSize > maxUDPPayload) {
		return 0, errBadFrame
	}
	n := r.uvarint()
	if r.err == nil && n > MaxCookieLen {
		return 0, errTruncated
	}
	h.Cookie = r.bytes(n)
	if r.err != nil {
		return 0, r.err
	}
	if h.SrcCID == 0 {
		return 0, errBadFrame
	}
	h.Protection = Plaintext
	if r.off < len(b) {
		switch b[r.off] {
		case helloTLS:
			h.Protection = ProtectionTLS
			r.off++
		case helloPSK:
			h.Protection = ProtectionPSK
			r.off++
		}
	}
	return r.off, nil
}

func appendHello(b []byte, h *HelloFrame) []byte {
	b = append(b, frameHello)
	b = binary.BigEndian.AppendUint64(b, h.SrcCID)
	b = binary.BigEndian.AppendUint32(b, h.InitialSeq)
	b = binary.AppendUvarint(b, h.MaxData)
	b = binary.AppendUvarint(b, h.MaxAckDelay)
	b = binary.AppendUvarint(b, h.MaxMessageSize)
	b = binary.AppendUvarint(b, h.MaxDatagramSize)
	b = binary.AppendUvarint(b, uint64(len(h.Cookie)))
	b = append(b, h.Cookie...)
	switch h.Protection {
	case ProtectionTLS:
		b = append(b, helloTLS)
	case ProtectionPSK:
		b = append(b, helloPSK)
	}
	return b
}

// CLOSE: type, code varint, then for CloseGraceful the final delivery
// index u32, for CloseRefused nothing, for any other code a reason length
// varint (≤ maxCloseReason) and the reason.
func decodeClose(b []byte, f *frame) (int, error) {
	r := reader{b: b, off: 1}
	cl := &f.close
	cl.code = r.uvarint()
	cl.final, cl.reason = 0, nil
	switch {
	case r.err != nil:
	case cl.code == CloseGraceful:
		cl.final = r.u32()
	case cl.code != CloseRefused:
		n := r.uvarint()
		if r.err == nil && n > maxCloseReason {
			return 0, errBadFrame
		}
		cl.reason = r.bytes(n)
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.off, nil
}

// appendClose encodes a CLOSE: final is used with CloseGraceful, reason
// (cut to maxCloseReason bytes) with the error codes.
func appendClose(b []byte, code uint64, final uint32, reason string) []byte {
	b = append(b, frameClose)
	b = binary.AppendUvarint(b, code)
	switch code {
	case CloseGraceful:
		return binary.BigEndian.AppendUint32(b, final)
	case CloseRefused:
		return b
	}
	reason = reason[:min(len(reason), maxCloseReason)]
	b = binary.AppendUvarint(b, uint64(len(reason)))
	return append(b, reason...)
}

// STREAM_FIN: type, stream ID varint, final delivery index u32.
func decodeStreamFin(b []byte, f *frame) (int, error) {
	r := reader{b: b, off: 1}
	f.fin.stream = r.uvarint()
	f.fin.final = r.u32()
	if r.err != nil {
		return 0, r.err
	}
	return r.off, nil
}

// appendStreamFin encodes a STREAM_FIN.
func appendStreamFin(b []byte, fin *streamFinFrame) []byte {
	b = append(b, frameStreamFin)
	b = binary.AppendUvarint(b, fin.stream)
	return binary.BigEndian.AppendUint32(b, fin.final)
}

// maxStreamFinLen bounds a STREAM_FIN's encoded length.
const maxStreamFinLen = 1 + binary.MaxVarintLen64 + 4

// MSG: type 0x10|flags, seq u32, then for Order/Delivery d u32; if the set
// flag (not None, where it is msgFlagTwice, carrying nothing): groupOff
// varint, baseOff varint; if the fragment flag: total varint,
// offset varint; then length varint and the data.
func decodeMsg(b []byte, f *frame) (int, error) {
	t := b[0]
	m := &f.msg
	m.guarantee = Guarantee(t & msgFlagGuarantee)
	if m.guarantee < None || m.guarantee > Delivery {
		return 0, errBadMessage
	}
	m.inSet = t&msgFlagSet != 0
	m.fragment = t&msgFlagFragment != 0
	m.twice = false
	if m.inSet && m.guarantee == None {
		// (Only a whole message is sent twice.)
		if m.fragment {
			return 0, errBadMessage
		}
		m.inSet, m.twice = false, true
	}
	r := reader{b: b, off: 1}
	m.stream = 0
	if t&0xf0 == frameStreamMsg {
		if m.stream = r.uvarint(); r.err == nil && m.stream == 0 {
			return 0, errBadMessage // stream 0's messages are MSG frames
		}
	}
	m.seq = r.u32()
	m.d, m.groupOff, m.baseOff, m.total, m.offset = 0, 0, 0, 0, 0
	if m.guarantee != None {
		m.d = r.u32()
	}
	if m.inSet {
		m.groupOff = r.uvarint()
		m.baseOff = r.uvarint()
	}
	if m.fragment {
		m.total = r.uvarint()
		m.offset = r.uvarint()
	}
	n := r.uvarint()
	m.data = r.bytes(n)
	if r.err != nil {
		return 0, r.err
	}
	if m.groupOff >= 1<<31 || m.baseOff >= 1<<31 {
		return 0, errBadMessage
	}
	if m.fragment && (m.total == 0 || m.offset >= m.total || m.total-m.offset < n) {
		return 0, errBadMessage
	}
	return r.off, nil
}

func appendMsg(b []byte, m *msgFrame) []byte {
	return append(appendMsgHeader(b, m), m.data...)
}

// appendMsgHeader appends m's frame up to its data, which follows it.
func appendMsgHeader(b []byte, m *msgFrame) []byte {
	b = append(b, msgType(m))
	if m.stream != 0 {
		b = binary.AppendUvarint(b, m.stream)
	}
	b = binary.BigEndian.AppendUint32(b, m.seq)
	if m.guarantee != None {
		b = binary.BigEndian.AppendUint32(b, m.d)
	}
	if m.inSet {
		b = binary.AppendUvarint(b, m.groupOff)
		b = binary.AppendUvarint(b, m.baseOff)
	}
	if m.fragment {
		b = binary.AppendUvarint(b, m.total)
		b = binary.AppendUvarint(b, m.offset)
	}
	return binary.AppendUvarint(b, uint64(len(m.data)))
}

// msgType is the type byte of m: MSG or STREAM_MSG, with its flags.
func msgType(m *msgFrame) byte {
	t := byte(frameMsg) | byte(m.guarantee)
	if m.stream != 0 {
		t = byte(frameStreamMsg) | byte(m.guarantee)
	}
	if m.inSet || m.twice {
		t |= msgFlagSet // (msgFlagTwice)
	}
	if m.fragment {
		t |= msgFlagFragment
	}
	return t
}

// maxMsgHeader is an upper bound on a MSG frame's bytes before its data.
// It bounds a STREAM_MSG frame's too for the messages a Conn sends: their
// total and offset stay below MaxMessageSizeLimit, 5 bytes as varints, which
// leaves the 10 bytes of the largest stream ID.
const maxMsgHeader = 1 + 4 + 4 + 2*binary.MaxVarintLen32 + 2*binary.MaxVarintLen64 + binary.MaxVarintLen32

// msgHeaderLen returns the exact bytes appendMsg writes before m.data.
func msgHeaderLen(m *msgFrame) int {
	n := 1 + 4
	if m.stream != 0 {
		n += uvarintLen(m.stream)
	}
	if m.guarantee != None {
		n += 4
	}
	if m.inSet {
		n += uvarintLen(m.groupOff) + uvarintLen(m.baseOff)
	}
	if m.fragment {
		n += uvarintLen(m.total) + uvarintLen(m.offset)
	}
	return n + uvarintLen(uint64(len(m.data)))
}

// STREAM_OPEN: type, stream ID varint, guarantee u8 (1..3).
// STREAM_RESET: type, stream ID varint, code varint, final credit varint.
// STOP_SENDING: type, stream ID varint, code varint.
// STREAM_CREDIT: type, stream ID varint, credit varint.
// STREAM_LIMIT: type, streams varint.
// A stream ID of 0 is invalid but in STREAM_CREDIT (stream 0 has no
// opening, reset or stop: it is the connection).
func decodeStreamCtl(b []byte, f *frame) (int, error) {
	t := b[0]
	r := reader{b: b, off: 1}
	s := &f.stream
	*s = streamCtlFrame{}
	if t != frameStreamLimit {
		s.id = r.uvarint()
		if r.err == nil && s.id == 0 && t != frameStreamCredit {
			return 0, errBadFrame
		}
	}
	switch t {
	case frameStreamOpen:
		if r.err == nil && r.off == len(b) {
			return 0, errTruncated
		}
		if r.err == nil {
			s.guarantee = Guarantee(b[r.off])
			r.off++
			if !s.guarantee.Valid() {
				return 0, errBadFrame
			}
		}
	case frameStreamReset:
		s.code = r.uvarint()
		s.value = r.uvarint()
	case frameStopSending:
		s.code = r.uvarint()
	case frameStreamCredit, frameStreamLimit:
		s.value = r.uvarint()
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.off, nil
}

// appendStreamCtl encodes a stream control frame of type t.
func appendStreamCtl(b []byte, t byte, s *streamCtlFrame) []byte {
	b = append(b, t)
	if t != frameStreamLimit {
		b = binary.AppendUvarint(b, s.id)
	}
	switch t {
	case frameStreamOpen:
		b = append(b, byte(s.guarantee))
	case frameStreamReset:
		b = binary.AppendUvarint(b, s.code)
		b = binary.AppendUvarint(b, s.value)
	case frameStopSending:
		b = binary.AppendUvarint(b, s.code)
	case frameStreamCredit, frameStreamLimit:
		b = binary.AppendUvarint(b, s.value)
	}
	return b
}

// streamCtlLen is the bytes appendStreamCtl writes.
func streamCtlLen(t byte, s *streamCtlFrame) int {
	n := 1
	if t != frameStreamLimit {
		n += uvarintLen(s.id)
	}
	switch t {
	case frameStreamOpen:
		n++
	case frameStreamReset:
		n += uvarintLen(s.code) + uvarintLen(s.value)
	case frameStopSending:
		n += uvarintLen(s.code)
	case frameStreamCredit, frameStreamLimit:
		n += uvarintLen(s.value)
	}
	return n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
