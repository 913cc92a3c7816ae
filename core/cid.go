package core

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
)

// Routable connection IDs (docs/PROTOCOL.md §1.1), after the plaintext
// algorithm of QUIC-LB (draft-ietf-quic-load-balancers): an Endpoint with
// a server ID (EndpointConfig.ServerID) writes it in fixed bytes of every
// connection ID it chooses, so that whatever routes datagrams among
// servers (a stateless L4 load balancer, or the kernel among the sockets
// of one port: the root package's Config.Sockets) finds the server from a
// packet's DstCID alone, whatever address the packet came from:
//
//	octet 0        the config rotation (3 high bits: 0) and the ID's
//	               length less one (5 low bits: 7), RoutableCIDOctet
//	octets 1..n    the server ID (n = 1..MaxServerIDLen bytes), in the clear
//	octets n+1..7  random: at least 4 bytes, QUIC-LB's shortest nonce
//
// Connection IDs without a server ID are 8 random bytes (NewConnectionID).
const (
	// ConnectionIDLen is a connection ID's length on the wire (DstCID).
	ConnectionIDLen = 8
	// MaxServerIDLen is the longest server ID: the connection ID less its
	// first octet and the 4 random bytes it keeps.
	MaxServerIDLen = 3
	// RoutableCIDOctet is the first octet of a routable connection ID:
	// config rotation 0 in the 3 high bits, the length (8) less one in
	// the 5 low bits. (QUIC-LB's rotation 0b111 marks an unroutable ID;
	// rudp's unroutable IDs are the random ones, whose first octet is
	// this value by chance once in 256.)
	RoutableCIDOctet = 0<<5 | (ConnectionIDLen - 1)
)

// RoutableConnectionID draws a connection ID carrying serverID (1 to
// MaxServerIDLen bytes) from r: the first octet RoutableCIDOctet, the
// server ID, then random bytes. It is never 0.
func RoutableConnectionID(r rand.Source, serverID []byte) uint64 {
	var b [ConnectionIDLen]byte
	binary.BigEndian.PutUint64(b[:], r.Uint64())
	b[0] = RoutableCIDOctet
	copy(b[1:1+MaxServerIDLen], serverID)
	return binary.BigEndian.Uint64(b[:])
}

// CarriesServerID reports whether cid is a routable connection ID
// carrying serverID (1 to MaxServerIDLen bytes).
func CarriesServerID(cid uint64, serverID []byte) bool {
	var b [ConnectionIDLen]byte
	binary.BigEndian.PutUint64(b[:], cid)
	n := min(len(serverID), MaxServerIDLen)
	return b[0] == RoutableCIDOctet && bytes.Equal(b[1:1+n], serverID[:n])
}

// validServerID reports why id cannot be a server ID ("" if it can).
func validServerID(id []byte) string {
	if len(id) > MaxServerIDLen {
		return "must be at most 3 bytes long (an 8-byte connection ID keeps its first octet and 4 random bytes; nil: random connection IDs)"
	}
	return ""
}
