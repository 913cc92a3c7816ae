package core

import (
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Paths: following the peer to a new address, safely (docs/PROTOCOL.md,
// "Paths and address validation"; RFC 9000 §8.2 and §9.3 are the model).
//
// A connection starts on one path, the address its caller dialed or
// accepted from; the Conn does not store it (a netip.AddrPort is 32 bytes,
// and most connections never see a second address): the zero AddrPort
// stands for it in PeerAddr, HandleDatagramFrom and PollTransmitTo. The
// pathSet is allocated when a second address appears, or when the peer
// challenges this side.
//
// The rules:
//   - The connection moves to a new address only for a packet from it that
//     was accepted, carries something besides PADDING, PATH_CHALLENGE and
//     PATH_RESPONSE (a probe moves nothing), and is the newest so far (its
//     packet number the highest received): a reordered or replayed older
//     packet moves nothing.
//   - Until the new address answers a PATH_CHALLENGE (8 unpredictable
//     bytes, sent again every PTO) with a PATH_RESPONSE echoing them, this
//     side sends it at most amplificationFactor times the bytes it received
//     from it.
//   - If no answer comes within pathValidationPTOs probe timeouts of the
//     move, or of the newest packet from the new address since, the
//     connection returns to the last validated address. A newer packet from
//     the last validated address returns there at once (no challenge): a
//     spurious move ends with the next packet of the real peer.
//   - The acknowledgements sent meanwhile may be lost: a move is followed
//     by an ACK at once to a validated address (to a new one once it is
//     validated: its allowance is the challenge's), and a failure by two
//     copies of an ACK of what the address returned to is known to have
//     sent (pathSet.ackBound), once that address is validated.
//
// So a spoofer that copies a packet (or forges one, in plaintext mode) from
// a third address moves the connection for at most a round trip of the real
// peer's, and makes it send that address at most 3x what it sent.
//
// Congestion control and the RTT estimate are kept across a move: the usual
// move is a NAT rebinding, which changes the port, not the path.

const (
	// amplificationFactor bounds what an unvalidated address is sent,
	// relative to what was received from it.
	amplificationFactor = 3
	// pathValidationPTOs is how many probe timeouts a new address has to
	// answer its challenge, from the move or from its newest packet since.
	pathValidationPTOs = 3
	// pathFrameDatagram is the size of a datagram carrying one
	// PATH_CHALLENGE or PATH_RESPONSE and nothing else (plus sealOverhead
	// on a protected connection).
	pathFrameDatagram = PacketOverhead + 1 + pathDataLen
	// challengeReserve is the part of an unvalidated address' allowance
	// that only challenges may use: one for each probe timeout of the
	// validation.
	challengeReserve = pathValidationPTOs * pathFrameDatagram
)

// pathSet is a connection's paths once it has more than one (see above).
// Deadlines are timer offsets, as in timerSet (0: not armed).
type pathSet struct {
	// current is where datagrams go (zero: the original address).
	current netip.AddrPort
	// fallback is the last validated address, returned to if current fails.
	fallback netip.AddrPort
	// candidate is the unvalidated address the connection moved away from
	// to current (another new one), with its counters: if current fails,
	// the connection goes back to it rather than to fallback, for it sent
	// the newest packet before current's (a NAT rebinding, then a spoofer's
	// copy: the old address is gone). Zero: none (the address the
	// connection started with is never one: it was validated).
	candidate                     netip.AddrPort
	candidateRecvd, candidateSent uint64
	// validated: current answered a challenge or is the original address.
	validated bool

	// While current is not validated: bytes received from it and sent to it.
	recvd, sent uint64

	challenge     [pathDataLen]byte
	rng           *rand.ChaCha8 // the challenges' source, seeded from Conn.pathSeed
	challengeDue  bool          // a challenge must go out to current
	nextChallenge int64         // when the next challenge is due (one a PTO)
	deadline      int64         // when current fails validation

	// The newest packet number the connection had received when it moved
	// to current, or received since from the address it would return to if
	// current fails (accepted, or a duplicate: the original of a spoofer's
	// copy), and when that arrived. If current fails, the address returned
	// to is acknowledged that much (reackDue) once validated: what was
	// acknowledged meanwhile went to current, and the newer packets from
	// current (copies, or forged ones with numbers the peer never sent) are
	// not acknowledged to the peer by it.
	ackBound   uint64
	ackBoundAt time.Time
	ackBounded bool  // ackBound is set (something had been received)
	reackDue   uint8 // copies of that ACK still to send (once validated)
	// movedBy is the packet number of the packet that moved the
	// connection to current.
	movedBy uint64
	// ackOnValidation: once current is validated, an ACK goes at once (the
	// move to it was made by the peer's newest packet: see onPathPacket).
	ackOnValidation bool

	// The answer to the peer's latest challenge, on the path it came by.
	response    [pathDataLen]byte
	responseTo  netip.AddrPort
	responseDue bool

	stats PathStats
}

// PathStats counts a connection's address changes (Conn.PathStats).
type PathStats struct {
	// Migrations counts the times the connection moved to another peer
	// address (a NAT rebinding, a spoofed packet, the return after one).
	Migrations uint64
	// Validated counts new addresses that answered a challenge.
	Validated uint64
	// ValidationsFailed counts new addresses that did not answer in time;
	// the connection returned to the last validated address each time.
	ValidationsFailed uint64
	// AmplificationLimited counts the times a datagram for an unvalidated
	// address was held back by the 3x limit.
	AmplificationLimited uint64
	// ChallengesAnswered counts the peer's PATH_CHALLENGE frames answered.
	ChallengesAnswered uint64
}

// paths returns the connection's pathSet, allocating it on first use.
func (c *Conn) pathSet() *pathSet {
	if c.paths == nil {
		c.paths = &pathSet{validated: true}
	}
	return c.paths
}

// PeerAddr returns the peer's address the connection sends to now: the zero
// AddrPort while that is the address the connection started with (which
// the caller knows: the one it dialed, or the one the HELLO came from).
func (c *Conn) PeerAddr() netip.AddrPort {
	if c.paths == nil {
		return netip.AddrPort{}
	}
	return c.paths.current
}

// ValidatedPeerAddr returns the peer's last validated address, where it is
// known to be: PeerAddr once it answered a challenge, the address before
// while it has not (the zero AddrPort: the one the connection started
// with). An application is shown this one (a reply to a spoofed address
// would otherwise go there).
func (c *Conn) ValidatedPeerAddr() netip.AddrPort {
	switch p := c.paths; {
	case p == nil:
		return netip.AddrPort{}
	case p.validated:
		return p.current
	default:
		return p.fallback
	}
}

// PathStats returns the counters of the connection's address changes (all
// zero while it has only ever had one).
func (c *Conn) PathStats() PathStats {
	if c.paths == nil {
		return PathStats{}
	}
	return c.paths.stats
}

// HandleDatagramFrom is HandleDatagram for a caller that receives from
// several addresses (a listening socket): from is where the datagram came
// from. A datagram from PeerAddr (the zero AddrPort, or the address the
// connection started with, while PeerAddr is zero) is on the current path;
// one from any other address may move the connection there (see the rules
// in docs/PROTOCOL.md, "Paths and address validation"), after which
// PollTransmitTo names where each datagram goes. A caller that passes an
// address must pass the original one as the zero AddrPort (or call
// HandleDatagram): the Conn does not store it.
func (c *Conn) HandleDatagramFrom(now time.Time, from netip.AddrPort, b []byte) {
	c.handleDatagram(now, from, b)
}

// PollTransmitTo is PollTransmit that also says where the datagram goes:
// to, or the address the connection started with when to is the zero
// AddrPort. A caller of HandleDatagramFrom must send with PollTransmitTo:
// after a change of address, challenges and their answers go to addresses
// other than the current one.
func (c *Conn) PollTransmitTo(now time.Time, buf []byte) (n int, to netip.AddrPort) {
	return c.pollTransmitTo(now, buf, nil)
}

// PollTransmitGather is PollTransmitTo for a caller that sends a datagram
// from several pieces (sendmsg's iovecs): the datagram is buf[:at], then
// data, then buf[at:n], the same bytes PollTransmitTo would have written
// into buf. data, nil or at least min bytes, is the data of one Delivery
// message's fragment left in the send buffer instead of copied into buf: a
// bulk sender's copy of every byte into its datagrams. It stays unchanged
// until a call other than PollTransmit*, NextTimeout or Stats; send the
// datagram before such a call. Only a plaintext connection gathers (a
// protected packet is sealed whole into buf); when data is nil, the
// datagram is buf[:n] and at is n. buf must hold DatagramSize bytes, as
// for PollTransmit.
func (c *Conn) PollTransmitGather(now time.Time, buf []byte, min int) (n, at int, data []byte, to netip.AddrPort) {
	g := gathering{min: max(min, 1)}
	size, to := c.pollTransmitTo(now, buf, &g)
	if g.data == nil {
		return size, size, nil, to
	}
	return size - len(g.data), g.at, g.data, to
}

// pollTransmitTo is PollTransmitTo, gathering with g if not nil.
func (c *Conn) pollTransmitTo(now time.Time, buf []byte, g *gathering) (n int, to netip.AddrPort) {
	c.traceAt(now)
	p := c.paths
	if p == nil {
		return c.pollTransmit(now, buf, len(buf), g), netip.AddrPort{}
	}
	if c.life.ended() || len(buf) < c.datagramSize() {
		return 0, netip.AddrPort{}
	}
	if p.responseDue {
		if c.pathAllows(p.responseTo, pathFrameDatagram+c.sealOverhead()) {
			p.responseDue = false
			p.stats.ChallengesAnswered++
			return c.sendPathFrame(buf, framePathResponse, &p.response), p.responseTo
		}
		p.responseDue = false // held back by the 3x limit: the peer challenges again
	}
	if p.reackDue > 0 && p.validated {
		p.reackDue--
		if n := c.sendBoundedAck(now, buf, p.reackDue == 0); n > 0 {
			return n, p.current
		}
	}
	if p.challengeDue && !p.validated {
		// One a PTO (a lost challenge is sent again), each when the 3x
		// limit allows.
		p.challengeDue = false
		p.nextChallenge = c.timers.offset(now.Add(c.recovery.pto()))
		if c.pathAllows(p.current, pathFrameDatagram+c.sealOverhead()) {
			return c.sendPathFrame(buf, framePathChallenge, &p.challenge), p.current
		}
		p.stats.AmplificationLimited++
	}
	limit := len(buf)
	if !p.validated {
		// What the 3x limit allows, less room for the challenges still to
		// come: data spending it all left the next challenge held back,
		// and the address failed validation for want of one (the
		// simulator's TestSimEndpointPaths, a NAT rebinding under loss).
		reserve := uint64(challengeReserve + pathValidationPTOs*c.sealOverhead())
		limit = int(min(p.allowance()-min(p.allowance(), reserve), uint64(len(buf))))
	}
	n = c.pollTransmit(now, buf, limit, g)
	if n == 0 && limit < c.datagramSize() && (c.HasPendingData() || c.acks.owed()) {
		p.stats.AmplificationLimited++
	}
	if n > 0 && !p.validated {
		p.sent += uint64(n)
	}
	return n, p.current
}

// allowance is what the unvalidated current address may still be sent.
func (p *pathSet) allowance() uint64 {
	if lim := amplificationFactor * p.recvd; lim > p.sent {
		return lim - p.sent
	}
	return 0
}

// pathAllows reports whether a datagram of size bytes may go to addr now,
// and charges it to addr's allowance if that is the unvalidated current
// address. Any other address is only ever sent the answer to a challenge it
// sent, never larger than the datagram that carried the challenge.
func (c *Conn) pathAllows(addr netip.AddrPort, size int) bool {
	p := c.paths
	if addr != p.current || p.validated {
		return true
	}
	if p.allowance() < uint64(size) {
		return false
	}
	p.sent += uint64(size)
	return true
}

// sendPathFrame writes a datagram carrying one PATH_CHALLENGE or
// PATH_RESPONSE (typ) and returns its length. It is not ack-eliciting and
// not tracked in flight: a lost challenge is sent again on its timer, a
// lost response when the peer challenges again.
func (c *Conn) sendPathFrame(buf []byte, typ byte, data *[pathDataLen]byte) int {
	return c.seal(buf, len(appendPathData(buf[:headerLen], typ, data)))
}

// reacks is how many copies of the ACK up to ackBound go out when current
// fails: two (as for an ACK-only packet that answers a batch, ackRepeat),
// for it stands for every ACK that went to current, and a peer whose
// probe timer backed off (a flow-blocked sender keeps backing off) would
// wait long for its next chance (TestSimScripted/slow_reader seed 235).
func (p *pathSet) reacks() uint8 {
	if !p.ackBounded {
		return 0
	}
	return 2
}

// sentFrom notes that packet pn of size bytes (accepted, or a duplicate:
// dup) came from from. The packet that moved the connection to current
// (not validated), or a newer one, arriving again from a third address (a
// duplicate), makes that address the one to return to if current fails:
// one of the two is a copy, and the peer may have no more to send (a NAT
// rebinding whose first packets a spoofer's copies overtook left the
// connection on the dead old address until the peer's heartbeat:
// TestSim/truncate seed 13450, 19.3 s; harsh seed 4410, 21.5 s). If from
// is an address the connection would return to, the peer is known to have
// sent pn, and it is acknowledged there then (ackBound).
func (p *pathSet) sentFrom(now time.Time, from netip.AddrPort, pn uint64, size int, dup bool) {
	if p.validated || from == p.current {
		return
	}
	if dup && pn >= p.movedBy && from != p.fallback && !p.candidate.IsValid() {
		p.candidate, p.candidateRecvd, p.candidateSent = from, uint64(size), 0
	}
	if (from == p.fallback || from == p.candidate) && (!p.ackBounded || pn > p.ackBound) {
		p.ackBound, p.ackBoundAt, p.ackBounded = pn, now, true
	}
}

// sendBoundedAck writes a datagram with an ACK of the packets received up
// to ackBound (see pathSet) and returns its length (0: nothing to send, or
// the 3x limit holds it back). It is not ack-eliciting and not tracked: the
// next ACK the connection sends covers it. The second copy (second) is one
// byte longer, as for ackRepeat: segmentation offload does not send both
// as one unit.
func (c *Conn) sendBoundedAck(now time.Time, buf []byte, second bool) int {
	p := c.paths
	credit := c.advertisedMaxData()
	k, ok := c.acks.encode(buf[headerLen:headerLen], p.ackBound, p.ackBoundAt, now, credit)
	if !ok {
		return 0
	}
	n := headerLen + k
	if second {
		buf[n] = framePadding
		n++
	}
	if !c.pathAllows(p.current, n+trailerLenAt(c.writeLevel())) {
		p.stats.AmplificationLimited++
		return 0
	}
	size := c.seal(buf, n)
	c.creditSent(credit)
	return size
}

// onPathDatagram accounts a datagram of size bytes that arrived from from
// (before it is parsed): what the unvalidated current address sent raises
// its allowance.
func (c *Conn) onPathDatagram(from netip.AddrPort, size int) {
	if p := c.paths; p != nil && !p.validated && from == p.current {
		p.recvd += uint64(size)
	}
}

// onPathPacket follows an accepted packet pn of size bytes from from: the
// connection moves there if from is not the current address and the packet
// is the newest so far and not a probe; such a packet from the current
// address while it is being validated gives it pathValidationPTOs more (a
// peer that keeps sending from there is there: its answers may have been
// lost, while a spoofer's single copy is not followed by newer packets).
func (c *Conn) onPathPacket(now time.Time, from netip.AddrPort, pn uint64, size int, newest, probing bool) {
	if c.paths != nil {
		c.paths.sentFrom(now, from, pn, size, false)
	}
	if !newest || probing || !c.life.established() {
		return
	}
	p := c.pathSet()
	if from == p.current {
		if !p.validated {
			p.deadline = c.timers.offset(now.Add(pathValidationPTOs * c.recovery.pto()))
		}
		return
	}
	// Back to the candidate (the peer's newest packet from the address a
	// spoofer's copy moved the connection away from): the address left in
	// between is no place to return to. (Taking it as the candidate, as a
	// move to a third address does, lost the candidate's counters, and its
	// failure led to the spoofer's address: TestSim/loss10 seed 12430.)
	returning := !p.validated && p.candidate.IsValid() && from == p.candidate
	switch {
	case p.validated:
		p.fallback, p.candidate = p.current, netip.AddrPort{}
	case returning:
	case p.current != p.fallback:
		p.candidate, p.candidateRecvd, p.candidateSent = p.current, p.recvd, p.sent
	}
	left := p.current
	p.current, p.movedBy = from, pn
	p.stats.Migrations++
	c.unreachableProbes = 0 // a port-unreachable hint was about the address left
	// (Called before the packet is recorded as received.)
	p.ackBound, p.ackBounded = c.acks.largest()
	p.ackBoundAt, p.reackDue = c.acks.largestAt, 0
	// The newest packet, from the peer (or a copy of it): what was
	// acknowledged to the address left may be lost, and a peer with
	// nothing else to send would wait for its backed-off probe timeout
	// to learn what arrived. Every packet number acknowledged is at most
	// this packet's, so the peer sent it. To an address not yet validated
	// that waits for its validation: what it may be sent is the
	// challenge's (a spoofer's address never gets it).
	p.ackOnValidation = true
	p.challengeDue, p.nextChallenge, p.deadline = false, 0, 0
	if from == p.fallback {
		// Back to the last validated address (the end of a spurious
		// move): no challenge needed.
		p.validated, p.candidate = true, netip.AddrPort{}
		p.ackOnValidation = false
		c.acks.sendNow()
		c.pathRestored()
		if c.debugOn() {
			c.debug("rudp: peer returned to its validated address", slog.String("addr", from.String()))
		}
		c.tracePath(left, from, true)
		return
	}
	p.recvd, p.sent = uint64(size), 0
	if returning {
		p.recvd, p.sent = p.candidateRecvd+uint64(size), p.candidateSent
		p.candidate = netip.AddrPort{}
	}
	c.validate(now)
	if c.debugOn() {
		c.debug("rudp: peer address changed, validating", slog.String("addr", from.String()))
	}
	c.tracePath(left, from, false)
}

// validate starts the validation of the current address.
func (c *Conn) validate(now time.Time) {
	p := c.paths
	p.validated = false
	if p.rng == nil {
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], c.pathSeed)
		p.rng = rand.NewChaCha8(seed)
	}
	binary.LittleEndian.PutUint64(p.challenge[:], p.rng.Uint64())
	p.challengeDue = true
	p.deadline = c.timers.offset(now.Add(pathValidationPTOs * c.recovery.pto()))
}

// onPathChallenge answers the peer's challenge, on the path it came by.
func (c *Conn) onPathChallenge(from netip.AddrPort, data *[pathDataLen]byte) {
	p := c.pathSet()
	p.response, p.responseTo, p.responseDue = *data, from, true
}

// onPathResponse validates the current address if data answers its
// challenge (from wherever it arrives: RFC 9000 §8.2.2 — enforcing the path
// would let an attacker block a migration).
func (c *Conn) onPathResponse(data *[pathDataLen]byte) {
	p := c.paths
	if p == nil || p.validated || p.deadline == 0 || *data != p.challenge {
		return
	}
	p.validated = true
	p.fallback, p.candidate = p.current, netip.AddrPort{}
	p.challengeDue, p.nextChallenge, p.deadline = false, 0, 0
	p.stats.Validated++
	if p.ackOnValidation {
		p.ackOnValidation = false
		c.acks.sendNow()
	}
	c.pathRestored()
	if c.debugOn() {
		c.debug("rudp: peer address validated", slog.String("addr", p.current.String()))
	}
	c.tracePath(p.current, p.current, true)
}

// pathRestored follows the end of a spell on an unvalidated address (it
// was validated, or the connection returned to the last validated one):
// the probe timeouts that fired meanwhile, while the 3x limit held back
// what they would have sent, say nothing about the path now in use, so
// their backoff is dropped and the probe timer re-armed from it.
func (c *Conn) pathRestored() {
	if c.ptoCount > 0 {
		c.ptoCount = 0
		c.armPTO()
	}
}

// pathValidated reports whether the peer's current address is validated.
func (c *Conn) pathValidated() bool { return c.paths == nil || c.paths.validated }

// pathTimeout returns the earliest path timer offset (0: none).
func (p *pathSet) timeout() int64 {
	t := p.deadline
	if p.nextChallenge != 0 && (t == 0 || p.nextChallenge < t) {
		t = p.nextChallenge
	}
	return t
}

// onPathTimeout fires the path timers due at now (offset at).
func (c *Conn) onPathTimeout(now time.Time, at int64) {
	p := c.paths
	if p.deadline != 0 && p.deadline <= at {
		p.stats.ValidationsFailed++
		p.challengeDue, p.nextChallenge, p.deadline = false, 0, 0
		if p.candidate.IsValid() && p.candidate != p.current {
			if c.debugOn() {
				c.debug("rudp: peer address failed validation, back to the one before",
					slog.String("addr", p.current.String()), slog.String("to", p.candidate.String()))
			}
			c.tracePath(p.current, p.candidate, false)
			p.current, p.recvd, p.sent = p.candidate, p.candidateRecvd, p.candidateSent
			p.candidate = netip.AddrPort{}
			p.reackDue, p.ackOnValidation = p.reacks(), false
			c.validate(now)
			return
		}
		if c.debugOn() {
			c.debug("rudp: peer address failed validation, returning",
				slog.String("addr", p.current.String()), slog.String("to", p.fallback.String()))
		}
		c.tracePath(p.current, p.fallback, true)
		p.current, p.validated = p.fallback, true
		p.candidate = netip.AddrPort{}
		p.reackDue, p.ackOnValidation = p.reacks(), false
		c.pathRestored()
		return
	}
	if p.nextChallenge != 0 && p.nextChallenge <= at {
		p.nextChallenge = 0
		p.challengeDue = !p.validated
	}
}
