-- rudp.lua: a Wireshark/tshark dissector for rudp, wire protocol version 2
-- (docs/PROTOCOL.md of github.com/rudp-go/rudp is the reference; the
-- section numbers below are its).
--
-- Use:  tshark -X lua_script:rudp.lua -r capture.pcap
--       wireshark -X lua_script:rudp.lua   (or copy it into the personal
--       plugins folder: Help > About > Folders > Personal Lua Plugins)
--
-- rudp datagrams are found on any UDP port by a heuristic (version byte,
-- packet type, length and the CRC-32C trailer); "Decode As... > RUDPGO"
-- forces a port (the filter name is rudpgo: Wireshark has an unrelated
-- "rudp"). Protected packets (PROTOCOL.md §19) carry no checksum: they are
-- taken in a conversation whose plaintext handshake was seen, or anywhere
-- with the preference rudpgo.heuristic_protected; of them only the version,
-- the type and the DstCID are readable. A datagram whose CRC fails is still dissected (and
-- marked) when it belongs to a UDP conversation already seen carrying rudp
-- or to a port decoded as rudp. A UDP payload that is several rudp
-- datagrams back to back (a UDP GSO buffer captured before segmentation,
-- as on loopback: PROTOCOL.md §1) is split into its datagrams.
--
-- Every header field, frame and frame field is shown, and every rule a
-- receiver enforces (PROTOCOL.md §1-§4, §14.1, §17.2, §18.1) that a datagram
-- breaks is reported as expert info (group Malformed or Checksum, severity
-- Error): a truncated or non-minimal varint, a bad checksum, an unknown
-- frame type, a field out of range. Frames after a malformed one are not
-- dissected (a receiver drops the packet there).
--
-- Works with Wireshark 3.x and later (Lua 5.1 to 5.4).

local rudp = Proto("rudpgo", "rudp, reliable UDP (github.com/rudp-go/rudp)")

----------------------------------------------------------------------------
-- Bit operations: Lua 5.2's bit32 (Wireshark 3.x, 4.0, 4.2), LuaBitOp's
-- bit (bundled by Wireshark), or Lua 5.3's native operators.

local band, bxor, rshift
do
	local lib = rawget(_G, "bit32") or rawget(_G, "bit")
	if lib then
		band, bxor, rshift = lib.band, lib.bxor, lib.rshift
	else
		local ops = load("return function(a, b) return a & b end, " ..
			"function(a, b) return a ~ b end, function(a, n) return a >> n end")
		band, bxor, rshift = ops()
	end
end

-- u32 makes a bit-operation result unsigned (LuaBitOp's are signed).
local function u32(x) return x % 4294967296 end

----------------------------------------------------------------------------
-- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), PROTOCOL.md §1.

local crc_table = {}
for i = 0, 255 do
	local c = i
	for _ = 1, 8 do
		if band(c, 1) ~= 0 then
			c = bxor(rshift(c, 1), 0x82F63B78)
		else
			c = rshift(c, 1)
		end
	end
	crc_table[i] = c
end

-- crc_update feeds bytes first..last (1-based) of the string s into the
-- running (not yet finalized) CRC state c.
local function crc_update(c, s, first, last)
	for i = first, last do
		c = bxor(rshift(c, 8), crc_table[band(bxor(c, s:byte(i)), 0xFF)])
	end
	return c
end

local CRC_INIT = 0xFFFFFFFF
local function crc_final(c) return u32(bxor(c, 0xFFFFFFFF)) end

-- be32 reads a big-endian u32 at 1-based position i of s.
local function be32(s, i)
	local a, b, c, d = s:byte(i, i + 3)
	return ((a * 256 + b) * 256 + c) * 256 + d
end

----------------------------------------------------------------------------
-- Wire constants (core/wire.go).

local VERSION = 2
local HEADER_LEN, TRAILER_LEN = 14, 4
local OVERHEAD = HEADER_LEN + TRAILER_LEN
local MAX_COOKIE = 64
local MAX_CLOSE_REASON = 128
local MAX_ACK_RANGES = 64
local PATH_DATA_LEN = 8

local PKT_DATA, PKT_RETRY, PKT_RESET = 1, 2, 3
-- Protected packets (PROTOCOL.md §19): the type byte's lowest bit is the
-- key phase, masked by header protection, so both values of each pair are
-- one type. Only version, type and DstCID are readable in the clear.
local PKT_HANDSHAKE, PKT_APP = 4, 6
local packet_types = {
	[PKT_DATA] = "Data", [PKT_RETRY] = "Retry", [PKT_RESET] = "Reset",
	[4] = "Handshake", [5] = "Handshake", [6] = "Application", [7] = "Application",
}
local MIN_PROTECTED = HEADER_LEN + 1 + 16 -- a byte of frames and the AEAD tag
local AEAD_TAG_LEN = 16

local function protected_type(t) return t >= PKT_HANDSHAKE and t <= PKT_APP + 1 end

local F_PADDING, F_PING, F_ACK, F_HELLO, F_CLOSE = 0x00, 0x01, 0x02, 0x03, 0x04
local F_PATH_CHALLENGE, F_PATH_RESPONSE, F_STREAM_FIN = 0x05, 0x06, 0x07
local F_STREAM_OPEN, F_STREAM_RESET, F_STOP_SENDING = 0x08, 0x09, 0x0A
local F_STREAM_CREDIT, F_STREAM_LIMIT = 0x0B, 0x0C
local F_CRYPTO = 0x0F
local MAX_CRYPTO_END = 0x100000 -- 2^20
local F_MSG, F_STREAM_MSG = 0x10, 0x20

local frame_types = {
	[F_PADDING] = "PADDING", [F_PING] = "PING", [F_ACK] = "ACK", [F_HELLO] = "HELLO",
	[F_CLOSE] = "CLOSE", [F_PATH_CHALLENGE] = "PATH_CHALLENGE",
	[F_PATH_RESPONSE] = "PATH_RESPONSE", [F_STREAM_FIN] = "STREAM_FIN",
	[F_STREAM_OPEN] = "STREAM_OPEN", [F_STREAM_RESET] = "STREAM_RESET",
	[F_STOP_SENDING] = "STOP_SENDING", [F_STREAM_CREDIT] = "STREAM_CREDIT",
	[F_STREAM_LIMIT] = "STREAM_LIMIT", [F_CRYPTO] = "CRYPTO",
}
for t = 0x10, 0x1F do frame_types[t] = "MSG" end
for t = 0x20, 0x2F do frame_types[t] = "STREAM_MSG" end

local guarantees = { [0] = "invalid", [1] = "None", [2] = "Order", [3] = "Delivery" }
local close_codes = { [0] = "Graceful", [1] = "Refused", [2] = "Error", [3] = "ProtocolViolation",
	[4] = "HandshakeFailed" }
local protections = { [0xF1] = "TLS", [0xF2] = "pre-shared key" }
local crypto_levels = { [0] = "Initial", [1] = "Handshake", [2] = "Application" }

----------------------------------------------------------------------------
-- Fields.

local pf = {
	datagram        = ProtoField.bytes("rudpgo.datagram", "Datagram"),
	version         = ProtoField.uint8("rudpgo.version", "Version"),
	type            = ProtoField.uint8("rudpgo.type", "Packet type", base.DEC, packet_types),
	dcid            = ProtoField.uint64("rudpgo.dcid", "Destination connection ID", base.HEX),
	pn              = ProtoField.uint32("rudpgo.pn", "Packet number (low 32 bits)"),
	pn_masked       = ProtoField.bytes("rudpgo.pn_masked", "Packet number (masked by header protection)"),
	protected       = ProtoField.bytes("rudpgo.protected_payload", "Protected payload (frames, encrypted)"),
	tag             = ProtoField.bytes("rudpgo.tag", "AEAD tag"),
	body            = ProtoField.bytes("rudpgo.body", "Body"),
	checksum        = ProtoField.uint32("rudpgo.checksum", "Checksum (CRC-32C)", base.HEX),
	checksum_status = ProtoField.bool("rudpgo.checksum.good", "Checksum good"),
	checksum_calc   = ProtoField.uint32("rudpgo.checksum.computed", "Computed checksum", base.HEX),
	gso_segment     = ProtoField.uint16("rudpgo.gso.segment_size", "GSO segment size"),

	retry_cookie_len = ProtoField.uint64("rudpgo.retry.cookie_length", "Cookie length"),
	retry_cookie     = ProtoField.bytes("rudpgo.retry.cookie", "Cookie"),

	frame      = ProtoField.bytes("rudpgo.frame", "Frame"),
	frame_type = ProtoField.uint8("rudpgo.frame_type", "Frame type", base.HEX, frame_types),

	padding_len = ProtoField.uint32("rudpgo.padding.length", "Padding length"),

	ack_largest     = ProtoField.uint32("rudpgo.ack.largest", "Largest acknowledged (low 32 bits)"),
	ack_delay       = ProtoField.uint64("rudpgo.ack.delay", "ACK delay (µs)"),
	ack_max_data    = ProtoField.uint64("rudpgo.ack.max_data", "Max data"),
	ack_range_count = ProtoField.uint64("rudpgo.ack.range_count", "Range count"),
	ack_first_range = ProtoField.uint64("rudpgo.ack.first_range", "First range"),
	ack_gap         = ProtoField.uint64("rudpgo.ack.gap", "Gap"),
	ack_length      = ProtoField.uint64("rudpgo.ack.range_length", "Range length"),

	hello_scid         = ProtoField.uint64("rudpgo.hello.scid", "Source connection ID", base.HEX),
	hello_initial_seq  = ProtoField.uint32("rudpgo.hello.initial_seq", "Initial sequence"),
	hello_max_data     = ProtoField.uint64("rudpgo.hello.max_data", "Max data"),
	hello_max_ack_delay = ProtoField.uint64("rudpgo.hello.max_ack_delay", "Max ACK delay (µs)"),
	hello_max_msg      = ProtoField.uint64("rudpgo.hello.max_message_size", "Max message size"),
	hello_max_dgram    = ProtoField.uint64("rudpgo.hello.max_datagram_size", "Max datagram size"),
	hello_cookie_len   = ProtoField.uint64("rudpgo.hello.cookie_length", "Cookie length"),
	hello_cookie       = ProtoField.bytes("rudpgo.hello.cookie", "Cookie"),
	hello_protection   = ProtoField.uint8("rudpgo.hello.protection", "Protection", base.HEX, protections),

	crypto_level  = ProtoField.uint8("rudpgo.crypto.level", "Key level", base.DEC, crypto_levels),
	crypto_offset = ProtoField.uint64("rudpgo.crypto.offset", "Offset"),
	crypto_length = ProtoField.uint64("rudpgo.crypto.length", "Length"),
	crypto_data   = ProtoField.bytes("rudpgo.crypto.data", "Handshake data"),

	close_code       = ProtoField.uint64("rudpgo.close.code", "Code"),
	close_final      = ProtoField.uint32("rudpgo.close.final", "Final delivery index (low 32 bits)"),
	close_reason_len = ProtoField.uint64("rudpgo.close.reason_length", "Reason length"),
	close_reason     = ProtoField.string("rudpgo.close.reason", "Reason"),

	path_data = ProtoField.bytes("rudpgo.path.data", "Path data"),

	stream_id      = ProtoField.uint64("rudpgo.stream.id", "Stream ID"),
	stream_final   = ProtoField.uint32("rudpgo.stream.final", "Final delivery index (low 32 bits)"),
	stream_guarantee = ProtoField.uint8("rudpgo.stream.guarantee", "Default guarantee", base.DEC, guarantees),
	stream_code    = ProtoField.uint64("rudpgo.stream.code", "Application code"),
	stream_final_credit = ProtoField.uint64("rudpgo.stream.final_credit", "Final credit"),
	stream_credit  = ProtoField.uint64("rudpgo.stream.credit", "Credit"),
	stream_limit   = ProtoField.uint64("rudpgo.stream.limit", "Streams (cumulative)"),

	msg_guarantee = ProtoField.uint8("rudpgo.msg.guarantee", "Guarantee", base.DEC, guarantees, 0x03),
	msg_fragment  = ProtoField.bool("rudpgo.msg.fragment", "Fragment", 8, nil, 0x04),
	msg_set       = ProtoField.bool("rudpgo.msg.set", "In a set", 8, nil, 0x08),
	msg_seq       = ProtoField.uint32("rudpgo.msg.seq", "Sequence / None id (low 32 bits)"),
	msg_d         = ProtoField.uint32("rudpgo.msg.d", "Delivery index (low 32 bits)"),
	msg_group_off = ProtoField.uint64("rudpgo.msg.group_off", "Group offset"),
	msg_base_off  = ProtoField.uint64("rudpgo.msg.base_off", "Base offset"),
	msg_total     = ProtoField.uint64("rudpgo.msg.total", "Total length"),
	msg_offset    = ProtoField.uint64("rudpgo.msg.offset", "Offset"),
	msg_length    = ProtoField.uint64("rudpgo.msg.length", "Length"),
	msg_data      = ProtoField.bytes("rudpgo.msg.data", "Data"),

	undecoded = ProtoField.bytes("rudpgo.undecoded", "Not dissected (after a malformed frame)"),
}
local field_list = {}
for _, f in pairs(pf) do field_list[#field_list + 1] = f end
rudp.fields = field_list

local ef = {
	truncated = ProtoExpert.new("rudpgo.truncated", "Truncated field",
		expert.group.MALFORMED, expert.severity.ERROR),
	bad_varint = ProtoExpert.new("rudpgo.bad_varint", "Varint not minimal or beyond 64 bits",
		expert.group.MALFORMED, expert.severity.ERROR),
	bad_checksum = ProtoExpert.new("rudpgo.bad_checksum", "Bad CRC-32C checksum",
		expert.group.CHECKSUM, expert.severity.ERROR),
	unknown_frame = ProtoExpert.new("rudpgo.unknown_frame", "Unknown frame type",
		expert.group.MALFORMED, expert.severity.ERROR),
	out_of_range = ProtoExpert.new("rudpgo.out_of_range", "Field out of range",
		expert.group.MALFORMED, expert.severity.ERROR),
	bad_header = ProtoExpert.new("rudpgo.bad_header", "Not a valid rudp header",
		expert.group.MALFORMED, expert.severity.ERROR),
}
rudp.experts = { ef.truncated, ef.bad_varint, ef.bad_checksum, ef.unknown_frame, ef.out_of_range, ef.bad_header }

----------------------------------------------------------------------------
-- Decoding helpers. Every decoder takes the datagram's Tvb (tvb), the
-- offset of what it reads (off) and the end of the body (stop, exclusive),
-- and returns the offset after it, or nil and an error {expert, range, text}
-- on the first violation.

local function err(e, range, text) return { expert = e, range = range, text = text } end

local U64_2_30 = UInt64(0x40000000, 0)
local U64_2_31 = UInt64(0x80000000, 0)
local U64_2_32 = UInt64(0, 1)

-- varint reads an unsigned LEB128 varint (PROTOCOL.md §2) as a UInt64:
-- returns value, length; or nil and an error for one cut off by stop, one
-- beyond 64 bits, or a non-minimal one.
local function varint(tvb, off, stop)
	local v = UInt64(0, 0)
	for i = 0, 9 do
		if off + i >= stop then
			return nil, err(ef.truncated, tvb(off, stop - off), "varint cut off")
		end
		local b = tvb(off + i, 1):uint()
		if i == 9 and b > 1 then
			return nil, err(ef.bad_varint, tvb(off, i + 1), "varint beyond 64 bits")
		end
		v = v:bor(UInt64(b % 128, 0):lshift(7 * i))
		if b < 128 then
			if i > 0 and b == 0 then
				return nil, err(ef.bad_varint, tvb(off, i + 1), "non-minimal varint")
			end
			return v, i + 1
		end
	end
end

-- fixed checks that n bytes remain.
local function fixed(tvb, off, stop, n, what)
	if stop - off < n then
		local len = stop - off
		return err(ef.truncated, len > 0 and tvb(off, len) or tvb(off > 0 and off - 1 or 0, 1), what .. " cut off")
	end
end

-- Reader: fields added to a frame's tree one after the other; the first
-- error stops it.
local Reader = {}
Reader.__index = Reader

local function reader(tvb, tree, off, stop)
	return setmetatable({ tvb = tvb, tree = tree, off = off, stop = stop }, Reader)
end

function Reader:varint(field)
	if self.e then return nil end
	local v, n = varint(self.tvb, self.off, self.stop)
	if not v then
		self.e = n
		return nil
	end
	local item = self.tree:add(field, self.tvb(self.off, n), v)
	self.last_off, self.last_len = self.off, n
	self.off = self.off + n
	return v, item
end

function Reader:uint(field, n, what)
	if self.e then return nil end
	local e = fixed(self.tvb, self.off, self.stop, n, what)
	if e then
		self.e = e
		return nil
	end
	local r = self.tvb(self.off, n)
	local item = self.tree:add(field, r)
	self.last_off, self.last_len = self.off, n
	self.off = self.off + n
	if n == 8 then return r:uint64(), item end
	return r:uint(), item
end

-- bytes adds n bytes (n a UInt64 or number) as field.
function Reader:bytes(field, n, what)
	if self.e then return nil end
	local remaining = self.stop - self.off
	if UInt64(remaining, 0) < UInt64(n) then
		self.e = err(ef.truncated, remaining > 0 and self.tvb(self.off, remaining) or self.tvb(self.off - 1, 1),
			what .. " longer than the bytes left")
		return nil
	end
	n = UInt64(n):tonumber()
	if n > 0 then
		self.tree:add(field, self.tvb(self.off, n))
	end
	local r = n > 0 and self.tvb(self.off, n) or nil
	self.off = self.off + n
	return r
end

-- range marks item (or the frame) as out of range when bad.
function Reader:check(bad, range, text)
	if self.e or not bad then return end
	self.e = err(ef.out_of_range, range, text)
end

-- last_range is the bytes of the field read last.
function Reader:last_range()
	return self.tvb(self.last_off, self.last_len)
end

----------------------------------------------------------------------------
-- Frames (PROTOCOL.md §3, §17.2). Each decoder returns r (its Reader) and
-- a short text for the Info column; r.e is the error, if any.

local decoders = {}

decoders[F_PADDING] = function(r)
	local n = 1
	while r.off + n < r.stop and r.tvb(r.off + n, 1):uint() == 0 do n = n + 1 end
	r.tree:add(pf.padding_len, r.tvb(r.off, n), n)
	r.off = r.off + n
	return "PADDING"
end

decoders[F_PING] = function(r)
	r.off = r.off + 1
	return "PING"
end

decoders[F_ACK] = function(r)
	r.off = r.off + 1
	local largest = r:uint(pf.ack_largest, 4, "largest")
	r:varint(pf.ack_delay)
	r:varint(pf.ack_max_data)
	local count_start = r.off
	local count = r:varint(pf.ack_range_count)
	local first_start = r.off
	local first = r:varint(pf.ack_first_range)
	if r.e then return "ACK" end
	r:check(count >= UInt64(MAX_ACK_RANGES, 0), r.tvb(count_start, first_start - count_start),
		"range count above 63")
	r:check(first > U64_2_32, r.tvb(first_start, r.off - first_start), "first range above 2^32")
	local hi = first
	local n = r.e and 0 or count:tonumber()
	for _ = 1, n do
		local start = r.off
		local gap = r:varint(pf.ack_gap)
		local length = r:varint(pf.ack_length)
		if r.e then break end
		local range = r.tvb(start, r.off - start)
		r:check(gap > U64_2_32 or length > U64_2_32, range, "gap or range length above 2^32")
		if r.e then break end
		hi = hi + gap + UInt64(2, 0) + length
		r:check(hi > U64_2_32, range, "range reaches more than 2^32 below largest")
		if r.e then break end
	end
	return largest and string.format("ACK(%d)", largest) or "ACK"
end

decoders[F_HELLO] = function(r)
	r.off = r.off + 1
	local scid = r:uint(pf.hello_scid, 8, "SrcCID")
	local scid_range = scid and r:last_range()
	r:uint(pf.hello_initial_seq, 4, "InitialSeq")
	r:varint(pf.hello_max_data)
	r:varint(pf.hello_max_ack_delay)
	local mms = r:varint(pf.hello_max_msg)
	if mms then
		r:check(mms == UInt64(0, 0) or mms > U64_2_30, r:last_range(), "MaxMessageSize not in 1..2^30")
	end
	local mds = r:varint(pf.hello_max_dgram)
	if mds then
		r:check(mds < UInt64(1200, 0) or mds > UInt64(65535, 0), r:last_range(),
			"MaxDatagramSize not in 1200..65535")
	end
	local n = r:varint(pf.hello_cookie_len)
	if n then
		r:check(n > UInt64(MAX_COOKIE, 0), r:last_range(), "cookie length above 64")
		r:bytes(pf.hello_cookie, n, "cookie")
	end
	-- The optional protection byte (PROTOCOL.md §3.4, §18): 0xF1 and 0xF2
	-- are never frame types, so anything else is the next frame.
	local mode
	if not r.e and r.off < r.stop and protections[r.tvb(r.off, 1):uint()] then
		mode = protections[r.tvb(r.off, 1):uint()]
		r:uint(pf.hello_protection, 1, "protection")
	end
	if scid and scid == UInt64(0, 0) then
		r:check(true, scid_range, "SrcCID 0")
	end
	if mode then return "HELLO(" .. mode .. ")" end
	return "HELLO"
end

decoders[F_CLOSE] = function(r)
	r.off = r.off + 1
	local code, item = r:varint(pf.close_code)
	if not code then return "CLOSE" end
	local c = code:tonumber()
	item:append_text(" (" .. (close_codes[c] or "unknown: an abort") .. ")")
	if c == 0 then
		r:uint(pf.close_final, 4, "final")
	elseif c ~= 1 then
		local n = r:varint(pf.close_reason_len)
		if n then
			r:check(n > UInt64(MAX_CLOSE_REASON, 0), r:last_range(), "reason longer than 128 bytes")
			r:bytes(pf.close_reason, n, "reason")
		end
	end
	return string.format("CLOSE(%s)", tostring(code))
end

local function path_data(name)
	return function(r)
		r.off = r.off + 1
		r:bytes(pf.path_data, PATH_DATA_LEN, name .. " data")
		return name
	end
end
decoders[F_PATH_CHALLENGE] = path_data("PATH_CHALLENGE")
decoders[F_PATH_RESPONSE] = path_data("PATH_RESPONSE")

decoders[F_STREAM_FIN] = function(r)
	r.off = r.off + 1
	local id = r:varint(pf.stream_id)
	r:uint(pf.stream_final, 4, "final")
	return string.format("STREAM_FIN(%s)", tostring(id))
end

-- stream_id reads a stream control frame's ID, which must not be 0 unless
-- zero_ok.
local function stream_id(r, zero_ok)
	local id = r:varint(pf.stream_id)
	if id and not zero_ok then
		r:check(id == UInt64(0, 0), r:last_range(), "stream ID 0")
	end
	return tostring(id)
end

decoders[F_STREAM_OPEN] = function(r)
	r.off = r.off + 1
	local id = stream_id(r, false)
	local g = r:uint(pf.stream_guarantee, 1, "guarantee")
	if g then r:check(g < 1 or g > 3, r:last_range(), "guarantee not in 1..3") end
	return "STREAM_OPEN(" .. id .. ")"
end

-- The other stream control frames: a stream ID (0 only in STREAM_CREDIT),
-- then varints.
local stream_ctl = {
	[F_STREAM_RESET] = { "STREAM_RESET", false, pf.stream_code, pf.stream_final_credit },
	[F_STOP_SENDING] = { "STOP_SENDING", false, pf.stream_code },
	[F_STREAM_CREDIT] = { "STREAM_CREDIT", true, pf.stream_credit },
}
for t, spec in pairs(stream_ctl) do
	decoders[t] = function(r)
		r.off = r.off + 1
		local id = stream_id(r, spec[2])
		for i = 3, #spec do r:varint(spec[i]) end
		if t == F_STREAM_CREDIT and id == "0" then
			id = "initial" -- the credit every stream opened from now on starts with (§17.6)
		end
		return spec[1] .. "(" .. id .. ")"
	end
end

decoders[F_STREAM_LIMIT] = function(r)
	r.off = r.off + 1
	r:varint(pf.stream_limit)
	return "STREAM_LIMIT"
end

-- CRYPTO (PROTOCOL.md §18.1): key level u8 (0..2), offset and length
-- varints (their sum at most 2^20), the handshake's bytes.
decoders[F_CRYPTO] = function(r)
	r.off = r.off + 1
	local level = r:uint(pf.crypto_level, 1, "level")
	if level then r:check(level > 2, r:last_range(), "key level above 2") end
	local offset = r:varint(pf.crypto_offset)
	local offset_range = offset and r:last_range()
	local length = r:varint(pf.crypto_length)
	if length and not r.e then
		local max = UInt64(MAX_CRYPTO_END, 0)
		r:check(offset > max or length > max - offset, offset_range, "offset + length above 2^20")
		if not r.e then r:bytes(pf.crypto_data, length, "data") end
	end
	return string.format("CRYPTO(%s)", crypto_levels[level] or "?")
end

-- msg decodes MSG (0x10-0x1F) and STREAM_MSG (0x20-0x2F), PROTOCOL.md §3.6.
local function msg(r, t)
	local tr = r.tvb(r.off, 1)
	local g = t % 4
	local fragment = band(t, 0x04) ~= 0
	local set = band(t, 0x08) ~= 0
	r.tree:add(pf.msg_guarantee, tr)
	r.tree:add(pf.msg_fragment, tr)
	r.tree:add(pf.msg_set, tr)
	r.off = r.off + 1
	local name = t >= F_STREAM_MSG and "STREAM_MSG" or "MSG"
	r:check(g == 0, tr, "guarantee 0")
	r:check(set and g == 1, tr, "set flag with None")
	local id
	if t >= F_STREAM_MSG then
		id = stream_id(r, false)
	end
	r:uint(pf.msg_seq, 4, "seq")
	if g ~= 1 then r:uint(pf.msg_d, 4, "d") end
	if set then
		local go = r:varint(pf.msg_group_off)
		if go then r:check(go >= U64_2_31, r:last_range(), "groupOff at or above 2^31") end
		local bo = r:varint(pf.msg_base_off)
		if bo then r:check(bo >= U64_2_31, r:last_range(), "baseOff at or above 2^31") end
	end
	local total, offset
	local frag_start = r.off
	if fragment then
		total = r:varint(pf.msg_total)
		offset = r:varint(pf.msg_offset)
	end
	local len_start = r.off
	local length = r:varint(pf.msg_length)
	if fragment and length and not r.e then
		local range = r.tvb(frag_start, r.off - frag_start)
		r:check(total == UInt64(0, 0), range, "total 0")
		r:check(offset >= total, range, "offset at or above total")
		-- In 64 bits without overflow: total - offset < length.
		if not r.e then
			r:check(total - offset < length, range, "offset + length above total")
		end
	end
	if length and not r.e then
		r:bytes(pf.msg_data, length, "data")
	end
	local s = name .. "(" .. (guarantees[g] or "?")
	if id then s = s .. ", stream " .. id end
	if fragment and offset and total then s = s .. ", " .. tostring(offset) .. "/" .. tostring(total) end
	return s .. ")", len_start
end

-- dissect_frames walks a Data packet's body [off, stop) and returns the
-- Info column's list of frames.
local function dissect_frames(tvb, pinfo, tree, off, stop)
	local names = {}
	while off < stop do
		local t = tvb(off, 1):uint()
		local label = frame_types[t]
		local ftree = tree:add(pf.frame, tvb(off, stop - off))
		ftree:set_text((label or "Unknown frame") .. string.format(" (0x%02X)", t))
		ftree:add(pf.frame_type, tvb(off, 1))
		local r = reader(tvb, ftree, off, stop)
		local info
		if not label then
			r.e = err(ef.unknown_frame, tvb(off, 1), string.format("unknown frame type 0x%02X", t))
			info = string.format("0x%02X?", t)
		elseif t >= F_MSG and t < 0x30 then
			info = msg(r, t)
		else
			info = decoders[t](r)
		end
		names[#names + 1] = info
		if r.e then
			ftree:set_len(math.max(1, math.min(r.off, stop) - off))
			ftree:add_tvb_expert_info(r.e.expert, r.e.range, r.e.text)
			local rest = stop - off
			if rest > 0 then
				tree:add(pf.undecoded, tvb(off, rest))
			end
			names[#names] = info .. " [malformed]"
			return names, r.e
		end
		ftree:set_len(r.off - off)
		off = r.off
	end
	return names
end

----------------------------------------------------------------------------
-- Datagrams (PROTOCOL.md §1).

-- header_plausible: version, type and length, the checks before the CRC.
local function header_plausible(tvb, off, len)
	return len >= OVERHEAD and tvb(off, 1):uint() == VERSION and packet_types[tvb(off + 1, 1):uint()] ~= nil
end

-- protected_plausible: a protected packet's header (no checksum to check).
local function protected_plausible(tvb, len)
	return len >= MIN_PROTECTED and tvb(0, 1):uint() == VERSION and protected_type(tvb(1, 1):uint())
end

-- crc_ok reports whether the datagram at [off, off+len) of the payload
-- string s (0-based off) carries its CRC.
local function crc_ok(s, off, len)
	local c = crc_final(crc_update(CRC_INIT, s, off + 1, off + len - TRAILER_LEN))
	return c == be32(s, off + len - TRAILER_LEN + 1), c
end

-- gso_segments splits a UDP payload that is several rudp datagrams of one
-- size back to back (the last one may be shorter), as a GSO buffer captured
-- before segmentation shows: returns the segment size, or nil. One pass
-- over the payload finds the first prefix whose trailer is its CRC.
local function gso_segments(tvb, s)
	local len = #s
	local c = CRC_INIT
	local seg
	for i = 1, len - TRAILER_LEN do
		c = crc_update(c, s, i, i)
		if i >= HEADER_LEN and i + TRAILER_LEN < len and crc_final(c) == be32(s, i + 1) then
			seg = i + TRAILER_LEN
			break
		end
	end
	if not seg then return nil end
	for off = seg, len - 1, seg do
		local n = math.min(seg, len - off)
		if not header_plausible(tvb, off, n) or not crc_ok(s, off, n) then return nil end
	end
	return seg
end

-- gso_protected splits a UDP payload that is several protected datagrams
-- of one connection back to back (see gso_segments): they have no
-- checksum, but each starts with the version, a protected type and the
-- same DstCID, 8 random bytes. Returns the segment size, or nil.
local function gso_protected(s)
	local len = #s
	local dcid = s:sub(3, 10)
	local from = MIN_PROTECTED + 3
	while true do
		local at = s:find(dcid, from, true)
		if not at then return nil end
		local seg = at - 3 -- the candidate segment's offset, 0-based
		local ok = true
		for off = seg, len - 1, seg do
			if len - off < MIN_PROTECTED or s:byte(off + 1) ~= VERSION or
				not protected_type(s:byte(off + 2)) or s:sub(off + 3, off + 10) ~= dcid then
				ok = false
				break
			end
		end
		if ok then return seg end
		from = at + 1
	end
end

-- dissect_datagram dissects one rudp datagram at [off, off+len) of tvb and
-- returns its Info text.
local function dissect_datagram(tvb, pinfo, root, s, off, len, whole)
	local tree = root
	if not whole then
		tree = root:add(pf.datagram, tvb(off, len))
		tree:set_text(string.format("Datagram, %d bytes", len))
	end
	if len < OVERHEAD then
		tree:add_proto_expert_info(ef.bad_header, "shorter than 18 bytes")
		return "[too short]"
	end
	local version = tvb(off, 1):uint()
	tree:add(pf.version, tvb(off, 1))
	local typ = tvb(off + 1, 1):uint()
	local type_item = tree:add(pf.type, tvb(off + 1, 1))
	tree:add(pf.dcid, tvb(off + 2, 8))
	if version ~= VERSION then
		tree:add_proto_expert_info(ef.bad_header, string.format("version %d, not 2", version))
		return string.format("[version %d]", version)
	end
	if not packet_types[typ] then
		type_item:add_proto_expert_info(ef.bad_header, string.format("unknown packet type %d", typ))
		return string.format("[type %d]", typ)
	end
	if protected_type(typ) then
		-- §19.3: the packet number is masked, the frames encrypted; the
		-- type's lowest bit (the key phase) is masked too.
		type_item:append_text(" (protected; its lowest bit masked)")
		local info = string.format("%s DCID=0x%s [protected]", packet_types[typ], tvb(off + 2, 8):uint64():tohex())
		tree:add(pf.pn_masked, tvb(off + 10, 4))
		if len < MIN_PROTECTED then
			tree:add_proto_expert_info(ef.bad_header, "a protected packet shorter than 31 bytes")
			return info .. " [too short]"
		end
		tree:add(pf.protected, tvb(off + HEADER_LEN, len - HEADER_LEN - AEAD_TAG_LEN))
		tree:add(pf.tag, tvb(off + len - AEAD_TAG_LEN, AEAD_TAG_LEN))
		return info
	end
	tree:add(pf.pn, tvb(off + 10, 4))
	local stop = off + len - TRAILER_LEN
	local good, computed = crc_ok(s, off, len)
	local ck = tree:add(pf.checksum, tvb(stop, TRAILER_LEN))
	ck:add(pf.checksum_status, tvb(stop, TRAILER_LEN), good)
	if not good then
		ck:add(pf.checksum_calc, tvb(stop, TRAILER_LEN), computed)
		ck:add_proto_expert_info(ef.bad_checksum, string.format("CRC-32C is 0x%08X", computed))
	end
	local info = string.format("%s PN=%d DCID=0x%s", packet_types[typ], tvb(off + 10, 4):uint(),
		tvb(off + 2, 8):uint64():tohex())
	if not good then
		return info .. " [bad checksum]"
	end
	local body_len = stop - off - HEADER_LEN
	if typ == PKT_DATA then
		local names = dissect_frames(tvb, pinfo, tree, off + HEADER_LEN, stop)
		return info .. " [" .. table.concat(names, ", ") .. "]"
	elseif typ == PKT_RETRY then
		-- §4: cookie length 1..64 and exactly the bytes that remain.
		local r = reader(tvb, tree, off + HEADER_LEN, stop)
		local n = r:varint(pf.retry_cookie_len)
		if n then
			r:check(n == UInt64(0, 0) or n > UInt64(MAX_COOKIE, 0) or n ~= UInt64(stop - r.off, 0),
				r:last_range(), "cookie length not 1..64 or not the bytes that remain")
			r:bytes(pf.retry_cookie, n, "cookie")
		end
		if r.e then
			tree:add_tvb_expert_info(r.e.expert, r.e.range, r.e.text)
			return info .. " [malformed]"
		end
		return info
	else
		-- §14.1: a Reset has no body.
		if body_len > 0 then
			local item = tree:add(pf.body, tvb(off + HEADER_LEN, body_len))
			item:add_proto_expert_info(ef.out_of_range, "a Reset with a body")
			return info .. " [malformed]"
		end
		return info
	end
end

-- conversations remembers the UDP conversations seen carrying rudp (a
-- datagram with a good checksum), so that a later datagram of theirs
-- whose checksum fails is dissected and marked rather than left as data.
local conversations = {}

local function conversation_key(pinfo)
	local a = tostring(pinfo.src) .. ":" .. tostring(pinfo.src_port)
	local b = tostring(pinfo.dst) .. ":" .. tostring(pinfo.dst_port)
	if a < b then return a .. " " .. b end
	return b .. " " .. a
end

rudp.prefs.heuristic_protected = Pref.bool("Detect protected packets anywhere", false,
	"Take a UDP datagram that starts with version 2 and a protected packet type (4 to 7) for rudp " ..
	"on any port, even in a conversation where no plaintext rudp datagram (a handshake) was seen. " ..
	"Protected packets carry no checksum, so this may take other protocols' datagrams for rudp.")

function rudp.init()
	conversations = {}
end

-- dissect: forced is true when the port was decoded as rudp (Decode As) or
-- the conversation is known; otherwise (the heuristic) nothing is claimed
-- but a payload of datagrams whose checksums hold.
local function dissect(tvb, pinfo, root, forced)
	local len = tvb:len()
	local key = conversation_key(pinfo)
	local known = conversations[key]
	local s, seg
	if protected_plausible(tvb, len) then
		-- Nothing to check but the header: claimed where the handshake's
		-- plaintext packets were seen, or when the preference says so.
		if not (forced or known or rudp.prefs.heuristic_protected) then return 0 end
		s = tvb:raw()
		seg = gso_protected(s)
	else
		if len < OVERHEAD or not header_plausible(tvb, 0, len) then
			if not forced then return 0 end
		end
		s = tvb:raw()
		local good = len >= OVERHEAD and crc_ok(s, 0, len)
		if not good and header_plausible(tvb, 0, len) then
			seg = gso_segments(tvb, s)
		end
		if not good and not seg and not forced and not known then
			return 0
		end
		if good or seg then conversations[key] = true end
	end

	pinfo.cols.protocol = "rudp"
	local tree = root:add(rudp, tvb())
	if seg then
		tree:add(pf.gso_segment, tvb(0, 0), seg):set_generated()
		local infos = {}
		for off = 0, len - 1, seg do
			local n = math.min(seg, len - off)
			infos[#infos + 1] = dissect_datagram(tvb, pinfo, tree, s, off, n, false)
		end
		pinfo.cols.info = string.format("GSO %d datagrams: ", #infos) .. table.concat(infos, " | ")
	else
		pinfo.cols.info = dissect_datagram(tvb, pinfo, tree, s, 0, len, true)
	end
	return len
end

function rudp.dissector(tvb, pinfo, root)
	return dissect(tvb, pinfo, root, true)
end

local function heuristic(tvb, pinfo, root)
	return dissect(tvb, pinfo, root, false) > 0
end

rudp:register_heuristic("udp", heuristic)
DissectorTable.get("udp.port"):add_for_decode_as(rudp)
