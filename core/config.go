package core

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Config tunes a connection. The zero value of every field means its
// default; DefaultConfig shows them. A Config is read once, when a Conn or
// Endpoint is made, and may be shared by many.
type Config struct {
	// Clock is where Endpoint reads the time (the system clock if nil).
	// Conn never reads it: its callers pass the time in.
	Clock Clock

	// Rand is the Endpoint's source of randomness (its connection ID); a
	// Conn does not use it. If nil, a source seeded from crypto/rand is
	// used. Simulations seed it.
	Rand rand.Source

	// HeartbeatPeriod is how long a connection may send nothing before it
	// sends a PING to keep the path and the peer's idle timer alive.
	HeartbeatPeriod time.Duration // default 15s (one side pings, the other answers)

	// IdleTimeout ends a connection that received nothing for this long.
	IdleTimeout time.Duration // default 30s

	// HandshakeTimeout ends a connection still not established after this long.
	HandshakeTimeout time.Duration // default 10s

	// MaxDatagramSize is the largest datagram sent (header included).
	MaxDatagramSize int // default 1400 (fits Ethernet paths with IPv6 and a tunnel header), at least MinHelloDatagram

	// MaxMessageSize is the largest message accepted by the send calls and
	// from the peer; larger messages are fragmented on the wire.
	MaxMessageSize int // default 1 MiB

	// SendBufferSize bounds the bytes queued or awaiting acknowledgement;
	// a send that does not fit fails with ErrSendBufferFull (backpressure).
	// What a connection holds is smaller in practice: Send also refuses
	// new data once two congestion windows (at least 384 KiB) of it wait
	// to be sent, so the buffer fills only as far as the path's
	// bandwidth-delay product needs (MaxReceiveWindow's default matches).
	SendBufferSize int // default 16 MiB, at least MaxMessageSize

	// ReceiveWindow is the initial flow-control window: the Delivery bytes
	// the peer may have in flight beyond what the application has read.
	// The window doubles, up to MaxReceiveWindow, whenever the application
	// reads half of it within two round trips: a fast path with a large
	// bandwidth-delay product, whose losses hold data back until they are
	// repaired, gets the window it needs, and a slow reader never grows it.
	ReceiveWindow int // default 4 MiB, at least MaxMessageSize

	// MaxReceiveWindow bounds the flow-control window's growth, and so the
	// Delivery bytes a connection holds for its application. Setting it to
	// ReceiveWindow turns auto-tuning off.
	MaxReceiveWindow int // default the larger of 16 MiB and ReceiveWindow

	// ReceiveArenaSize is the stack-like arena received messages are stored
	// in; when it is full, pooled heap buffers take over.
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
	// bottleneck rate and does not take random loss for congestion. This
	// departs from DESIGN.md's "NewReno by default" on purpose: in the
	// simulator, at 1% random loss BBR keeps 0.94-0.95 of a 10 MB/s
	// bottleneck at 2-100 ms RTT where NewReno keeps 0.86/0.43/0.16, and
	// through a 100 Mbit/s shallow-queue proxy at 100 ms RTT it keeps 80%
	// of its 2 ms goodput where NewReno keeps 48%. The price is BBR v1's:
	// sharing a bottleneck with a loss-based flow (TCP), it takes most of
	// it. Set NewNewReno for a connection that must yield to TCP.
	NewCongestionController func(maxDatagramSize int) CongestionController

	// DisablePacing sends bursts up to the congestion window at once.
	DisablePacing bool

	// Logger receives debug events; nil is silent.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() *Config {
	c := &Config{}
	c.fillDefaults()
	return c
}

func (c *Config) fillDefaults() {
	setDuration(&c.HeartbeatPeriod, 15*time.Second)
	setDuration(&c.IdleTimeout, 30*time.Second)
	setDuration(&c.HandshakeTimeout, 10*time.Second)
	setInt(&c.MaxDatagramSize, 1400)
	setInt(&c.MaxMessageSize, 1<<20)
	setInt(&c.SendBufferSize, 16<<20)
	setInt(&c.ReceiveWindow, 4<<20)
	setInt(&c.MaxReceiveWindow, max(16<<20, c.ReceiveWindow))
	setInt(&c.ReceiveArenaSize, 4<<10)
	setDuration(&c.ReassemblyTimeout, 3*time.Second)
	setDuration(&c.MaxAckDelay, time.Millisecond)
	setDuration(&c.InitialRTT, 100*time.Millisecond)
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
// while it runs. Clock and Rand belong to the Endpoint, and the logger and
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
	ReceiveArenaSize  int
	InitialSequence   uint32
	DisablePacing     bool
}

func (c *Config) connConfig() connConfig {
	return connConfig{
		HeartbeatPeriod:   c.HeartbeatPeriod,
		IdleTimeout:       c.IdleTimeout,
		HandshakeTimeout:  c.HandshakeTimeout,
		ReassemblyTimeout: c.ReassemblyTimeout,
		MaxAckDelay:       c.MaxAckDelay,
		InitialRTT:        c.InitialRTT,
		MaxDatagramSize:   c.MaxDatagramSize,
		MaxMessageSize:    c.MaxMessageSize,
		SendBufferSize:    c.SendBufferSize,
		ReceiveWindow:     c.ReceiveWindow,
		MaxReceiveWindow:  c.MaxReceiveWindow,
		ReceiveArenaSize:  c.ReceiveArenaSize,
		InitialSequence:   c.InitialSequence,
		DisablePacing:     c.DisablePacing,
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
// can work with, naming it. Zero fields are valid (they mean the default).
func (c *Config) Validate() error {
	d := *c
	d.fillDefaults()
	switch {
	case d.HeartbeatPeriod < 0:
		return fieldError("HeartbeatPeriod", d.HeartbeatPeriod, "must not be negative")
	case d.IdleTimeout < 0:
		return fieldError("IdleTimeout", d.IdleTimeout, "must not be negative")
	case d.HeartbeatPeriod >= d.IdleTimeout:
		return fieldError("HeartbeatPeriod", d.HeartbeatPeriod, fmt.Sprintf("must be shorter than IdleTimeout (%v)", d.IdleTimeout))
	case d.HandshakeTimeout < 0:
		return fieldError("HandshakeTimeout", d.HandshakeTimeout, "must not be negative")
	case d.MaxDatagramSize < MinHelloDatagram || d.MaxDatagramSize > 65507:
		return fieldError("MaxDatagramSize", d.MaxDatagramSize, fmt.Sprintf("must be between %d and 65507", MinHelloDatagram))
	case d.MaxMessageSize < 1 || d.MaxMessageSize > 1<<30:
		return fieldError("MaxMessageSize", d.MaxMessageSize, "must be between 1 and 1 GiB")
	case d.SendBufferSize < d.MaxMessageSize:
		return fieldError("SendBufferSize", d.SendBufferSize, fmt.Sprintf("must be at least MaxMessageSize (%d)", d.MaxMessageSize))
	case d.ReceiveWindow < d.MaxMessageSize+msgCreditOverhead:
		return fieldError("ReceiveWindow", d.ReceiveWindow, fmt.Sprintf("must be at least MaxMessageSize+%d (%d)", msgCreditOverhead, d.MaxMessageSize+msgCreditOverhead))
	case d.ReceiveWindow > 1<<30:
		return fieldError("ReceiveWindow", d.ReceiveWindow, "must be at most 1 GiB")
	case d.MaxReceiveWindow < d.ReceiveWindow:
		return fieldError("MaxReceiveWindow", d.MaxReceiveWindow, fmt.Sprintf("must be at least ReceiveWindow (%d)", d.ReceiveWindow))
	case d.MaxReceiveWindow > 1<<30:
		return fieldError("MaxReceiveWindow", d.MaxReceiveWindow, "must be at most 1 GiB")
	case d.ReceiveArenaSize < 0:
		return fieldError("ReceiveArenaSize", d.ReceiveArenaSize, "must not be negative")
	case d.ReassemblyTimeout < 0:
		return fieldError("ReassemblyTimeout", d.ReassemblyTimeout, "must not be negative")
	case d.MaxAckDelay < 0 || d.MaxAckDelay > time.Second:
		return fieldError("MaxAckDelay", d.MaxAckDelay, "must be between 0 and 1s")
	case d.InitialRTT < 0 || d.InitialRTT > time.Minute:
		return fieldError("InitialRTT", d.InitialRTT, "must be between 0 and 1m")
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
	return fmt.Sprintf("rudp: invalid Config.%s (%v): %s", e.Field, e.Value, e.Reason)
}

func fieldError(field string, v any, reason string) error {
	return &ConfigError{Field: field, Value: v, Reason: reason}
}
