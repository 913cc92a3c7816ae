package rudp

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/rudp-go/rudp/core"
)

// Guarantee is what the library promises about one message (see core.Guarantee).
type Guarantee = core.Guarantee

// The guarantees, weakest first.
const (
	None     = core.None     // arrives 0 or 1 times, in any order
	Order    = core.Order    // arrives 0 or 1 times, never after a newer Order/Delivery message
	Delivery = core.Delivery // arrives exactly once, in order (the default)
)

// Stats is a snapshot of a connection's counters and estimates.
type Stats = core.Stats

// ConfigError names a Config field holding a bad value.
type ConfigError = core.ConfigError

// Defaults and limits of the fields the root package owns (the core's
// knobs take the core's: core.Config.WithDefaults).
const (
	defaultAcceptBacklog = 1024
	maxAcceptBacklog     = 1 << 20 // the queue is allocated whole: 8 bytes a place
	defaultMaxPeers      = 4096
	defaultLinger        = 10 * time.Second
)

// Config tunes Dial, Listen and ListenPacket. A nil *Config means defaults,
// and so does the zero value of every field. A Config is read once, when
// the call that takes it starts; it may be shared.
type Config struct {
	// Guarantee is what Read and Write carry. Zero means Delivery: a
	// reliable ordered byte stream (Write may be split and coalesced).
	// With Order or None the connection is message-oriented: one Write is
	// one message, one Read returns one whole message (a too-small buffer
	// gets an error matching ErrBufferTooSmall and the message is kept).
	Guarantee Guarantee

	// Manual makes the library start no goroutine: the application calls
	// Pump, and blocking calls (Read, Write, Accept, Dial) drive the socket
	// themselves while they wait.
	Manual bool

	// HandshakeTimeout bounds Dial (default 10s).
	HandshakeTimeout time.Duration

	// IdleTimeout ends a connection that heard nothing for this long
	// (default 30s, or twice a HeartbeatPeriod set above 15s; at least 1ms).
	IdleTimeout time.Duration

	// HeartbeatPeriod is how long a connection may be silent before it
	// sends a keep-alive; it must be shorter than IdleTimeout (default
	// 15s, or half an IdleTimeout set below 30s).
	HeartbeatPeriod time.Duration

	// MaxDatagramSize, MaxMessageSize, SendBufferSize, ReceiveWindow and
	// MaxReceiveWindow are the core's knobs of the same names (see
	// core.Config for their ranges); 0 means the core's default, which
	// follows the others set: the buffers grow to hold a MaxMessageSize
	// set above 1 MiB, and MaxMessageSize shrinks to fit a buffer or
	// window set below it. MaxDatagramSize may be 1200 to 65507:
	// datagrams start at 1200 bytes and grow by path MTU probing up to it
	// (see core.Config.MaxDatagramSize, Stats.DatagramSize). Left 0 on
	// Linux (with batch I/O), it follows the route, as TCP's MSS follows the
	// interface's MTU: a dial asks the kernel for the MTU of the route to
	// the peer (IP_MTU, IPV6_MTU) and takes it less the IP and UDP headers
	// (65507 bytes over loopback, 1472 over 1500-byte Ethernet with IPv4,
	// 8972 with jumbo frames), and a listener's connections take what their
	// client's HELLO says it reads. Probing still confirms every size, so a
	// path narrower than its route costs a few probes, never data. (This
	// departs from DESIGN.md's fixed ceiling: on loopback, 64 KiB datagrams
	// moved a bulk transfer at 2-3x the goodput and half the CPU per GiB of
	// 1452-byte ones, rudpbench bulk.) Elsewhere, or with DisableBatchIO,
	// the default is 1452, what a 1500-byte Ethernet path carries with
	// IPv6. The
	// flow-control window starts at ReceiveWindow and grows with the
	// path's bandwidth-delay product up to MaxReceiveWindow (default
	// 16 MiB); set the two equal to keep it fixed.
	MaxDatagramSize  int
	MaxMessageSize   int
	SendBufferSize   int
	ReceiveWindow    int
	MaxReceiveWindow int

	// StreamReceiveWindow is the core's knob of the same name: each
	// stream's own flow-control window (every stream but 0, which has only
	// the connection's), so that a stream nobody reads holds at most this
	// much and blocks only its own writers, at their write deadline, while
	// the other streams keep the rest of the connection's window. Default
	// 2 MiB (or what a MaxMessageSize message is charged, if larger),
	// doubled as the reader keeps up, up to half of MaxReceiveWindow (the
	// connection's window following to twice it).
	StreamReceiveWindow int

	// Redundancy is the core's knob of the same name: every connection
	// sends the small messages of its own stream (what Write sends) twice
	// from the start, as StreamOptions.Redundancy does for a stream (see
	// there, and Conn.SetRedundancy).
	Redundancy bool

	// Linger bounds how long Close waits for the peer to acknowledge what
	// was written (and the close) before it aborts the connection and
	// returns an error matching os.ErrDeadlineExceeded; PacketConn.Close
	// waits so for all its peers at once. Default 10s. A negative Linger
	// makes Close return at once (as TCP's does) and finish the close in
	// the background, as long as the process runs (in Manual mode, as long
	// as it pumps), aborting it if the peer takes none of the data for a
	// third of IdleTimeout (1s to 10s).
	//
	// Zero means the default, as in every field, so "return at once" is a
	// negative value, not 0: a Config written before
	// this field, or built without it, gets the close that loses nothing,
	// and one rule ("zero is the default") holds for the whole struct.
	// Conn.SetLinger, a call rather than a field, follows *net.TCPConn's
	// instead: SetLinger(0) aborts.
	Linger time.Duration

	// AcceptBacklog bounds the connections waiting in Accept; more are
	// refused and their dialers get ErrRefused (default 1024, at most
	// 1048576: the queue is allocated whole). Once half of it is waiting,
	// a host (an IPv4 address, an IPv6 /64) with a sixteenth of it (at
	// least 8) waiting already is refused more, so that one host
	// handshaking faster than the application accepts cannot lock others out.
	AcceptBacklog int

	// MaxPeers bounds the connections a PacketConn holds at once (default
	// 4096), so that peers cannot make it hold unbounded memory. When a
	// new peer's connection would exceed it, the least recently active
	// idle peer (no message moved either way for HeartbeatPeriod, nothing
	// unread) is closed gracefully to make room; only when no peer is idle
	// is the new one refused (its dialer gets ErrRefused). Connections
	// WriteTo opens count towards it and may reclaim idle peers, but are
	// never refused. A Listener's accepted connections are bounded by the
	// application, which accepts them, and AcceptBacklog.
	MaxPeers int

	// MaxPeersPerHost bounds the connections of one host (an IPv4 address,
	// an IPv6 /64) among a PacketConn's MaxPeers, so that one host opening
	// connections from many source ports cannot take the table from the
	// others. A new connection beyond it reclaims that host's least
	// recently active idle peer, or is refused. Zero means a sixteenth of
	// MaxPeers, at least 8 and at most MaxPeers (256 by default); raise it
	// for many peers behind one NAT address. It must not exceed MaxPeers.
	MaxPeersPerHost int

	// Sockets, on Linux, makes a Listener serve its port with that many
	// sockets sharing it (SO_REUSEPORT), each with a reader goroutine, a
	// timer and a connection table of its own, all feeding the one Accept:
	// a server that one reader cannot keep up with scales across cores. The
	// kernel steers every datagram by the connection ID it names (a
	// classic BPF program over the header), so a connection stays on one
	// socket, also when its client's address changes; a HELLO goes where
	// the kernel's hash of the address pair sends it. Socket k uses the
	// server ID ServerID+k (k added to its last byte; ServerID defaults to
	// {0} here), and the kernel sends a datagram to the socket whose index
	// in the port's group (the order the sockets were opened in) is the
	// last byte of the server ID its connection ID carries: so a Listener
	// alone on its port must keep that byte 0, and processes sharing a
	// port (Sockets 1 each, say) must open their sockets in the order of
	// their server IDs' last bytes (0, 1, ...), and use server IDs of one
	// length (the program each attaches replaces the group's). 0 (the default) is one
	// socket, not shared; 1 is one socket that other processes may share.
	// At most 256; not in Manual mode beyond 1; elsewhere than Linux it
	// must be 0. Dial and ListenPacket ignore it. AcceptBacklog bounds the
	// one Accept queue; a host's share of it (see AcceptBacklog) is counted
	// per socket, so a host whose attempts the kernel hashes onto several
	// sockets may hold up to that many shares. The sockets close together,
	// when the Listener and every connection on any of them have.
	Sockets int

	// ServerID, if set (1 to 3 bytes), is written in the clear in every
	// connection ID this side chooses, after QUIC-LB's plaintext layout
	// (docs/PROTOCOL.md §1.1), so that a stateless load balancer in front
	// of several servers routes each datagram to the server that owns its
	// connection by its connection ID, not by its address, which a client
	// may change. Each server behind one balancer needs its own. A socket
	// then answers a packet for a connection it does not know with a
	// stateless reset only if the packet's connection ID carries its own
	// server ID (SocketStats.DroppedMisrouted counts the others). The
	// connection IDs keep 4 to 6 random bytes of their 8. nil: random
	// connection IDs (with Sockets, {0}).
	ServerID []byte

	// Logger receives debug events; nil is silent.
	Logger *slog.Logger

	// Tracer, if set, is called once for each connection, dialed or
	// accepted, when it is made, for the core.Tracer that receives its
	// events (packets, losses, RTT and congestion window, streams, path
	// and MTU changes, state); nil from it leaves that connection
	// untraced. qlog.DirTracer writes one qlog file per connection. The
	// Tracer's functions run under the connection's lock, on the socket's
	// reader goroutine or the caller's: they must not call the Conn and
	// should return quickly. Unset, tracing costs nothing measurable
	// (docs/BENCHMARKS.md).
	Tracer func(core.TraceInfo) *core.Tracer

	// MaxIncomingStreams is how many streams the peer may have open at
	// once (Conn.AcceptStream; stream 0, the connection itself, is never
	// counted): the peer's OpenStream waits while it is reached, and a peer
	// that opens more anyway breaks the protocol and the connection ends.
	// Default 100, at most 65535; -1 lets the peer open none.
	MaxIncomingStreams int

	// DisableBatchIO makes every socket call move one datagram. By default
	// (on Linux) a read takes every datagram ready, up to 32, with recvmmsg,
	// and a connection hands the kernel what it has ready with sendmmsg.
	DisableBatchIO bool

	// DisableGSO keeps batched sends from passing a run of equal-sized
	// datagrams as one buffer that the kernel cuts up (UDP generic
	// segmentation offload, Linux 4.18 and later). It is turned off by
	// itself on a socket whose route cannot do it.
	DisableGSO bool

	// TLS, if set, protects every connection with TLS 1.3 (crypto/tls's
	// QUIC API, docs/PROTOCOL.md §18): certificates, ServerName, RootCAs,
	// ClientAuth, NextProtos as with crypto/tls (a zero MinVersion works:
	// rudp speaks TLS 1.3 only). An empty ServerName is filled from the
	// dialed address's host by Dial, DialContext, Dialer and Listener.Dial
	// (in a clone: the config is never changed), as tls.Dial does, an IP
	// literal too; a PacketConn's WriteTo, given no host name, needs it set
	// (or InsecureSkipVerify), as with tls.Client. A side configured for
	// protection refuses a peer that is not, and a plaintext one refuses a
	// protected peer (no downgrade); a failed handshake fails Dial with an
	// error matching ErrHandshakeFailed that says which (wrapping
	// crypto/tls's, so errors.As finds *tls.CertificateVerificationError),
	// and a listener keeps nothing of it. Conn.ConnectionState reports it.
	//
	// crypto/tls's QUIC API runs each TLS handshake on a goroutine of its
	// own, which ends when the handshake completes or the connection does:
	// with TLS, even Manual mode has one goroutine per handshake in
	// progress (a departure from "Manual starts no goroutine" that crypto/tls
	// imposes; the core hands it control synchronously, so it adds no
	// concurrency). PSK mode starts none.
	TLS *tls.Config

	// PSK, if set, protects every connection with a pre-shared key of
	// exactly 32 bytes (Noise NNpsk0: both sides authenticated by the key,
	// forward secrecy from an ephemeral X25519 exchange). Not with TLS.
	PSK []byte

	// StatelessResetKey is the secret, 32 bytes, from which a socket derives
	// the stateless reset token of each of its connections, told to the
	// peer by a protected connection's handshake (docs/PROTOCOL.md §14.3).
	// A process that restarts with the same key answers its old
	// connections' packets with resets their peers accept, so they fail
	// in about a round trip instead of at their IdleTimeout; keep it as
	// secret as a private key (whoever holds it can end the connections).
	// nil: a random key for each socket, so a peer of a restarted process
	// learns of it at its idle timeout. Plaintext connections take resets
	// without a token (§14.1), whatever the key. (A TLS client tells its
	// peer no token: its transport parameters travel in the clear, in the
	// ClientHello. So this key serves the listener's side, and a PSK
	// client's.)
	StatelessResetKey []byte

	// Core holds the core's advanced knobs (congestion controller,
	// InitialSequence, ...). The fields above that share a name with one
	// of Core's (HandshakeTimeout, IdleTimeout, HeartbeatPeriod, the sizes
	// and windows, Logger) override it where set. Core.Clock and Core.Rand
	// are the seed API's (core.Session's), not a connection's: Clock must
	// stay nil (the root package reads the system clock) and Rand is not
	// used (each socket draws its connection IDs from crypto/rand).
	Core *core.Config
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() *Config {
	c := &Config{}
	c.fillDefaults()
	return c
}

// fillDefaults fills in c's zero fields: the core's knobs as the core's
// defaults, which follow each other (core.Config.WithDefaults), and the
// root's own.
func (c *Config) fillDefaults() {
	var cc core.Config
	for _, k := range coreKnobs(c, &cc) {
		k.toCore()
	}
	full := cc.WithDefaults()
	for _, k := range coreKnobs(c, full) {
		if k.fromCore != nil {
			k.fromCore()
		}
	}
	c.fillRootDefaults()
}

// fillRootDefaults fills in the zero fields that only the root package
// reads. MaxPeersPerHost stays zero, so that it follows a MaxPeers set
// later (resolve derives it).
func (c *Config) fillRootDefaults() {
	if c.Guarantee == 0 {
		c.Guarantee = Delivery
	}
	setDuration(&c.Linger, defaultLinger)
	setInt(&c.AcceptBacklog, defaultAcceptBacklog)
	setInt(&c.MaxPeers, defaultMaxPeers)
}

// knob is a Config field that sets the core.Config field of the same name.
type knob struct {
	name     string
	set      func() bool // the Config sets it (not zero)
	toCore   func()      // copy the Config's value to the core.Config
	fromCore func()      // copy the core.Config's value back (nil: its zero value is its default, as a nil Logger)
}

// coreKnobs lists, each once, the Config fields that set the core.Config
// field of the same name (the Config's, where set, override Config.Core's).
// Every other core knob is set through Config.Core alone, and every other
// Config field is the root's alone.
func coreKnobs(c *Config, cc *core.Config) []knob {
	logger := pair("Logger", &c.Logger, &cc.Logger)
	logger.fromCore = nil
	tracer := knob{ // (a func: not comparable, so not a pair)
		name:   "Tracer",
		set:    func() bool { return c.Tracer != nil },
		toCore: func() { cc.Tracer = c.Tracer },
	}
	tlsConfig := pair("TLS", &c.TLS, &cc.TLS)
	tlsConfig.fromCore = nil
	psk := knob{
		name:   "PSK",
		set:    func() bool { return c.PSK != nil },
		toCore: func() { cc.PSK = c.PSK },
	}
	return []knob{
		pair("HandshakeTimeout", &c.HandshakeTimeout, &cc.HandshakeTimeout),
		pair("IdleTimeout", &c.IdleTimeout, &cc.IdleTimeout),
		pair("HeartbeatPeriod", &c.HeartbeatPeriod, &cc.HeartbeatPeriod),
		pair("MaxDatagramSize", &c.MaxDatagramSize, &cc.MaxDatagramSize),
		pair("MaxMessageSize", &c.MaxMessageSize, &cc.MaxMessageSize),
		pair("SendBufferSize", &c.SendBufferSize, &cc.SendBufferSize),
		pair("ReceiveWindow", &c.ReceiveWindow, &cc.ReceiveWindow),
		pair("MaxReceiveWindow", &c.MaxReceiveWindow, &cc.MaxReceiveWindow),
		pair("StreamReceiveWindow", &c.StreamReceiveWindow, &cc.StreamReceiveWindow),
		pair("MaxIncomingStreams", &c.MaxIncomingStreams, &cc.MaxIncomingStreams),
		pair("Redundancy", &c.Redundancy, &cc.Redundancy),
		logger,
		tracer,
		tlsConfig,
		psk,
	}
}

func pair[T comparable](name string, root, core *T) knob {
	var zero T
	return knob{
		name:     name,
		set:      func() bool { return *root != zero },
		toCore:   func() { *core = *root },
		fromCore: func() { *root = *core },
	}
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

func setInt(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

// Validate reports the first field of c holding a value no connection can
// work with, as a *ConfigError naming it ("Core.X" for a field of Core).
// Zero fields are valid: they mean the default.
func (c *Config) Validate() error {
	_, err := c.resolve()
	return err
}

// settings is a validated Config with every default filled in: the
// root's own knobs, and the core.Config every connection made with it
// starts from, which holds every core knob (the one copy: a value the
// root needs of it, or derives from it, is read there).
type settings struct {
	guarantee       Guarantee
	manual          bool
	linger          time.Duration // > 0; < 0: Close does not wait
	backlog         int
	maxPeers        int
	maxPeersPerHost int
	batchIO         bool // recvmmsg and sendmmsg where offered
	gso             bool // UDP GSO where offered
	resetKey        []byte
	sockets         int    // a Listener's SO_REUSEPORT sockets (0: one, not shared)
	serverID        []byte // written in the connection IDs (nil: random ones)
	// datagramFromRoute: the Config left MaxDatagramSize 0 and it follows
	// the route (core.MaxDatagramSize is then the largest, which each dial
	// lowers to its route's: see resolve).
	datagramFromRoute bool
	core              core.Config
}

// coreForHost is the core.Config of a connection dialed to host (the dial
// address's host part; "" for none): with TLS and no ServerName, a copy
// whose TLS config is a clone naming host, as tls.Dial fills ServerName
// from the address it dials (an IP literal too: crypto/tls then checks
// the certificate's IP addresses and sends no SNI). The caller's
// tls.Config is never changed.
func (s *settings) coreForHost(host string) *core.Config {
	if host == "" || s.core.TLS == nil || s.core.TLS.ServerName != "" {
		return &s.core
	}
	c := s.core
	c.TLS = s.core.TLS.Clone()
	c.TLS.ServerName = host
	return &c
}

// statelessResetKeyLen is Config.StatelessResetKey's length.
const statelessResetKeyLen = 32

// peerIdle is how long a PacketConn's peer is idle before it may be
// reclaimed: once only heartbeats kept its connection up.
func (s *settings) peerIdle() time.Duration { return s.core.HeartbeatPeriod }

// readSettleBytes is how many bytes Reads take before they settle (see
// Conn.readLocked): an eighth of the smaller initial window, the
// connection's or a stream's (they only grow), at most 64 KiB.
func (s *settings) readSettleBytes() int {
	return max(1, min(s.core.ReceiveWindow/8, s.core.StreamReceiveWindow/8, 64<<10))
}

// resolve validates c (nil means defaults) and fills in its defaults.
func (c *Config) resolve() (*settings, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	switch {
	case cfg.Guarantee != 0 && !cfg.Guarantee.Valid():
		return nil, &ConfigError{Field: "Guarantee", Value: cfg.Guarantee, Reason: "must be None, Order or Delivery"}
	case cfg.HandshakeTimeout < 0:
		return nil, &ConfigError{Field: "HandshakeTimeout", Value: cfg.HandshakeTimeout, Reason: "must not be negative"}
	case cfg.AcceptBacklog < 0 || cfg.AcceptBacklog > maxAcceptBacklog:
		return nil, &ConfigError{Field: "AcceptBacklog", Value: cfg.AcceptBacklog, Reason: fmt.Sprintf("must be between 1 and %d", maxAcceptBacklog)}
	case cfg.MaxPeers < 0:
		return nil, &ConfigError{Field: "MaxPeers", Value: cfg.MaxPeers, Reason: "must not be negative"}
	case cfg.MaxPeersPerHost < 0:
		return nil, &ConfigError{Field: "MaxPeersPerHost", Value: cfg.MaxPeersPerHost, Reason: "must not be negative"}
	case cfg.MaxPeersPerHost > cmp.Or(cfg.MaxPeers, defaultMaxPeers):
		return nil, &ConfigError{Field: "MaxPeersPerHost", Value: cfg.MaxPeersPerHost,
			Reason: fmt.Sprintf("must not exceed MaxPeers (%d)", cmp.Or(cfg.MaxPeers, defaultMaxPeers))}
	case cfg.StatelessResetKey != nil && len(cfg.StatelessResetKey) != statelessResetKeyLen:
		return nil, &ConfigError{Field: "StatelessResetKey", Value: len(cfg.StatelessResetKey), Reason: "must be 32 bytes long (nil: a random key)"}
	case cfg.Core != nil && cfg.Core.Clock != nil:
		return nil, &ConfigError{Field: "Core.Clock", Value: cfg.Core.Clock, Reason: "must be nil: connections run on the system clock"}
	}
	if err := checkSharding(&cfg); err != nil {
		return nil, err
	}
	var cc core.Config
	if cfg.Core != nil {
		cc = *cfg.Core
	}
	// The fields the root Config sets, to name a core error's field after
	// the place the value came from.
	own := map[string]bool{}
	for _, k := range coreKnobs(&cfg, &cc) {
		if k.set() {
			own[k.name] = true
			k.toCore()
		}
	}
	if err := cc.Validate(); err != nil {
		if ce, ok := err.(*ConfigError); ok && !own[ce.Field] {
			e := *ce
			if cfg.Core != nil {
				e.Field = "Core." + e.Field
			}
			return nil, &e
		}
		return nil, err
	}
	// MaxDatagramSize left 0 follows the route where the kernel tells it
	// (routeCeilings) and the socket reads without holding a buffer while
	// it waits (batch I/O): the socket's connections may grow to the
	// largest UDP payload, and each dial lowers its own to the route's
	// (mux.dial); a listener's connections take their client's, which its
	// HELLO says.
	fromRoute := routeCeilings && !cfg.DisableBatchIO && cc.MaxDatagramSize == 0
	if fromRoute {
		cc.MaxDatagramSize = core.MaxDatagramSizeLimit
	}
	cfg.fillRootDefaults()
	return &settings{
		guarantee:         cfg.Guarantee,
		manual:            cfg.Manual,
		linger:            cfg.Linger,
		backlog:           cfg.AcceptBacklog,
		maxPeers:          cfg.MaxPeers,
		maxPeersPerHost:   cmp.Or(cfg.MaxPeersPerHost, defaultHostShare(cfg.MaxPeers)),
		batchIO:           !cfg.DisableBatchIO,
		gso:               !cfg.DisableBatchIO && !cfg.DisableGSO,
		resetKey:          bytes.Clone(cfg.StatelessResetKey),
		sockets:           cfg.Sockets,
		serverID:          slices.Clone(cfg.ServerID),
		datagramFromRoute: fromRoute,
		core:              *cc.WithDefaults(),
	}, nil
}
