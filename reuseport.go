package rudp

import (
	"fmt"
	"net"
	"sync/atomic"

	"golang.org/x/net/bpf"

	"github.com/rudp-go/rudp/core"
)

// Sharded listeners (Config.Sockets): one port, several SO_REUSEPORT
// sockets, each served by a mux of its own (its reader goroutine, batch
// buffers, timer, core.Endpoint and connection table), all offering to the
// one Listener's accept queue. Each socket is a server in QUIC-LB's sense
// (docs/PROTOCOL.md §1.1): socket k chooses connection IDs carrying the
// server ID ServerID+k (its last byte counting up), and the kernel steers
// every datagram whose DstCID carries a server ID to the socket whose index
// in the port's group is that ID's last byte (steeringProgram). A HELLO
// (DstCID 0, chosen by nobody yet) goes where the kernel's hash of the
// address pair sends it, its Retry'd HELLO from the same address so too,
// and the shard that creates the connection keeps it: every later packet
// names the shard, from whatever address it comes.
//
// One Endpoint per socket rather than one for all: the shards share no
// lock, a connection is touched by its own shard's goroutines only (as on
// any socket), and each Endpoint stays the deterministic sans-I/O core
// that routes for one socket. Their connection IDs cannot collide (each
// carries its shard's server ID), and a datagram that reaches the wrong
// shard anyway (the group changed under it) is dropped and counted
// (SocketStats.DroppedMisrouted), never answered with a reset that would
// end its connection on the right one.

// maxSockets bounds Config.Sockets: the steering program returns a socket
// index from one byte of the connection ID.
const maxSockets = 256

// shardServerID returns the server ID of a sharded listener's socket k:
// the configured one (default {0}) with k added to its last byte
// (resolve checked that it does not overflow). nil without sharding and
// without a server ID: random connection IDs.
func (s *settings) shardServerID(k int) []byte {
	if s.sockets == 0 {
		return s.serverID
	}
	id := append([]byte(nil), s.serverID...)
	if len(id) == 0 {
		id = []byte{0}
	}
	id[len(id)-1] += byte(k)
	return id
}

// checkSharding reports a Config whose Sockets and ServerID cannot work
// together, naming the field to change; nil if they can.
func checkSharding(cfg *Config) error {
	bad := func(field string, v any, reason string) error {
		return &ConfigError{Field: field, Value: v, Reason: reason}
	}
	last := 0
	if n := len(cfg.ServerID); n > 0 {
		last = int(cfg.ServerID[n-1])
	}
	switch {
	case len(cfg.ServerID) > core.MaxServerIDLen:
		return bad("ServerID", cfg.ServerID, fmt.Sprintf("must be at most %d bytes long (an 8-byte connection ID keeps its first octet and 4 random bytes)", core.MaxServerIDLen))
	case cfg.Sockets < 0 || cfg.Sockets > maxSockets:
		return bad("Sockets", cfg.Sockets, fmt.Sprintf("must be between 0 and %d (0: one socket, not shared)", maxSockets))
	case cfg.Sockets > 0 && !reusePortSteering:
		return bad("Sockets", cfg.Sockets, "must be 0 here: sharing a port with SO_REUSEPORT and steering by connection ID needs Linux")
	case cfg.Sockets > 1 && cfg.Manual:
		return bad("Sockets", cfg.Sockets, "must be 0 or 1 in Manual mode (several sockets are for several reader goroutines)")
	case cfg.Sockets == 1 && len(cfg.ServerID) == 0:
		return bad("ServerID", cfg.ServerID, "must be set with Sockets 1 (a socket sharing its port with other processes' needs a server ID of its own, so the kernel steers their connections apart)")
	case cfg.Sockets > 1 && last+cfg.Sockets-1 > 255:
		return bad("Sockets", cfg.Sockets, fmt.Sprintf("must be at most %d with ServerID's last byte %d (socket k uses the server ID whose last byte is that plus k)", 256-last, last))
	}
	return nil
}

// Steering program results: a socket index, or noSteering, which is no
// index (at least the group's size), so the kernel falls back to its hash
// of the address pair.
const noSteering = 0xffffffff

// steeringProgram returns the classic BPF program, for
// SO_ATTACH_REUSEPORT_CBPF, that steers a datagram among the sockets of a
// port: it returns the last byte of the server ID its DstCID carries (a
// routable connection ID with server IDs of idLen bytes), the index in the
// port's group of the socket that owns that ID, and noSteering for
// anything else: too short to be a packet, another version, a HELLO
// (DstCID 0), a stateless reset (its DstCID is the receiver's peer's), a
// connection ID without a server ID. The kernel runs it on the UDP
// payload (offset 0 is the rudp header's first byte); an index the group
// does not have falls back to the hash too. A load beyond the datagram
// would end a classic BPF program with 0, a real index, so the length is
// checked first and every load is within the shortest packet.
func steeringProgram(idLen int) []bpf.Instruction {
	const (
		typeOff = 1
		cidOff  = 2 // the DstCID's first octet
	)
	// Each test's true branch skips to the last instruction (noSteering).
	return []bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtLen},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: core.PacketOverhead, SkipTrue: 10},
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: core.Version, SkipTrue: 8},
		bpf.LoadAbsolute{Off: typeOff, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 6},                        // no such type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(core.PacketReset), SkipTrue: 5}, // its DstCID is not ours
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: 0x07, SkipTrue: 4},               // beyond the protected types
		bpf.LoadAbsolute{Off: cidOff, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: core.RoutableCIDOctet, SkipTrue: 2}, // random, or 0: a HELLO
		bpf.LoadAbsolute{Off: uint32(cidOff + idLen), Size: 1},                      // the server ID's last byte
		bpf.RetA{},
		bpf.RetConstant{Val: noSteering},
	}
}

// socketGroup is the sockets of a sharded Listener, one port's
// SO_REUSEPORT group, each with its mux. The kernel steers by a socket's
// index in the group, and closing one renumbers the others (the group's
// last socket takes its place), so they close together, once none has a
// user left: the Listener, or a connection.
type socketGroup struct {
	muxes []*mux
	busy  atomic.Int32 // the muxes with users
}

// idle notes that m (m.mu held) has no user left, and closes every socket
// of the group once none has: the others' mu is taken while m's is held,
// which cannot wait on m, since a mux with no user serves no connection
// that would take m's.
func (g *socketGroup) idle(m *mux) {
	if g.busy.Add(-1) > 0 {
		return
	}
	for _, o := range g.muxes {
		if o != m {
			o.mu.Lock()
			o.closeSocketLocked()
			o.mu.Unlock()
		}
	}
	m.closeSocketLocked()
}

// listenSharded opens n sockets on the port of laddr (its port 0: one the
// kernel picks), all sharing it with SO_REUSEPORT, and steers datagrams
// among them by connection ID with steeringProgram(idLen).
func listenSharded(network string, laddr *net.UDPAddr, n, idLen int) ([]*net.UDPConn, error) {
	prog, err := bpf.Assemble(steeringProgram(idLen))
	if err != nil {
		return nil, err
	}
	return listenReusePort(network, laddr, n, prog)
}
