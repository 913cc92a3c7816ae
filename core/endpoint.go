package core

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"
)

// Endpoint is one socket's worth of protocol, sans I/O (after quinn-proto's
// Endpoint): it decides what every datagram arriving on a socket means and
// owns the connections on it. It routes a datagram to its connection by
// destination connection ID; answers a HELLO of a new attempt statelessly
// (a Retry carrying a cookie, or a refusal once the accept budget is
// spent) and creates the server connection once the HELLO echoes a valid
// cookie; answers a data packet for a connection it does not know with a
// stateless reset; and queues the small datagrams it sends itself.
// docs/PROTOCOL.md §8.1 ("The listener's stateless part") is the
// description a second implementation follows.
//
// Every input carries the time and the peer's address; the Endpoint never
// reads a clock, touches a socket or draws randomness but from
// EndpointConfig.Rand. Its caller moves datagrams:
//
//	ev := ep.HandleDatagram(now, from, b)   // route one received datagram
//	if ev.Conn != nil {
//		ep.Deliver(now, ev.Conn, from, b) // hand it to its connection
//	}
//	for { n, to, ok := ep.PollTransmit(now, buf); if !ok { break }; send(buf[:n], to) }
//	for each connection c with work: n, to := ep.PollConn(now, c, buf) ... until n == 0
//	c.NextTimeout / c.HandleTimeout as for any Conn, then ep.Update(c)
//
// The Endpoint keeps no clock of its own and no timer: its state ages only
// as calls pass it later times (a cookie's time bucket, the reset budget).
//
// An Endpoint is not safe for concurrent use, and it reads the state of
// its connections (RemoteCID, Closed) only in the calls that name one
// (Deliver, PollConn, Update, Remove): a caller holding one lock per Conn
// holds that connection's lock for them.
type Endpoint struct {
	cfg  endpointConfig
	rng  rand.Source
	mode endpointMode

	conns    map[uint64]*route      // by local connection ID
	remotes  map[uint64]*route      // by the peer's connection ID, once known: where a stateless reset goes
	attempts map[attemptKey]attempt // attempts accepted whose cookie may still be valid (replay protection)
	// attemptsBucket is the time bucket attempts was last pruned in.
	attemptsBucket uint64

	pending     []*Conn              // created by the handshake, not yet taken by Accept
	pendingHost map[netip.Addr]int   // pending connections by host
	resets      TokenBucket          // stateless resets sent
	out         []ownDatagram        // the Endpoint's own datagrams waiting for PollTransmit (a ring)
	outHead     int                  // index of the oldest in out
	outLen      int                  // how many are queued
	mac         hash.Hash            // the cookie HMAC, reset for each use
	macIn       [16 + 2 + 8 + 8]byte // its input
	macSum      [sha256.Size]byte    // its output (and resetMac's)
	resetMac    hash.Hash            // the stateless reset tokens' HMAC (ResetToken)
	stats       EndpointStats
	// now is the time of the last HandleDatagram, for the logs of calls
	// that take none (Reject).
	now   time.Time
	drops dropLog // the drop events' rate limit (log.go)
}

// endpointMode is what an Endpoint does with a HELLO of a new attempt.
type endpointMode uint8

const (
	modeIgnore endpointMode = iota // a socket that only dials: drop it
	modeListen                     // stateless handshake, then a new connection
	modeRefuse                     // a closed listener: refuse it
)

// route is what the Endpoint knows of one of its connections.
type route struct {
	conn *Conn
	// addr is the address the connection started with (dialed, or the
	// HELLO's source); where it moved since is the Conn's (PeerAddr).
	addr netip.AddrPort
	// remoteCID is the peer's connection ID once indexed in remotes.
	remoteCID uint64
	// attempt is the client's attempt that created a server connection
	// (zero for a connection this side dialed).
	attempt attemptKey
	// host is the host counted in pendingHost while the connection waits
	// for Accept; pending says it does.
	host    netip.Addr
	pending bool
}

// attemptKey names a client's connection attempt: the connection ID its
// HELLO carries and the address it came from.
type attemptKey struct {
	cid  uint64
	addr netip.AddrPort
}

// attempt is an accepted attempt: its connection (nil once that ended) and
// the time bucket of the cookie that admitted it.
type attempt struct {
	conn   *Conn
	bucket uint64
}

// ownDatagram is one of the Endpoint's own datagrams (a Retry, a refusal,
// a stateless reset), held in a fixed slot: queueing one never allocates.
type ownDatagram struct {
	to netip.AddrPort
	n  uint8
	b  [ownDatagramMax]byte
}

// CookieLen is the length of the cookie an Endpoint hands out in a Retry
// (the first bytes of an HMAC-SHA256; docs/PROTOCOL.md §8.1).
const CookieLen = 16

// ownDatagramMax is the largest datagram an Endpoint sends itself: the
// refusal of a HELLO in another protection mode, naming ours (a Retry with
// its cookie is 35 bytes, a refusal 20, a reset ResetLen or TokenResetLen).
const ownDatagramMax = max(headerLen+1+CookieLen+trailerLen, refuseModeLen, TokenResetLen)

// EndpointConfig configures an Endpoint. The zero value of every field
// means its default. It is read once, by NewEndpoint.
type EndpointConfig struct {
	// Conn is the configuration of every connection the Endpoint creates
	// for a client, and of Connect's when it is given none. nil means the
	// defaults.
	Conn *Config

	// Listen makes the Endpoint accept connections: a HELLO of a new
	// attempt gets the stateless handshake. Without it (a socket that only
	// dials) such a HELLO is dropped.
	Listen bool

	// AcceptBudget bounds the connections the handshake created that Accept
	// has not taken yet; the HELLO of a new attempt beyond it is refused.
	AcceptBudget int // default 1024, at most 1<<20

	// HostShare bounds, once half the accept budget waits, the connections
	// one host (an IPv4 address, an IPv6 /64) may have waiting for Accept;
	// more from that host are refused, so that one host cannot take a
	// listener's whole budget.
	HostShare int // default max(8, AcceptBudget/16), at most AcceptBudget

	// UnacceptedReceiveWindow caps the receive window of a connection the
	// handshake created while it waits for Accept (Conn.SetReceiveLimit,
	// applied before its HELLO carries its first credit): its peer may send
	// that much Delivery data before the application takes it (more waits),
	// and None/Order messages may hold a quarter of it. So a flood of
	// handshakes followed by data holds at most twice this per connection
	// (Conn's held-memory bound), AcceptBudget times, whatever the peers
	// send. Accept and Take lift it. Negative: no cap (each waiting
	// connection may then hold its whole Config.MaxReceiveWindow).
	UnacceptedReceiveWindow int // default 16 KiB (DefaultUnacceptedReceiveWindow)

	// CookieKey is the key of the cookie's HMAC: 32 bytes, secret, the same
	// for as long as cookies it made must stay valid. nil: 32 bytes drawn
	// from Rand.
	CookieKey []byte

	// ResetKey is the key from which the Endpoint derives the stateless
	// reset token of each of its connection IDs (ResetToken): 32 bytes,
	// secret. A protected connection's peer accepts a reset only if it
	// carries the token the handshake told it (docs/PROTOCOL.md §14.3), so
	// a process that restarts and should end its old connections at once
	// must get the same key again (from a file, a secret store). nil: the
	// key is derived from the cookie key (HMAC-SHA256(cookie key,
	// "rudp stateless reset key")), so an Endpoint given a CookieKey has a
	// stable reset key too, and one with a random cookie key a random one.
	ResetKey []byte

	// CookieBucket is the cookie's time bucket: a cookie is valid in the
	// bucket it was made in and the next, so between one and two buckets.
	CookieBucket time.Duration // default 30s, at least 1s

	// Rand is the Endpoint's source of randomness: connection IDs, and the
	// cookie key if CookieKey is nil. Required (the core reads no global
	// randomness): a source seeded from crypto/rand, such as rand.ChaCha8,
	// since connection IDs must be unpredictable (docs/PROTOCOL.md §14.1);
	// simulations seed it.
	Rand rand.Source

	// ServerID, if set (1 to MaxServerIDLen bytes), is written in every
	// connection ID the Endpoint chooses (RoutableConnectionID), so that a
	// load balancer routes by it (docs/PROTOCOL.md §1.1); the Endpoint then
	// answers with a stateless reset only a packet whose DstCID carries it:
	// one carrying another server's ID was misrouted, and a reset would end
	// that server's connection (DroppedMisrouted). nil: random IDs.
	ServerID []byte

	// ResetRate and ResetBurst bound the stateless resets the Endpoint
	// sends (a token bucket): an unauthenticated sender can make it send
	// at most this many small datagrams a second.
	ResetRate  float64 // default 1000 a second
	ResetBurst int     // default 100

	// MaxQueued bounds the Endpoint's own datagrams waiting for
	// PollTransmit; beyond it they are dropped (and counted), as a full
	// socket buffer would.
	MaxQueued int // default 256, at most 1<<16

	// MaxAttempts bounds the accepted attempts remembered while their
	// cookie may still be valid (between one and two CookieBuckets after
	// they were accepted), which is what keeps a replayed HELLO from
	// creating a connection again; a new attempt beyond it is refused.
	MaxAttempts int // default 1<<18 (about 20 MiB at most)
}

// DefaultUnacceptedReceiveWindow is EndpointConfig.UnacceptedReceiveWindow's
// default: 16 KiB, measured at about 17 KiB of heap per waiting connection
// with peers sending 1 MiB at once (the root package's
// TestListenerFloodMemory), 17 MiB for the default budget of 1024.
const DefaultUnacceptedReceiveWindow = 16 << 10

// Endpoint configuration bounds and defaults.
const (
	defaultAcceptBudget  = 1024
	maxAcceptBudget      = 1 << 20
	defaultCookieBucket  = 30 * time.Second
	defaultResetRate     = 1000
	defaultResetBurst    = 100
	defaultMaxQueued     = 256
	maxMaxQueued         = 1 << 16
	defaultMaxAttempts   = 1 << 18
	cookieKeyLen         = 32
	endpointConfigPrefix = "EndpointConfig."
)

// endpointConfig is an EndpointConfig with its defaults filled in.
type endpointConfig struct {
	conn                    Config
	listen                  bool
	acceptBudget, hostShare int
	unacceptedWindow        int
	cookieKey               [cookieKeyLen]byte
	resetKey                [cookieKeyLen]byte
	cookieBucket            time.Duration
	resetRate               float64
	resetBurst              int
	maxQueued, maxAttempts  int
	serverID                []byte // nil: random connection IDs
}

// Validate reports the first field of c holding a value an Endpoint cannot
// work with, as a *ConfigError naming it (EndpointConfig.Field, or
// EndpointConfig.Conn.Field for the connections' Config).
func (c *EndpointConfig) Validate() error {
	if c == nil {
		return nil
	}
	bad := func(field string, v any, reason string) error {
		return fieldError(endpointConfigPrefix+field, v, reason)
	}
	switch {
	case c.AcceptBudget < 0 || c.AcceptBudget > maxAcceptBudget:
		return bad("AcceptBudget", c.AcceptBudget, "must be between 1 and 1048576 (0: the default, 1024)")
	case c.HostShare < 0:
		return bad("HostShare", c.HostShare, "must not be negative (0: the default)")
	case c.HostShare > cmpOr(c.AcceptBudget, defaultAcceptBudget):
		return bad("HostShare", c.HostShare, "must not exceed AcceptBudget")
	case c.CookieKey != nil && len(c.CookieKey) != cookieKeyLen:
		return bad("CookieKey", len(c.CookieKey), "must be 32 bytes long (nil: a random key)")
	case c.ResetKey != nil && len(c.ResetKey) != cookieKeyLen:
		return bad("ResetKey", len(c.ResetKey), "must be 32 bytes long (nil: derived from the cookie key)")
	case c.CookieBucket < 0 || (c.CookieBucket > 0 && c.CookieBucket < time.Second):
		return bad("CookieBucket", c.CookieBucket, "must be at least 1s (0: the default, 30s)")
	case c.ResetRate < 0 || math.IsNaN(c.ResetRate) || math.IsInf(c.ResetRate, 0):
		return bad("ResetRate", c.ResetRate, "must be a finite rate, not negative (0: the default, 1000)")
	case c.ResetBurst < 0:
		return bad("ResetBurst", c.ResetBurst, "must not be negative (0: the default, 100)")
	case c.MaxQueued < 0 || c.MaxQueued > maxMaxQueued:
		return bad("MaxQueued", c.MaxQueued, "must be between 1 and 65536 (0: the default, 256)")
	case c.MaxAttempts < 0:
		return bad("MaxAttempts", c.MaxAttempts, "must not be negative (0: the default, 262144)")
	case validServerID(c.ServerID) != "":
		return bad("ServerID", c.ServerID, validServerID(c.ServerID))
	}
	if c.Conn != nil {
		if err := c.Conn.Validate(); err != nil {
			if ce, ok := err.(*ConfigError); ok {
				return &ConfigError{Field: endpointConfigPrefix + "Conn." + ce.Field, Value: ce.Value, Reason: ce.Reason}
			}
			return err
		}
	}
	return nil
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// NewEndpoint returns an Endpoint configured by cfg; cfg.Rand is required
// (the other zero fields are defaults: a socket that only dials). A bad
// value is reported naming its field.
func NewEndpoint(cfg *EndpointConfig) (*Endpoint, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var c EndpointConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Rand == nil {
		// The core reads no global randomness: the caller injects it.
		return nil, fieldError(endpointConfigPrefix+"Rand", nil,
			"must be set: a source seeded from crypto/rand (connection IDs must be unpredictable, docs/PROTOCOL.md §14.1), or a simulation's seeded one")
	}
	ep := &Endpoint{
		conns:   make(map[uint64]*route),
		remotes: make(map[uint64]*route),
		rng:     c.Rand,
	}
	e := &ep.cfg
	if c.Conn != nil {
		e.conn = *c.Conn
	}
	e.conn.fillDefaults()
	e.listen = c.Listen
	e.acceptBudget = cmpOr(c.AcceptBudget, defaultAcceptBudget)
	e.hostShare = cmpOr(c.HostShare, min(e.acceptBudget, max(8, e.acceptBudget/16)))
	e.unacceptedWindow = cmpOr(c.UnacceptedReceiveWindow, DefaultUnacceptedReceiveWindow)
	e.cookieBucket = cmp0(c.CookieBucket, defaultCookieBucket)
	e.resetRate = c.ResetRate
	if e.resetRate == 0 {
		e.resetRate = defaultResetRate
	}
	e.resetBurst = cmpOr(c.ResetBurst, defaultResetBurst)
	e.maxQueued = cmpOr(c.MaxQueued, defaultMaxQueued)
	e.maxAttempts = cmpOr(c.MaxAttempts, defaultMaxAttempts)
	if len(c.ServerID) > 0 {
		e.serverID = slices.Clone(c.ServerID)
	}
	if c.CookieKey != nil {
		copy(e.cookieKey[:], c.CookieKey)
	} else {
		for i := 0; i < cookieKeyLen; i += 8 {
			binary.BigEndian.PutUint64(e.cookieKey[i:], ep.rng.Uint64())
		}
	}
	if e.listen {
		ep.mode = modeListen
	}
	ep.resets = TokenBucket{Rate: e.resetRate, Burst: e.resetBurst}
	ep.mac = hmac.New(sha256.New, e.cookieKey[:])
	if c.ResetKey != nil {
		copy(e.resetKey[:], c.ResetKey)
	} else {
		ep.mac.Write([]byte(resetKeyLabel))
		copy(e.resetKey[:], ep.mac.Sum(nil))
		ep.mac.Reset()
	}
	ep.resetMac = hmac.New(sha256.New, e.resetKey[:])
	return ep, nil
}

func cmp0(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

// EventKind says what HandleDatagram made of a datagram.
type EventKind uint8

const (
	// EventNone: the Endpoint consumed the datagram: dropped it (counted in
	// Stats) or answered it itself (see PollTransmit).
	EventNone EventKind = iota
	// EventDatagram: the datagram is for Event.Conn; hand it over with
	// Deliver.
	EventDatagram
	// EventNewConn: the datagram, a HELLO echoing a valid cookie, created
	// Event.Conn, the server side of the client's connection, which now
	// waits for Accept; hand the datagram to it with Deliver.
	EventNewConn
)

// Event is what HandleDatagram made of a datagram.
type Event struct {
	Kind EventKind
	Conn *Conn // the datagram's connection (EventDatagram, EventNewConn)
}

// EndpointStats counts what an Endpoint did with the datagrams it was
// given (Endpoint.Stats). Datagrams it routed to a connection are counted
// there, in Conn.Stats.
type EndpointStats struct {
	DatagramsReceived uint64 // every datagram HandleDatagram was given
	Routed            uint64 // handed to a connection (EventDatagram)
	// DroppedMalformed: the header checks failed, or a datagram with
	// DstCID 0 was not a HELLO padded to MinHelloDatagram.
	DroppedMalformed uint64
	// DroppedUnknown: for no connection here, and not answered (a Retry
	// or reset naming an unknown connection, a HELLO on a socket that only
	// dials).
	DroppedUnknown uint64
	// HellosReplayed: a HELLO of an attempt whose connection ended, its
	// cookie still valid (a replay, or a duplicate that came very late):
	// refused (counted in Refused too), creating nothing.
	HellosReplayed uint64
	Accepted       uint64 // connections the handshake created (EventNewConn)
	Connected      uint64 // connections Connect made (this side dialed)
	RetriesSent    uint64 // Retry datagrams queued (a HELLO without a valid cookie)
	// Refused counts the refusals queued; it is the sum of the causes
	// below (a refusal the full queue dropped counts in DroppedQueueFull).
	Refused uint64
	// RefusedBudget: AcceptBudget connections waited for Accept.
	RefusedBudget uint64
	// RefusedHostShare: half the budget waited, and the host's share of
	// it (HostShare) was spent.
	RefusedHostShare uint64
	// RefusedAttempts: MaxAttempts accepted attempts were remembered.
	RefusedAttempts uint64
	// RefusedClosed: the Endpoint refuses every attempt (Refuse: a closed
	// listener).
	RefusedClosed uint64
	// RefusedRejected: the caller would not take a connection the
	// handshake created (Reject).
	RefusedRejected uint64
	// RefusedReplayed: the HELLO of an attempt that ended (HellosReplayed).
	RefusedReplayed uint64
	// RefusedMode: a HELLO asking for another protection mode than the
	// listener's (plaintext, TLS, a pre-shared key): refused at once, with
	// a CLOSE naming the listener's (docs/PROTOCOL.md §18.5).
	RefusedMode   uint64
	ResetsSent    uint64 // stateless resets queued
	ResetsLimited uint64 // stateless resets the rate limit withheld
	// DroppedQueueFull: own datagrams dropped because MaxQueued waited.
	DroppedQueueFull uint64
	// DroppedMisrouted: for no connection here, with a DstCID that
	// carries another server's ID (EndpointConfig.ServerID): not answered,
	// since a reset would end that server's connection.
	DroppedMisrouted uint64
}

// Stats returns the Endpoint's counters.
func (ep *Endpoint) Stats() EndpointStats { return ep.stats }

// Len returns how many connections the Endpoint routes to.
func (ep *Endpoint) Len() int { return len(ep.conns) }

// Refuse makes the Endpoint refuse every new attempt from now on (a
// listener that closed): its HELLO is answered with a refusal, so the
// client learns at once. Connections already created are not affected.
func (ep *Endpoint) Refuse() { ep.mode = modeRefuse }

// Listen makes the Endpoint accept connections from now on, as
// EndpointConfig.Listen does from the start (a socket that becomes a
// listener once its owner is ready).
func (ep *Endpoint) Listen() { ep.mode = modeListen }

// HandleDatagram takes one datagram that arrived at now from the address
// from, and says what it is for (see Event). It never fails: a malformed,
// unknown, replayed or unwelcome datagram is dropped and counted in Stats,
// or answered by a datagram the Endpoint queues for PollTransmit, never
// larger than the datagram it answers. b is not retained. A datagram for
// a connection is not handed to it: the caller does so with Deliver (so
// that a caller holding one lock per connection routes under the
// Endpoint's lock and delivers under the connection's).
func (ep *Endpoint) HandleDatagram(now time.Time, from netip.AddrPort, b []byte) Event {
	ep.stats.DatagramsReceived++
	ep.now = now
	h, body, err := ParseHeader(b)
	if err != nil {
		ep.drop(now, DropMalformed, from)
		return Event{}
	}
	if h.DstCID != 0 {
		var r *route
		if h.Type == PacketReset {
			r = ep.remotes[h.DstCID] // a reset echoes the ID of its sender's peer: ours
		} else {
			r = ep.conns[h.DstCID]
		}
		if r != nil {
			ep.stats.Routed++
			return Event{Kind: EventDatagram, Conn: r.conn}
		}
		if h.Type != PacketReset && !ep.mayHaveIssued(h.DstCID) {
			ep.drop(now, DropMisrouted, from)
			return Event{}
		}
		switch {
		case h.Type == PacketData:
			ep.answerUnknown(now, h, from)
			return Event{}
		case (h.Type == PacketHandshake || h.Type == PacketApp) && len(b) > TokenResetLen:
			// A protected packet: the reset carries its token.
			ep.answerUnknownProtected(now, h, from)
			return Event{}
		}
		ep.drop(now, DropUnknown, from)
		return Event{}
	}
	if h.Type != PacketData {
		ep.drop(now, DropMalformed, from)
		return Event{}
	}
	hello, ok := PeekHello(body)
	// A HELLO from a new address comes padded to MinHelloDatagram, so that
	// what we answer (a Retry, a refusal) stays well under what it sent.
	if !ok || hello.SrcCID == 0 || len(b) < MinHelloDatagram {
		ep.drop(now, DropMalformed, from)
		return Event{}
	}
	return ep.handleHello(now, from, &hello)
}

// handleHello takes the HELLO of a client's attempt (DstCID 0).
func (ep *Endpoint) handleHello(now time.Time, from netip.AddrPort, hello *HelloFrame) Event {
	key := attemptKey{cid: hello.SrcCID, addr: from}
	bucket := ep.bucketOf(now)
	ep.pruneAttempts(bucket)
	if a, ok := ep.attempts[key]; ok {
		if a.conn != nil {
			// A retransmitted HELLO: its connection answers it.
			ep.stats.Routed++
			return Event{Kind: EventDatagram, Conn: a.conn}
		}
		// The HELLO of a connection that ended, its cookie still valid:
		// a replay (or a client that missed the end). It opens nothing;
		// the refusal is smaller than the HELLO.
		ep.stats.HellosReplayed++
		ep.refuse(key, refusedReplayed)
		return Event{}
	}
	switch ep.mode {
	case modeIgnore:
		ep.drop(now, DropUnknown, from)
		return Event{}
	case modeRefuse:
		ep.refuse(key, refusedClosed)
		return Event{}
	}
	if mode := ep.cfg.conn.Protection(); hello.Protection != mode {
		// No downgrade (and no protected HELLO taken as plaintext): the
		// client learns our mode at once, and nothing is kept.
		ep.refuse(key, refusedMode)
		return Event{}
	}
	cookieBucket, valid := ep.checkCookie(hello.Cookie, key, bucket)
	if !valid {
		cookie := ep.cookie(key, bucket)
		if ep.queue(from, func(b []byte) []byte { return AppendRetry(b, key.cid, cookie[:]) }) {
			ep.stats.RetriesSent++
			if ep.debugOn() {
				debug(ep.cfg.conn.Logger, "rudp: HELLO without a valid cookie: Retry sent",
					slog.String("from", from.String()), slog.Uint64("client_cid", key.cid),
					slog.Bool("had_cookie", len(hello.Cookie) > 0))
			}
		}
		return Event{}
	}
	host := hostOf(from)
	switch {
	case len(ep.pending) >= ep.cfg.acceptBudget:
		ep.refuse(key, refusedBudget)
		return Event{}
	case len(ep.attempts) >= ep.cfg.maxAttempts:
		ep.refuse(key, refusedAttempts)
		return Event{}
	case len(ep.pending) >= ep.cfg.acceptBudget/2 && ep.pendingHost[host] >= ep.cfg.hostShare:
		ep.refuse(key, refusedHostShare)
		return Event{}
	}
	cfg := &ep.cfg.conn
	if peer := int(hello.MaxDatagramSize); peer < cfg.MaxDatagramSize {
		// The client reads no longer datagrams: the connection's ceiling
		// is its from the start, so the congestion controller, which
		// counts in datagrams of the ceiling, starts with a window for
		// datagrams of the size the path will carry, not of ours. (The
		// HELLO checked it is at least MinHelloDatagram.)
		lowered := *cfg
		lowered.MaxDatagramSize = peer
		cfg = &lowered
	}
	c, err := newConn(cfg, ep.newCID(), now, true)
	if err != nil {
		return Event{} // (the Config was validated by NewEndpoint)
	}
	c.pathSeed = ep.rng.Uint64() // its path challenges: unpredictable
	c.seedSecurity(ep.rng)
	c.setResetToken(ep.ResetToken(c.localCID))
	c.setServer()
	if ep.cfg.unacceptedWindow > 0 {
		// Before its HELLO goes out, which carries its credit.
		c.SetReceiveLimit(now, ep.cfg.unacceptedWindow)
	}
	r := &route{conn: c, addr: from, attempt: key, host: host, pending: true}
	ep.conns[c.localCID] = r
	ep.indexRemote(r, hello.SrcCID)
	if ep.attempts == nil {
		ep.attempts = make(map[attemptKey]attempt)
	}
	ep.attempts[key] = attempt{conn: c, bucket: cookieBucket}
	ep.pending = append(ep.pending, c)
	if ep.pendingHost == nil {
		ep.pendingHost = make(map[netip.Addr]int)
	}
	ep.pendingHost[host]++
	ep.stats.Accepted++
	if ep.debugOn() {
		debug(ep.cfg.conn.Logger, "rudp: connection accepted: its HELLO echoed a valid cookie",
			slog.Uint64("cid", c.localCID), slog.Uint64("client_cid", key.cid), slog.String("from", from.String()),
			slog.Int("pending", len(ep.pending)))
	}
	return Event{Kind: EventNewConn, Conn: c}
}

// refusal is why an Endpoint refuses a client's attempt.
type refusal uint8

const (
	refusedBudget refusal = iota
	refusedHostShare
	refusedAttempts
	refusedClosed
	refusedRejected
	refusedReplayed
	refusedMode
)

var refusalNames = [...]string{
	refusedBudget:    "accept budget spent (AcceptBudget connections wait for Accept)",
	refusedHostShare: "the host's share of the accept budget spent",
	refusedAttempts:  "MaxAttempts attempts remembered",
	refusedClosed:    "not accepting (a closed listener)",
	refusedRejected:  "rejected by the caller (its own bound)",
	refusedReplayed:  "a replayed HELLO of an attempt that ended",
	refusedMode:      "the HELLO asks for another protection mode",
}

// refuse queues the refusal of a client's attempt, counted by its cause;
// false if the queue was full (the refusal is dropped).
func (ep *Endpoint) refuse(key attemptKey, why refusal) bool {
	appendTo := func(b []byte) []byte { return AppendRefuse(b, key.cid) }
	if why == refusedMode {
		// CLOSE(CloseHandshakeFailed) naming our mode (§18.5).
		appendTo = func(b []byte) []byte { return appendRefuseMode(b, key.cid, ep.cfg.conn.Protection()) }
	}
	if !ep.queue(key.addr, appendTo) {
		return false
	}
	ep.stats.Refused++
	switch why {
	case refusedBudget:
		ep.stats.RefusedBudget++
	case refusedHostShare:
		ep.stats.RefusedHostShare++
	case refusedAttempts:
		ep.stats.RefusedAttempts++
	case refusedClosed:
		ep.stats.RefusedClosed++
	case refusedRejected:
		ep.stats.RefusedRejected++
	case refusedReplayed:
		ep.stats.RefusedReplayed++
	case refusedMode:
		ep.stats.RefusedMode++
	}
	if ep.debugOn() {
		debug(ep.cfg.conn.Logger, "rudp: connection attempt refused",
			slog.String("from", key.addr.String()), slog.Uint64("client_cid", key.cid),
			slog.String("reason", refusalNames[why]))
	}
	return true
}

// answerUnknown answers a data packet addressed to a connection ID this
// Endpoint does not know (its state was lost: a restart) with a stateless
// reset (docs/PROTOCOL.md §14.1), within the rate limit.
func (ep *Endpoint) answerUnknown(now time.Time, h Header, from netip.AddrPort) {
	if !ep.resets.Allow(now) {
		ep.drop(now, DropResetLimited, from)
		return
	}
	if ep.queue(from, func(b []byte) []byte { return AppendReset(b, h) }) {
		ep.stats.ResetsSent++
	}
}

// answerUnknownProtected answers a protected packet (a datagram longer
// than the reset) addressed to a connection ID this Endpoint does not
// know with a stateless reset carrying the ID's token (docs/PROTOCOL.md
// §14.3), within the rate limit shared with answerUnknown.
func (ep *Endpoint) answerUnknownProtected(now time.Time, h Header, from netip.AddrPort) {
	if !ep.resets.Allow(now) {
		ep.drop(now, DropResetLimited, from)
		return
	}
	token := ep.ResetToken(h.DstCID)
	if ep.queue(from, func(b []byte) []byte { return AppendTokenReset(b, h, &token) }) {
		ep.stats.ResetsSent++
	}
}

// resetKeyLabel derives the reset key from the cookie key when
// EndpointConfig.ResetKey is nil, and resetTokenLabel prefixes the
// connection ID in a token's HMAC input (docs/PROTOCOL.md §14.3).
const (
	resetKeyLabel   = "rudp stateless reset key"
	resetTokenLabel = "rudp stateless reset"
)

// ResetToken returns the stateless reset token of the connection ID cid
// on this Endpoint: the first 16 bytes of HMAC-SHA256(reset key,
// "rudp stateless reset" || cid as a u64, big endian). A protected
// connection tells its peer its own ID's token in its transport
// parameters; the Endpoint, having lost the connection (a restart with the
// same ResetKey), can still make it.
func (ep *Endpoint) ResetToken(cid uint64) (token [ResetTokenLen]byte) {
	buf := ep.macIn[:len(resetTokenLabel)+8] // (a local would escape through the hash.Hash interface)
	copy(buf, resetTokenLabel)
	binary.BigEndian.PutUint64(buf[len(resetTokenLabel):], cid)
	ep.resetMac.Reset()
	ep.resetMac.Write(buf)
	copy(token[:], ep.resetMac.Sum(ep.macSum[:0]))
	return token
}

// queue appends one of the Endpoint's own datagrams, built by appendTo
// into a fixed slot, for PollTransmit; false if MaxQueued wait.
func (ep *Endpoint) queue(to netip.AddrPort, appendTo func([]byte) []byte) bool {
	if ep.outLen >= ep.cfg.maxQueued {
		ep.drop(ep.now, DropQueueFull, to)
		return false
	}
	if ep.out == nil {
		ep.out = make([]ownDatagram, ep.cfg.maxQueued) // once: ~70 bytes a slot
	}
	d := &ep.out[(ep.outHead+ep.outLen)%len(ep.out)]
	d.to = to
	d.n = uint8(len(appendTo(d.b[:0])))
	ep.outLen++
	return true
}

// PollTransmit writes the next of the Endpoint's own datagrams (a Retry,
// a refusal, a stateless reset) into buf and says where it goes; ok is
// false when none waits (or buf is shorter than 64 bytes, the most one
// takes). Call it until ok is false. The datagrams of its connections are
// polled from each with PollConn.
func (ep *Endpoint) PollTransmit(now time.Time, buf []byte) (n int, to netip.AddrPort, ok bool) {
	if ep.outLen == 0 || len(buf) < 64 {
		return 0, netip.AddrPort{}, false
	}
	d := &ep.out[ep.outHead]
	n = copy(buf, d.b[:d.n])
	to = d.to
	ep.outHead = (ep.outHead + 1) % len(ep.out)
	ep.outLen--
	return n, to, true
}

// Connect makes the client side of a new connection to the peer at to,
// configured by cfg (nil: EndpointConfig.Conn), with a connection ID
// unused on this Endpoint. Its first HELLO goes out at the first PollConn.
func (ep *Endpoint) Connect(now time.Time, to netip.AddrPort, cfg *Config) (*Conn, error) {
	if !to.IsValid() || to.Port() == 0 {
		return nil, fieldError("to", to, "must be a valid address with a nonzero port")
	}
	if cfg == nil {
		cfg = &ep.cfg.conn
	}
	c, err := NewConn(cfg, ep.newCID(), now)
	if err != nil {
		return nil, err
	}
	c.pathSeed = ep.rng.Uint64() // its path challenges: unpredictable
	c.seedSecurity(ep.rng)
	c.setResetToken(ep.ResetToken(c.localCID))
	ep.conns[c.localCID] = &route{conn: c, addr: to}
	ep.stats.Connected++
	if c.debugOn() {
		c.debug("rudp: connecting", slog.String("to", to.String()))
	}
	return c, nil
}

// Accept takes the oldest connection the handshake created that the
// Endpoint still routes to (one that ended was forgotten by Update or
// Remove), or returns nil if none waits, gives back its share of the
// accept budget and lifts its UnacceptedReceiveWindow cap (the credit goes
// out with its next packet). It changes the connection it returns: a
// caller with a lock per connection takes them with Take instead, holding
// that connection's lock.
//
// A protected connection is taken only once its cryptographic handshake
// has completed (Acceptable): until then Accept passes over it.
func (ep *Endpoint) Accept(now time.Time) *Conn {
	for i := 0; i < len(ep.pending); {
		c := ep.pending[i]
		r := ep.conns[c.localCID]
		if r != nil && r.conn == c && !c.Acceptable() {
			i++
			continue
		}
		ep.pending = slices.Delete(ep.pending, i, i+1)
		if len(ep.pending) == 0 {
			ep.pending = nil // (so that the backing array does not only grow)
		}
		if r == nil || r.conn != c {
			continue // removed
		}
		ep.unpend(r)
		ep.lift(now, c)
		return c
	}
	return nil
}

// Take gives back the accept budget's place of c, a connection the
// handshake created, without the order of Accept, and lifts its
// UnacceptedReceiveWindow cap: a caller that keeps its own queue of new
// connections (or has none) calls it when the application took c. Calling
// it again, or for another connection, does nothing.
func (ep *Endpoint) Take(now time.Time, c *Conn) {
	r := ep.conns[c.localCID]
	if r == nil || r.conn != c || !r.pending {
		return
	}
	ep.unpend(r)
	ep.lift(now, c)
	if i := slices.Index(ep.pending, c); i >= 0 {
		ep.pending = slices.Delete(ep.pending, i, i+1)
	}
}

// Reject refuses the attempt that created c, a connection the handshake
// created that its caller will not take (its own bound is reached): the
// refusal is queued for PollTransmit and c is forgotten, as is the
// attempt, so that the client may try again. It reports whether the
// refusal was queued (counted as RefusedRejected; not if c was not such a
// connection, or MaxQueued datagrams waited).
func (ep *Endpoint) Reject(c *Conn) bool {
	r := ep.conns[c.localCID]
	if r == nil || r.conn != c || r.attempt.cid == 0 {
		return false
	}
	ep.remove(r)
	delete(ep.attempts, r.attempt)
	return ep.refuse(r.attempt, refusedRejected)
}

// QuotedConn returns the connection a quote of a datagram this side sent
// names (an ICMP error's, see ParseQuoted): by the peer's ID, or by ours
// for a HELLO sent before the peer's was known; nil if none.
func (ep *Endpoint) QuotedConn(q Quoted) *Conn {
	var r *route
	if q.DstCID != 0 {
		r = ep.remotes[q.DstCID]
	} else {
		r = ep.conns[q.SrcCID]
	}
	if r == nil {
		return nil
	}
	return r.conn
}

// Pending returns how many connections wait for Accept.
func (ep *Endpoint) Pending() int { return len(ep.pending) }

// unpend counts r's connection out of the accept budget.
// lift lifts the UnacceptedReceiveWindow cap of c, taken by the
// application.
func (ep *Endpoint) lift(now time.Time, c *Conn) {
	if ep.cfg.unacceptedWindow > 0 {
		c.SetReceiveLimit(now, 0)
	}
}

func (ep *Endpoint) unpend(r *route) {
	if !r.pending {
		return
	}
	r.pending = false
	if n := ep.pendingHost[r.host] - 1; n > 0 {
		ep.pendingHost[r.host] = n
	} else {
		delete(ep.pendingHost, r.host)
	}
}

// Deliver hands c a datagram HandleDatagram routed to it (EventDatagram,
// EventNewConn), received at now from the address from, then notes what
// it changed (see Update). The connection decides whether the datagram
// moves it to a new address and validates that address (Conn's path
// rules, docs/PROTOCOL.md §16): a datagram that merely names its ID moves
// nothing.
func (ep *Endpoint) Deliver(now time.Time, c *Conn, from netip.AddrPort, b []byte) {
	r := ep.conns[c.localCID]
	if r == nil || r.conn != c {
		c.HandleDatagram(now, b) // not (or no longer) ours: the connection decides alone
		return
	}
	c.HandleDatagramFrom(now, r.pathAddr(from), b)
	ep.update(r)
}

// PollConn is c.PollTransmit that also says where the datagram goes: the
// peer's current address, or, for a path challenge or its answer, the
// address being validated (Conn.PollTransmitTo).
func (ep *Endpoint) PollConn(now time.Time, c *Conn, buf []byte) (n int, to netip.AddrPort) {
	n, to = c.PollTransmitTo(now, buf)
	if r := ep.conns[c.localCID]; r != nil && r.conn == c {
		if !to.IsValid() {
			to = r.addr
		}
		if n == 0 {
			ep.update(r)
		}
	}
	return n, to
}

// Addr returns the address of c's peer, where c sends now (the zero
// AddrPort if c is not one of the Endpoint's connections).
func (ep *Endpoint) Addr(c *Conn) netip.AddrPort {
	r := ep.conns[c.localCID]
	if r == nil || r.conn != c {
		return netip.AddrPort{}
	}
	if a := c.PeerAddr(); a.IsValid() {
		return a
	}
	return r.addr
}

// pathAddr is the address a datagram came from as r's connection names it:
// the zero AddrPort for the one it started with, which a Conn does not
// store (see Conn.HandleDatagramFrom).
func (r *route) pathAddr(from netip.AddrPort) netip.AddrPort {
	if from == r.addr {
		return netip.AddrPort{}
	}
	return from
}

// Update notes what changed in c since the Endpoint last looked (call it
// after HandleTimeout or any call that may end c): the peer's connection
// ID, which stateless resets echo, once c learnt it; c's end, after which
// the Endpoint forgets c (Remove).
func (ep *Endpoint) Update(c *Conn) {
	if r := ep.conns[c.localCID]; r != nil && r.conn == c {
		ep.update(r)
	}
}

func (ep *Endpoint) update(r *route) {
	c := r.conn
	if c.life.ended() {
		ep.remove(r)
		return
	}
	if r.remoteCID == 0 && c.remoteCID != 0 {
		ep.indexRemote(r, c.remoteCID)
	}
}

// indexRemote records the peer's connection ID of r, which stateless
// resets echo.
func (ep *Endpoint) indexRemote(r *route, id uint64) {
	if ep.remotes[id] == nil { // (two peers with one ID: 2^-64; the first keeps it)
		ep.remotes[id] = r
		r.remoteCID = id
	}
}

// Remove forgets c: datagrams for its ID are answered as for an unknown
// connection from now on. An attempt that created c stays remembered
// while its cookie is valid, so that its HELLO, replayed, creates nothing.
func (ep *Endpoint) Remove(c *Conn) {
	if r := ep.conns[c.localCID]; r != nil && r.conn == c {
		ep.remove(r)
	}
}

func (ep *Endpoint) remove(r *route) {
	delete(ep.conns, r.conn.localCID)
	if r.remoteCID != 0 && ep.remotes[r.remoteCID] == r {
		delete(ep.remotes, r.remoteCID)
	}
	if r.attempt.cid != 0 {
		if a, ok := ep.attempts[r.attempt]; ok && a.conn == r.conn {
			a.conn = nil // the connection's memory is not held for the cookie's life
			ep.attempts[r.attempt] = a
		}
	}
	if r.pending {
		ep.unpend(r)
		if i := slices.Index(ep.pending, r.conn); i >= 0 {
			ep.pending = slices.Delete(ep.pending, i, i+1)
		}
	}
}

// newCID draws a connection ID unused on this Endpoint, carrying its
// server ID if it has one.
func (ep *Endpoint) newCID() uint64 {
	for {
		id := NewConnectionID(ep.rng)
		if ep.cfg.serverID != nil {
			id = RoutableConnectionID(ep.rng, ep.cfg.serverID)
		}
		if ep.conns[id] == nil {
			return id
		}
	}
}

// mayHaveIssued reports whether cid may be one of the Endpoint's own
// connection IDs: any, without a server ID; with one, only those carrying
// it.
func (ep *Endpoint) mayHaveIssued(cid uint64) bool {
	return ep.cfg.serverID == nil || CarriesServerID(cid, ep.cfg.serverID)
}

// pruneAttempts forgets the attempts whose cookie can no longer be valid
// (made before the previous bucket), once per bucket.
func (ep *Endpoint) pruneAttempts(bucket uint64) {
	if bucket == ep.attemptsBucket || len(ep.attempts) == 0 {
		ep.attemptsBucket = max(ep.attemptsBucket, bucket)
		return
	}
	ep.attemptsBucket = bucket
	for k, a := range ep.attempts {
		if a.bucket+1 < bucket {
			delete(ep.attempts, k)
		}
	}
}

// Cookies (docs/PROTOCOL.md §8.1): an HMAC over the client's address and
// connection ID and a coarse time bucket; the current and the previous
// bucket are accepted, so a cookie lives between one and two buckets.

func (ep *Endpoint) bucketOf(now time.Time) uint64 {
	return uint64(now.UnixNano()) / uint64(ep.cfg.cookieBucket)
}

// cookie returns the cookie for a client's attempt in a time bucket.
func (ep *Endpoint) cookie(key attemptKey, bucket uint64) (cookie [CookieLen]byte) {
	a := key.addr.Addr().As16()
	buf := &ep.macIn // (a local would escape through the hash.Hash interface)
	copy(buf[:16], a[:])
	binary.BigEndian.PutUint16(buf[16:], key.addr.Port())
	binary.BigEndian.PutUint64(buf[18:], key.cid)
	binary.BigEndian.PutUint64(buf[26:], bucket)
	ep.mac.Reset()
	ep.mac.Write(buf[:])
	copy(cookie[:], ep.mac.Sum(ep.macSum[:0]))
	return cookie
}

// checkCookie reports whether cookie is valid for key now (in bucket), and
// the bucket it was made in.
func (ep *Endpoint) checkCookie(cookie []byte, key attemptKey, bucket uint64) (uint64, bool) {
	if len(cookie) != CookieLen {
		return 0, false
	}
	for _, b := range [2]uint64{bucket, bucket - 1} {
		if want := ep.cookie(key, b); hmac.Equal(cookie, want[:]) {
			return b, true
		}
	}
	return 0, false
}

// hostOf is the host a per-host share counts: an IPv4 address, or the /64
// of an IPv6 one (what one subscriber usually holds).
func hostOf(a netip.AddrPort) netip.Addr {
	ip := a.Addr().Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}
