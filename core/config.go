package core

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"
)

// Config tunes a connection. The zero value of every field means its
// default; DefaultConfig shows them. A Config is read once, when a Conn or
// Session is made, and may be shared by many.
type Config struct {
	// Clock is where Session reads the time (the system clock if nil).
	// Conn never reads it: its callers pass the time in.
	Clock Clock

	// Rand is the Session's source of randomness (its connection ID). NewConn
	// draws one number from it, the seed of the connection's path
	// challenges (an Endpoint reseeds those from its own Rand). If nil, the
	// Session uses a source seeded from crypto/rand; a Conn made by NewConn
	// alone then has predictable challenges, so a caller that follows
	// address changes (HandleDatagramFrom) without an Endpoint must set it.
	// Simulations seed it.
	Rand rand.Source

	// HeartbeatPeriod is how long a connection may send nothing before it
	// sends a PING to keep the path and the peer's idle timer alive. It
	// must be shorter than IdleTimeout.
	HeartbeatPeriod time.Duration // default 15s, or half of IdleTimeout if that is set below 30s (one side pings, the other answers)

	// IdleTimeout ends a connection that received nothing for this long.
	IdleTimeout time.Duration // default 30s, or twice HeartbeatPeriod if that is set above 15s; at least 1ms

	// HandshakeTimeout ends a connection still not established after this long.
	HandshakeTimeout time.Duration // default 10s

	// MaxDatagramSize is the largest datagram sent (UDP payload, rudp's
	// header included), from MinHelloDatagram (1200, what every IPv6 path
	// carries and the handshake needs) to MaxDatagramSizeLimit (65507, the
	// largest UDP payload over IPv4). It is the ceiling of path MTU
	// discovery (pmtu.go): datagrams start at BaseDatagramSize (1200) and
	// grow by probing to what the path carries, at most this (and at most
	// the peer's), so a path with a smaller MTU (1472 bytes over 1500-byte
	// Ethernet with IPv4, 1452 with IPv6, less under a tunnel) need not
	// carry it. Probes larger than the path carries cost a few datagrams
	// per search (a search runs after the handshake and again every ten
	// minutes while below the ceiling).
	//
	// The root package's Config leaves it to the route where the kernel
	// tells it (rudp.Config.MaxDatagramSize); a connection an Endpoint
	// accepts takes the smaller of it and its client's HELLO, so that its
	// congestion controller, which counts in datagrams of this ceiling,
	// starts with a window for the size the path will carry.
	//
	// The default, 1452, is what a 1500-byte Ethernet path carries with
	// IPv6 (1500 - 40 - 8). It was 1400, a margin for tunnels, before path
	// MTU discovery made the margin unneeded. On loopback, bulk goodput and
	// CPU per GiB were the same at 1400 and 1452 (rudpbench bulk, 256 MiB,
	// 5 interleaved runs: CPU 1.53 and 1.54 s/GiB), while jumbo ceilings
	// cut the CPU per GiB by 40-50% (8972: 0.89, 65507: 0.73 s/GiB).
	MaxDatagramSize int // default 1452

	// MaxMessageSize is the largest message accepted by the send calls and
	// from the peer; larger messages are fragmented on the wire. At most
	// MaxMessageSizeLimit (what a message is charged, its length, 256 bytes
	// and a 64th of it, must fit 1 GiB of window).
	MaxMessageSize int // default 1 MiB, or less to fit a smaller SendBufferSize, ReceiveWindow, MaxReceiveWindow or StreamReceiveWindow set

	// SendBufferSize bounds the bytes queued or awaiting acknowledgement;
	// a send that does not fit fails with ErrSendBufferFull (backpressure).
	// What a connection holds is smaller in practice: Send also refuses
	// new data once two congestion windows (at least 384 KiB) of it wait
	// to be sent, so the buffer fills only as far as the path's
	// bandwidth-delay product needs (MaxReceiveWindow's default matches).
	SendBufferSize int // default 16 MiB, or MaxMessageSize if larger; at least MaxMessageSize

	// ReceiveWindow is the initial flow-control window: the Delivery bytes
	// the peer may have in flight beyond what the application has read.
	// The window doubles, up to MaxReceiveWindow, whenever the application
	// reads half of it within two round trips: a fast path with a large
	// bandwidth-delay product, whose losses hold data back until they are
	// repaired, gets the window it needs, and a slow reader never grows it.
	ReceiveWindow int // default 4 MiB, what a message of MaxMessageSize is charged (MaxMessageSize+256+MaxMessageSize/64) if larger, MaxReceiveWindow if smaller; at least that charge, at most 1 GiB

	// MaxReceiveWindow bounds the flow-control window's growth, and so the
	// Delivery bytes a connection holds for its application. Setting it to
	// ReceiveWindow turns auto-tuning off.
	MaxReceiveWindow int // default the larger of 16 MiB and ReceiveWindow; at most 1 GiB

	// StreamReceiveWindow is each stream's own flow-control window (every
	// stream but 0, which has only the connection's): the Delivery bytes
	// the peer may have in flight on one stream beyond what the
	// application has read of it, so that a stream nobody reads stops
	// only its own sender while the others keep the rest of the
	// connection's window. It doubles, as the connection's does, when the
	// application reads half of it within two round trips, up to half of
	// MaxReceiveWindow (never below what was set), the connection's window
	// growing with it to at least twice it: a single stream over a path
	// whose bandwidth-delay product nears MaxReceiveWindow/2 wants a larger
	// MaxReceiveWindow than stream 0 would. The peer learns it with the
	// handshake (docs/PROTOCOL.md §17.6).
	StreamReceiveWindow int // default 2 MiB, or what a message of MaxMessageSize is charged if larger; at least that charge, at most 1 GiB

	// ReceiveArenaSize is the stack-like arena received messages are stored
	// in; when it is full, pooled heap buffers take over. Its block starts
	// at 256 bytes and doubles up to this size when a message finds it
	// empty and too small, so that small messages read as they come cost
	// no more.
	ReceiveArenaSize int // default 4 KiB (a few datagrams: in-order reads reuse it; bursts use pooled buffers)

	// ReassemblyTimeout drops an incomplete None/Order message (and frees
	// its memory) this long after its first fragment arrived.
	ReassemblyTimeout time.Duration // default 3s

	// MaxAckDelay is the longest a received packet waits before it is
	// acknowledged; the peer adds it to its retransmission timeout.
	MaxAckDelay time.Duration // default 1ms

	// InitialRTT is the round-trip time assumed before the first sample.
	InitialRTT time.Duration // default 100ms

	// InitialSequence is the first packet number, message sequence and
	// delivery index this side sends. They wrap around at 2^32; tests start
	// them just before the wrap.
	InitialSequence uint32

	// NewCongestionController makes the connection's congestion controller.
	// nil means NewBBR: a model-based controller that paces at the measured
	// bottleneck rate and does not take random loss for congestion
	// (docs/PROTOCOL.md §12.1). It is the default rather than NewReno, the
	// loss-based controller of RFC 9002 §7, on purpose: in the
	// simulator, at 1% random loss BBR keeps 0.94-0.95 of a 10 MB/s
	// bottleneck at 2-100 ms RTT where NewReno keeps 0.86/0.43/0.16, and
	// through a 100 Mbit/s shallow-queue proxy at 100 ms RTT it keeps 80%
	// of its 2 ms goodput where NewReno keeps 48%. The price is BBR v1's:
	// sharing a bottleneck with a loss-based flow (TCP), it takes most of
	// it. Set NewNewReno for a connection that must yield to TCP.
	NewCongestionController func(maxDatagramSize int) CongestionController

	// DisablePacing sends bursts up to the congestion window at once.
	DisablePacing bool

	// Redundancy sends stream 0's small messages twice from the start (see
	// Conn.SetStreamRedundancy, which turns it on or off later, for any
	// stream): each of at most MaxRedundantMessage bytes goes again a
	// fraction of an RTT later, so that a lost packet costs it no round
	// trip. The peer needs no setting to receive them.
	Redundancy bool

	// MaxIncomingStreams is how many streams the peer may have open at
	// once (stream 0, the connection itself, is never counted): a peer
	// opening more on the wire breaks the protocol and the connection
	// ends. A stream's place is given back once both its directions have
	// ended. -1 lets the peer open none.
	MaxIncomingStreams int // default 100; at most 65535

	// Logger receives debug events; nil is silent.
	Logger *slog.Logger

	// Tracer, if set, is called once per connection, when it is made, for
	// the Tracer that receives its events (see Tracer; the qlog package
	// makes one writing a qlog file). It may return nil to leave that
	// connection untraced. Unset, tracing costs a nil check per event
	// (BenchmarkDeliveryTraced).
	Tracer func(TraceInfo) *Tracer

	// TLS, if set, protects the connection with TLS 1.3 (crypto/tls's
	// QUIC API): certificates, ServerName, RootCAs, ClientAuth, NextProtos
	// as with crypto/tls; a zero MinVersion works (rudp always speaks
	// TLS 1.3), a MaxVersion below it is invalid. The Config is cloned per
	// connection, its Time and Rand replaced by the connection's. A
	// connection configured for protection refuses a peer that is not
	// (and a plaintext one refuses a protected peer): no downgrade.
	// Not on a Session (it has no client and server roles).
	//
	// Randomness: crypto/tls (Go 1.26) takes from the connection's Rand
	// only the hello randoms and the client's ML-KEM seed. The X25519 key
	// shares (crypto/ecdh ignores the reader it is given since Go 1.26),
	// the certificate's signature (crypto/ecdsa, crypto/rsa likewise) and
	// the server's ML-KEM encapsulation draw from the process's own
	// cryptographic randomness, so a TLS handshake in a simulation is
	// reproducible from its seed only if a test also seeds that
	// (testing/cryptotest.SetGlobalRandom: the whole process, so not in
	// parallel tests); the core changes no global state. A PSK handshake
	// draws everything from Rand and is reproducible as it is
	// (TestSimSecureReproducible).
	TLS *tls.Config

	// PSK, if set, protects the connection with a pre-shared key of exactly
	// 32 bytes (Noise NNpsk0: mutual authentication without certificates,
	// forward secrecy from an ephemeral X25519 exchange). Both sides must
	// hold the same key. Not with TLS; not on a Session.
	PSK []byte
}

// pskLen is the length of Config.PSK.
const pskLen = 32

// Protection returns the mode the Config asks for.
func (c *Config) Protection() Protection {
	switch {
	case c == nil:
		return Plaintext
	case c.TLS != nil:
		return ProtectionTLS
	case c.PSK != nil:
		return ProtectionPSK
	}
	return Plaintext
}

// Defaults and limits. A default that depends on another field follows
// that field's setting (see fillDefaults).
const (
	defaultHeartbeatPeriod  = 15 * time.Second
	defaultIdleTimeout      = 30 * time.Second
	minIdleTimeout          = time.Millisecond
	defaultMaxMessageSize   = 1 << 20
	defaultSendBufferSize   = 16 << 20
	defaultReceiveWindow    = 4 << 20
	defaultMaxReceiveWindow = 16 << 20
	maxWindow               = 1 << 30

	// defaultStreamReceiveWindow is StreamReceiveWindow's default, and
	// the window each side assumes of its peer's streams until told
	// otherwise (docs/PROTOCOL.md §17.6): a side whose window is the
	// default sends nothing to say so.
	defaultStreamReceiveWindow = 2 << 20

	// DefaultMaxDatagramSize is MaxDatagramSize's default: what a
	// 1500-byte Ethernet path carries with IPv6 (1500 - 40 - 8).
	DefaultMaxDatagramSize = 1452

	// MaxDatagramSizeLimit is the largest MaxDatagramSize: the largest
	// UDP payload over IPv4 (65535 less 20 bytes of IP and 8 of UDP
	// header), so that one Config serves both address families.
	MaxDatagramSizeLimit = 65507

	// MaxMessageSizeLimit is the largest MaxMessageSize: what a message is
	// charged (msgCredit) must fit the largest window.
	MaxMessageSizeLimit = (maxWindow-msgCreditOverhead)*64/65 + 1 // 1057222467

	// defaultMaxIncomingStreams is MaxIncomingStreams' default, and the
	// limit each side assumes of its peer until told otherwise
	// (docs/PROTOCOL.md §17.3): a side whose limit is the default sends
	// nothing to say so.
	defaultMaxIncomingStreams = 100
	maxIncomingStreamsLimit   = 1<<16 - 1
)

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() *Config { return (*Config)(nil).WithDefaults() }

// WithDefaults returns a copy of c (nil: the zero Config) with every zero
// field set to its default. A default that depends on another field
// follows what c sets there, rather than making c invalid: HeartbeatPeriod
// defaults to half an IdleTimeout set below 30s, IdleTimeout to twice a
// HeartbeatPeriod set above 15s, the buffers and windows grow to hold a
// MaxMessageSize set above 1 MiB, and MaxMessageSize shrinks to fit a
// SendBufferSize, ReceiveWindow, MaxReceiveWindow or StreamReceiveWindow
// set below it.
func (c *Config) WithDefaults() *Config {
	d := &Config{}
	if c != nil {
		*d = *c
	}
	d.fillDefaults()
	return d
}

// maxMessageFor is the largest message whose charge (msgCredit) fits a
// window of w bytes.
func maxMessageFor(w int) int {
	n := max(0, (w-msgCreditOverhead)*64/65)
	for msgCredit(n+1) <= w {
		n++
	}
	return n
}

func (c *Config) fillDefaults() {
	switch {
	case c.HeartbeatPeriod == 0 && c.IdleTimeout == 0:
		c.HeartbeatPeriod, c.IdleTimeout = defaultHeartbeatPeriod, defaultIdleTimeout
	case c.HeartbeatPeriod == 0:
		c.HeartbeatPeriod = min(defaultHeartbeatPeriod, c.IdleTimeout/2)
	case c.IdleTimeout == 0:
		c.IdleTimeout = max(defaultIdleTimeout, 2*c.HeartbeatPeriod)
	}
	setDuration(&c.HandshakeTimeout, 10*time.Second)
	setInt(&c.MaxDatagramSize, DefaultMaxDatagramSize)
	if c.MaxMessageSize == 0 {
		m := defaultMaxMessageSize
		if c.SendBufferSize > 0 {
			m = min(m, c.SendBufferSize)
		}
		for _, w := range []int{c.ReceiveWindow, c.MaxReceiveWindow, c.StreamReceiveWindow} {
			if w > 0 {
				m = min(m, maxMessageFor(w))
			}
		}
		c.MaxMessageSize = max(m, 1)
	}
	setInt(&c.SendBufferSize, max(defaultSendBufferSize, c.MaxMessageSize))
	if c.ReceiveWindow == 0 {
		w := max(defaultReceiveWindow, msgCredit(c.MaxMessageSize))
		if c.MaxReceiveWindow > 0 {
			w = min(w, c.MaxReceiveWindow)
		}
		c.ReceiveWindow = w
	}
	setInt(&c.MaxReceiveWindow, max(defaultMaxReceiveWindow, c.ReceiveWindow))
	setInt(&c.StreamReceiveWindow, max(defaultStreamReceiveWindow, msgCredit(c.MaxMessageSize)))
	setInt(&c.ReceiveArenaSize, 4<<10)
	setDuration(&c.ReassemblyTimeout, 3*time.Second)
	setDuration(&c.MaxAckDelay, time.Millisecond)
	setDuration(&c.InitialRTT, 100*time.Millisecond)
	setInt(&c.MaxIncomingStreams, defaultMaxIncomingStreams)
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
	if c.NewCongestionController == nil {
		c.NewCongestionController = NewBBR
	}
	if c.Logger == nil {
		c.Logger = discardLogger
	}
}

// discardLogger is the default Logger, shared: one per connection would be
// an allocation each.
var discardLogger = slog.New(slog.DiscardHandler)

// connConfig is what a Conn keeps of its Config: the settings it consults
// while it runs. Clock and Rand belong to the Session, and the logger and
// the congestion controller's constructor are used once, at NewConn; not
// copying them keeps an idle connection in a smaller allocation class.
type connConfig struct {
	HeartbeatPeriod   time.Duration
	IdleTimeout       time.Duration
	HandshakeTimeout  time.Duration
	ReassemblyTimeout time.Duration
	MaxAckDelay       time.Duration
	InitialRTT        time.Duration
	MaxDatagramSize   int
	MaxMessageSize    int
	SendBufferSize    int
	ReceiveWindow     int
	MaxReceiveWindow  int
	// StreamReceiveWindow takes the place ReceiveArenaSize had: the arena's
	// size is used once, at NewConn (initReceiver), so a Conn need not
	// keep it, and core.Conn stays in its size class.
	StreamReceiveWindow int
	InitialSequence     uint32
	DisablePacing       bool
	// MaxIncomingStreams (0..65535; -1 became 0): two bytes, which fit
	// the padding after DisablePacing.
	MaxIncomingStreams uint16
}

func (c *Config) connConfig() connConfig {
	return connConfig{
		HeartbeatPeriod:     c.HeartbeatPeriod,
		IdleTimeout:         c.IdleTimeout,
		HandshakeTimeout:    c.HandshakeTimeout,
		ReassemblyTimeout:   c.ReassemblyTimeout,
		MaxAckDelay:         c.MaxAckDelay,
		InitialRTT:          c.InitialRTT,
		MaxDatagramSize:     c.MaxDatagramSize,
		MaxMessageSize:      c.MaxMessageSize,
		SendBufferSize:      c.SendBufferSize,
		ReceiveWindow:       c.ReceiveWindow,
		MaxReceiveWindow:    c.MaxReceiveWindow,
		StreamReceiveWindow: c.StreamReceiveWindow,
		InitialSequence:     c.InitialSequence,
		DisablePacing:       c.DisablePacing,
		// (Validate keeps it in -1..65535.)
		MaxIncomingStreams: uint16(max(c.MaxIncomingStreams, 0)),
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

// Validate reports the first field of c that holds a value no connection
// can work with, as a *ConfigError naming a field c sets (never one left
// to its default: defaults follow the fields set, see WithDefaults) and
// saying what would be valid. Zero fields are valid (they mean the
// default).
func (c *Config) Validate() error {
	// Each field on its own, as set.
	switch {
	case c.HeartbeatPeriod < 0:
		return fieldError("HeartbeatPeriod", c.HeartbeatPeriod, "must not be negative")
	case c.IdleTimeout < 0 || c.IdleTimeout > 0 && c.IdleTimeout < minIdleTimeout:
		return fieldError("IdleTimeout", c.IdleTimeout, fmt.Sprintf("must be at least %v", minIdleTimeout))
	case c.HandshakeTimeout < 0:
		return fieldError("HandshakeTimeout", c.HandshakeTimeout, "must not be negative")
	case c.MaxDatagramSize != 0 && (c.MaxDatagramSize < MinHelloDatagram || c.MaxDatagramSize > MaxDatagramSizeLimit):
		return fieldError("MaxDatagramSize", c.MaxDatagramSize, fmt.Sprintf(
			"must be between %d (what the handshake needs and every IPv6 path carries) and %d (the largest UDP payload over IPv4)",
			MinHelloDatagram, MaxDatagramSizeLimit))
	case c.MaxMessageSize < 0 || c.MaxMessageSize > MaxMessageSizeLimit:
		return fieldError("MaxMessageSize", c.MaxMessageSize, fmt.Sprintf(
			"must be between 1 and %d (what a message is charged, itself, %d bytes and a 64th of it, must fit 1 GiB of window)", MaxMessageSizeLimit, msgCreditOverhead))
	case c.SendBufferSize < 0:
		return fieldError("SendBufferSize", c.SendBufferSize, "must not be negative")
	case c.ReceiveWindow < 0 || c.ReceiveWindow > maxWindow:
		return fieldError("ReceiveWindow", c.ReceiveWindow, fmt.Sprintf("must be between %d and 1 GiB", 1+msgCreditOverhead))
	case c.MaxReceiveWindow < 0 || c.MaxReceiveWindow > maxWindow:
		return fieldError("MaxReceiveWindow", c.MaxReceiveWindow, fmt.Sprintf("must be between %d and 1 GiB", 1+msgCreditOverhead))
	case c.StreamReceiveWindow < 0 || c.StreamReceiveWindow > maxWindow:
		return fieldError("StreamReceiveWindow", c.StreamReceiveWindow, fmt.Sprintf("must be between %d and 1 GiB", 1+msgCreditOverhead))
	case c.ReceiveArenaSize < 0:
		return fieldError("ReceiveArenaSize", c.ReceiveArenaSize, "must not be negative")
	case c.ReassemblyTimeout < 0:
		return fieldError("ReassemblyTimeout", c.ReassemblyTimeout, "must not be negative")
	case c.MaxAckDelay < 0 || c.MaxAckDelay > time.Second:
		return fieldError("MaxAckDelay", c.MaxAckDelay, "must be between 0 and 1s")
	case c.InitialRTT < 0 || c.InitialRTT > time.Minute:
		return fieldError("InitialRTT", c.InitialRTT, "must be between 0 and 1m")
	case c.MaxIncomingStreams < -1 || c.MaxIncomingStreams > maxIncomingStreamsLimit:
		return fieldError("MaxIncomingStreams", c.MaxIncomingStreams, fmt.Sprintf("must be between -1 (none) and %d", maxIncomingStreamsLimit))
	case c.PSK != nil && len(c.PSK) != pskLen:
		// (The key's length, never its bytes.)
		return fieldError("PSK", fmt.Sprintf("%d bytes", len(c.PSK)), fmt.Sprintf("must be exactly %d bytes", pskLen))
	case c.TLS != nil && c.PSK != nil:
		return fieldError("PSK", fmt.Sprintf("%d bytes", len(c.PSK)), "must not be set with TLS: one or the other protects a connection")
	case c.TLS != nil && c.TLS.MaxVersion != 0 && c.TLS.MaxVersion < tls.VersionTLS13:
		return fieldError("TLS.MaxVersion", c.TLS.MaxVersion, "must allow TLS 1.3 (0 does): rudp speaks TLS 1.3 only")
	}
	// The fields against each other, with the defaults filled in: these
	// fail only where c sets both sides (a default follows the other
	// side), so the field named is one c sets.
	d := c.WithDefaults()
	switch need := msgCredit(d.MaxMessageSize); {
	case d.HeartbeatPeriod >= d.IdleTimeout:
		return fieldError("HeartbeatPeriod", d.HeartbeatPeriod, fmt.Sprintf("must be shorter than IdleTimeout (%v)", d.IdleTimeout))
	case d.SendBufferSize < d.MaxMessageSize:
		return fieldError("SendBufferSize", d.SendBufferSize, fmt.Sprintf("must be at least MaxMessageSize (%d)", d.MaxMessageSize))
	case d.ReceiveWindow < need:
		// (Unset, the window would have followed MaxMessageSize up to
		// MaxReceiveWindow: then that is what is too small.)
		field, v := "ReceiveWindow", d.ReceiveWindow
		if c.ReceiveWindow == 0 {
			field, v = "MaxReceiveWindow", d.MaxReceiveWindow
		}
		return fieldError(field, v, fmt.Sprintf("must be at least MaxMessageSize+%d+MaxMessageSize/64 (%d): room for one whole message", msgCreditOverhead, need))
	case d.StreamReceiveWindow < need:
		return fieldError("StreamReceiveWindow", d.StreamReceiveWindow, fmt.Sprintf("must be at least MaxMessageSize+%d+MaxMessageSize/64 (%d): room for one whole message", msgCreditOverhead, need))
	case d.MaxReceiveWindow < d.ReceiveWindow:
		return fieldError("MaxReceiveWindow", d.MaxReceiveWindow, fmt.Sprintf("must be at least ReceiveWindow (%d)", d.ReceiveWindow))
	}
	return nil
}

// ConfigError names a Config field holding a bad value.
type ConfigError struct {
	Field  string
	Value  any
	Reason string
}

func (e *ConfigError) Error() string {
	if strings.HasPrefix(e.Field, endpointConfigPrefix) || !strings.ContainsRune(e.Field, '.') && e.Field != "" && e.Field[0] >= 'a' {
		// An EndpointConfig's field, or an argument (localCID, to).
		return fmt.Sprintf("rudp: invalid %s (%v): %s", e.Field, e.Value, e.Reason)
	}
	return fmt.Sprintf("rudp: invalid Config.%s (%v): %s", e.Field, e.Value, e.Reason)
}

func fieldError(field string, v any, reason string) error {
	return &ConfigError{Field: field, Value: v, Reason: reason}
}
