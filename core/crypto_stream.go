package core

// The CRYPTO frames' send queue, retransmission and reassembly per key
// level belong to the handshake (issue 11). Until it lands, the packet
// builder's hooks are stubs: no level has handshake data to send.

// appendCrypto appends to buf[:n] the CRYPTO frames of level l that fit
// within limit, records them in pkt for retransmission, and returns the
// new length.
func (c *Conn) appendCrypto(l keyLevel, buf []byte, n, limit int, pkt *sentPacket) int {
	return n
}

// cryptoPending reports whether CRYPTO data of level l waits to be sent
// (new or to retransmit): the builder then sends a packet at level l,
// though the write level is higher.
func (c *Conn) cryptoPending(l keyLevel) bool { return false }
