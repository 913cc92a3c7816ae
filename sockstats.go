package rudp

import (
	"context"
	"log/slog"
	"reflect"
	"sync/atomic"
)

// SocketStats counts what one socket did with the connections and the
// datagrams on it: a Listener's (Listener.Stats) or a PacketConn's
// (PacketConn.Stats), including the connections dialed through it. All
// counts are cumulative since the socket was opened, except Conns. A
// connection's own counts (RTT, losses, its own drops) are its Conn.Stats.
type SocketStats struct {
	// Conns is the number of connections on the socket now, accepted or
	// dialed, that have not ended.
	Conns int
	// Accepted counts connections peers opened that were admitted: queued
	// for Listener.Accept, or adopted by the PacketConn.
	Accepted uint64
	// Dialed counts connections dialed through the socket (Listener.Dial,
	// a PacketConn's WriteTo to a new peer).
	Dialed uint64
	// HandshakesCompleted counts connections, accepted or dialed, whose
	// handshake completed; HandshakesFailed those that ended before it
	// did (refused, timed out, unreachable, closed while dialing).
	HandshakesCompleted, HandshakesFailed uint64

	// DatagramsReceived counts the datagrams routed by connection ID. (A
	// connection whose Read reads the socket itself, while it is the only
	// one on it, hands its own datagrams over without routing them.)
	DatagramsReceived uint64
	// RetriesSent counts Retry datagrams: the answer, with an address
	// validation cookie, to a HELLO that echoed none (or a stale one).
	RetriesSent uint64

	// Refused counts the connection attempts refused (the dialer gets
	// ErrRefused); it is the sum of the causes below.
	Refused uint64
	// RefusedBacklog: AcceptBacklog connections waited for Accept.
	RefusedBacklog uint64
	// RefusedHostShare: the accept queue was half full, and the host (an
	// IPv4 address, an IPv6 /64) held its share of it already.
	RefusedHostShare uint64
	// RefusedPeers: a PacketConn held MaxPeers connections, none of them
	// idle; RefusedPeersPerHost: it held MaxPeersPerHost of the host's.
	RefusedPeers, RefusedPeersPerHost uint64
	// RefusedClosed: the Listener or PacketConn was closed.
	RefusedClosed uint64
	// RefusedAttempts: the socket remembered as many accepted attempts as
	// it may (about 262,000, for the cookie's lifetime).
	RefusedAttempts uint64
	// RefusedReplayed: a HELLO of an attempt whose connection ended, its
	// cookie still valid (a replay, or a duplicate that came very late).
	RefusedReplayed uint64

	// ResetsSent counts stateless resets: the answer to a packet for a
	// connection the socket does not know (a client of a server that
	// restarted); ResetsLimited those the rate limit withheld.
	ResetsSent, ResetsLimited uint64

	// Datagrams dropped before reaching a connection, by cause.
	// DroppedMalformed: too short, a bad checksum or header, or a HELLO
	// not padded to 1200 bytes.
	DroppedMalformed uint64
	// DroppedUnknown: for no connection on the socket, and not answered.
	DroppedUnknown uint64
	// DroppedTruncated: longer than the socket's receive buffer (the
	// buffer grows for the next ones).
	DroppedTruncated uint64
	// DroppedQueueFull: the socket's own answers (Retry, refusal, reset)
	// dropped because too many waited to be sent.
	DroppedQueueFull uint64
	// DroppedMisrouted: for no connection on the socket, its connection
	// ID carrying another server's ID (Config.ServerID, Config.Sockets):
	// not answered, since a stateless reset would end the connection
	// there.
	DroppedMisrouted uint64
}

// refusal is why the mux's acceptor (or the mux) would not take a
// connection the handshake created; the Endpoint then refuses it.
type refusal uint8

const (
	admitted refusal = iota
	refusedBacklog
	refusedPeers
	refusedPeersPerHost
	refusedClosed
)

// socketCounts are the counts of SocketStats the mux keeps itself (the
// rest are its Endpoint's).
type socketCounts struct {
	accepted            atomic.Uint64
	handshakes          atomic.Uint64
	handshakesFailed    atomic.Uint64
	truncated           atomic.Uint64
	refusedBacklog      atomic.Uint64 // by the acceptor, beyond the Endpoint's own
	refusedPeers        atomic.Uint64
	refusedPeersPerHost atomic.Uint64
	refusedClosed       atomic.Uint64 // by the mux, beyond the Endpoint's own
}

// count counts one refusal of the acceptor or the mux that the Endpoint
// sent (a full queue of its own datagrams drops some: those are counted
// as DroppedQueueFull).
func (s *socketCounts) count(why refusal) {
	switch why {
	case refusedBacklog:
		s.refusedBacklog.Add(1)
	case refusedPeers:
		s.refusedPeers.Add(1)
	case refusedPeersPerHost:
		s.refusedPeersPerHost.Add(1)
	case refusedClosed:
		s.refusedClosed.Add(1)
	}
}

// debugOn reports whether Config.Logger logs debug events; a caller asks
// before it builds a debug event's attributes, so a silent logger costs
// nothing.
func (s *settings) debugOn() bool {
	l := s.core.Logger
	return l != nil && l.Enabled(context.Background(), slog.LevelDebug)
}

// debug logs one debug event; the caller asked debugOn.
func (s *settings) debug(msg string, attrs ...slog.Attr) {
	s.core.Logger.LogAttrs(context.Background(), slog.LevelDebug, msg, attrs...)
}

// stats returns the socket's counts.
func (m *mux) stats() SocketStats {
	m.mu.Lock()
	ep := m.ep.Stats()
	conns := len(m.conns)
	m.mu.Unlock()
	s := &m.counts
	st := SocketStats{
		Conns:               conns,
		Accepted:            s.accepted.Load(),
		Dialed:              ep.Connected,
		HandshakesCompleted: s.handshakes.Load(),
		HandshakesFailed:    s.handshakesFailed.Load(),
		DatagramsReceived:   ep.DatagramsReceived,
		RetriesSent:         ep.RetriesSent,
		RefusedBacklog:      ep.RefusedBudget + s.refusedBacklog.Load(),
		RefusedHostShare:    ep.RefusedHostShare,
		RefusedPeers:        s.refusedPeers.Load(),
		RefusedPeersPerHost: s.refusedPeersPerHost.Load(),
		RefusedClosed:       ep.RefusedClosed + s.refusedClosed.Load(),
		RefusedAttempts:     ep.RefusedAttempts,
		RefusedReplayed:     ep.RefusedReplayed,
		ResetsSent:          ep.ResetsSent,
		ResetsLimited:       ep.ResetsLimited,
		DroppedMalformed:    ep.DroppedMalformed,
		DroppedUnknown:      ep.DroppedUnknown,
		DroppedTruncated:    s.truncated.Load(),
		DroppedQueueFull:    ep.DroppedQueueFull,
		DroppedMisrouted:    ep.DroppedMisrouted,
	}
	st.Refused = st.RefusedBacklog + st.RefusedHostShare + st.RefusedPeers + st.RefusedPeersPerHost +
		st.RefusedClosed + st.RefusedAttempts + st.RefusedReplayed
	return st
}

// Stats returns the counts of the listener's socket: its connections,
// handshakes, refusals by cause and datagrams dropped by cause; with
// Config.Sockets, the sums of its sockets' (ShardStats).
func (l *Listener) Stats() SocketStats {
	var sum SocketStats
	for _, st := range l.ShardStats() {
		sum.add(&st)
	}
	return sum
}

// ShardStats returns the counts of each of the listener's sockets
// (Config.Sockets; one unless sharded), in the order of their index in
// the port's SO_REUSEPORT group: socket k owns the connections whose
// connection IDs carry server ID ServerID+k.
func (l *Listener) ShardStats() []SocketStats {
	st := make([]SocketStats, len(l.shards))
	for k, m := range l.shards {
		st[k] = m.stats()
	}
	return st
}

// add adds o's counts to s's (every field is a count).
func (s *SocketStats) add(o *SocketStats) {
	sv, ov := reflect.ValueOf(s).Elem(), reflect.ValueOf(o).Elem()
	for i := range sv.NumField() {
		switch f := sv.Field(i); f.Kind() {
		case reflect.Int:
			f.SetInt(f.Int() + ov.Field(i).Int())
		case reflect.Uint64:
			f.SetUint(f.Uint() + ov.Field(i).Uint())
		default:
			panic("rudp: SocketStats." + sv.Type().Field(i).Name + " is not a count")
		}
	}
}

// Stats returns the counts of the PacketConn's socket: its connections,
// handshakes, refusals by cause and datagrams dropped by cause.
func (p *PacketConn) Stats() SocketStats { return p.m.stats() }
