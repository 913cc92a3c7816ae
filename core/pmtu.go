package core

import (
	"log/slog"
	"time"
)

// Datagram packetization layer path MTU discovery (DPLPMTUD, RFC 8899,
// as RFC 9000 section 14.3 applies it to QUIC).
//
// Every path starts at BaseDatagramSize bytes of UDP payload, which every
// IPv6 path carries and which the handshake itself confirms (a HELLO is
// padded to it and acknowledged). Once the connection is established and
// has more data to send than one datagram of the size in use carries (a
// packet of data left and more waits: maybeStartPathMTU), the sender
// searches upwards with probes: a packet of only PING and PADDING, padded
// to the size tried. A connection of small messages (request-response, a
// dial and a few round trips) gains nothing from larger datagrams and never
// probes: searching from the handshake's end cost every loopback dial three
// probes of 64 KiB each way (RFC 8899 section 5.1.1 lets probing wait until
// the application needs the size). A size is tried with pmtuMaxProbes probes, sent
// one after the other without waiting (so that a size too large costs one
// round trip, not three): the first acknowledged raises the datagram size
// (the PLPMTU) to it; all of them lost mark it as too large. The search is a binary search between the
// largest size confirmed and the smallest known to fail (at first
// Config.MaxDatagramSize, which is tried first: most paths carry it), and
// ends when the two are less than pmtuSearchGranularity apart. (The peer's
// HELLO says the largest datagram it reads; the search stops there too.) A probe's
// loss is not congestion and not a loss of data: it neither reduces the
// congestion window nor retransmits anything.
//
// A completed search whose size is below the ceiling is tried again
// pmtuRaiseInterval later (the path may have grown). A path whose MTU shrank
// below the size in use (a route change, a tunnel) is a black hole: every
// full-sized packet vanishes while small ones still arrive. It is detected
// by pmtuBlackHoleLosses full-sized packets (fullSized) declared lost with
// no full-sized packet acknowledged after them (only smaller ones were). A
// second probe timeout in a row whose oldest packet (probes aside) is
// larger than BaseDatagramSize (nothing at all came back) makes the next
// probe a PING of BaseDatagramSize, so that small packets are acknowledged
// and large ones declared lost if the path is a black hole, while a
// stalled peer or path acknowledges both in the end. Either way the size
// falls back to BaseDatagramSize and the search starts again; the data of
// the lost packets is sent again in pieces that fit (see splitFragment).
const (
	// BaseDatagramSize is the datagram size every path starts at
	// (RFC 8899's BASE_PLPMTU for UDP over IPv6: 1280 bytes of IPv6 MTU
	// less 40 + 8 bytes of headers, rounded down as QUIC does).
	BaseDatagramSize = MinHelloDatagram

	pmtuMaxProbes         = 3                // RFC 8899 MAX_PROBES
	pmtuSearchGranularity = 16               // a search ends when lo and hi are closer than this
	pmtuRaiseInterval     = 10 * time.Minute // RFC 8899 PMTU_RAISE_TIMER
	pmtuBlackHoleLosses   = 3                // large packets lost, none acked after them
	pmtuBlackHolePTOs     = 2                // probe timeouts in a row with a large packet oldest
)

// pathMTU is the search's state. A Conn holds it behind a pointer from the
// search's start, and only when Config.MaxDatagramSize leaves room to
// search: a connection limited to BaseDatagramSize, or one that never has
// more to send than a datagram, never allocates it.
type pathMTU struct {
	size int // the PLPMTU: the largest datagram data travels in
	max  int // the search's ceiling: Config.MaxDatagramSize, or the peer's if smaller
	// The search: lo is confirmed, hi is the largest size not known to
	// fail; searching is false once they converged (or hi == lo).
	lo, hi    int
	searching bool
	// trying is the size being probed (0: pick the next); sent and lost
	// count its probes. yieldingSince: since when its probes have let
	// waiting data go first (zero: they are not; see probeYields).
	trying, sent, lost int
	yieldingSince      time.Time
	// raiseAt: when a completed search below max starts again.
	raiseAt time.Time
	// Black hole detection: the newest acknowledged packet larger than
	// BaseDatagramSize (plus one; 0 for none), and how many packets that
	// large were declared lost after it.
	largeAcked uint64
	largeLost  int
	blackHoles int // fallbacks so far
	// smallProbe: a probe timeout found nothing acknowledged for the
	// second time in a row with a large packet oldest; the next probe is a
	// PING in a datagram of BaseDatagramSize. If it is acknowledged while
	// the large packets sent before it are declared lost, the path is a
	// black hole (onLargeLost); if they are acknowledged too, the peer or
	// the path was only slow.
	// smallPN is the newest such PING's packet number plus one (0: none
	// out), smallAcked whether it was acknowledged; a larger packet sent
	// before it and acknowledged clears smallPN (the path carries them).
	smallProbe bool
	smallAcked bool
	smallPN    uint64
}

// datagramSize returns the largest datagram PollTransmit sends other than
// a probe.
func (c *Conn) datagramSize() int {
	if c.pmtu == nil {
		return min(BaseDatagramSize, c.cfg.MaxDatagramSize)
	}
	return c.pmtu.size
}

// DatagramSize returns the largest datagram the connection sends now other
// than a path MTU probe: BaseDatagramSize at first, then what probing
// confirmed the path carries, up to Config.MaxDatagramSize. A datagram
// PollTransmit returns that is longer is a probe (it carries no data).
func (c *Conn) DatagramSize() int { return c.datagramSize() }

// maybeStartPathMTU begins the search (established, after a packet of
// data was written) if the connection has more data to send than that
// packet carried and room to search. (Send starts it too, when the data
// waiting to be sent, with the message, is more than a datagram's
// fragment carries: a message cut in two, say.)
func (c *Conn) maybeStartPathMTU() {
	if c.pmtu == nil && c.cfg.MaxDatagramSize > BaseDatagramSize && c.dataSendable() {
		c.startPathMTU()
	}
}

// pmtuCeiling is the largest datagram the search may find:
// Config.MaxDatagramSize, or the peer's if smaller.
func (c *Conn) pmtuCeiling() int {
	ceiling := c.cfg.MaxDatagramSize
	if peer := c.life.peerMaxDatagram(); peer != 0 {
		// The peer reads no longer datagrams: probing them is wasted.
		ceiling = min(ceiling, peer)
	}
	return ceiling
}

// startPathMTU begins the search (the connection is established).
func (c *Conn) startPathMTU() {
	if c.pmtu != nil {
		return
	}
	ceiling := c.pmtuCeiling()
	if ceiling <= BaseDatagramSize {
		return
	}
	if c.debugOn() {
		c.debug("rudp: path MTU search started: more data waits than a datagram carries", slog.Int("ceiling", ceiling))
	}
	c.pmtu = &pathMTU{size: BaseDatagramSize, max: ceiling}
	c.pmtu.restart(BaseDatagramSize)
	c.setDatagramSize(BaseDatagramSize)
}

// restart starts a search from confirmed size lo.
func (p *pathMTU) restart(lo int) {
	p.lo, p.hi = lo, p.max
	p.trying, p.sent, p.lost = 0, 0, 0
	p.searching = p.hi > p.lo
	p.raiseAt = time.Time{}
}

// next returns the size to try next.
func (p *pathMTU) next() int {
	if p.hi == p.max {
		// First try the ceiling: most paths carry it, and then one
		// round trip settles the search.
		return p.max
	}
	return p.lo + (p.hi-p.lo+1)/2
}

// probeWanted returns the size of the probe to send now, 0 for none.
func (c *Conn) probeWanted(now time.Time) int {
	p := c.pmtu
	if p == nil || !c.life.established() || c.life.closeRequested() || c.life.peerClosed() {
		return 0
	}
	if !p.searching {
		if p.raiseAt.IsZero() || now.Before(p.raiseAt) {
			return 0
		}
		p.restart(p.size)
		if !p.searching {
			return 0
		}
	}
	if p.trying == 0 {
		p.trying, p.sent, p.lost = p.next(), 0, 0
		p.yieldingSince = time.Time{}
	}
	if p.sent >= pmtuMaxProbes {
		return 0 // all sent: wait for them
	}
	return p.trying
}

// probeFits reports whether a probe of size ps may go now (sendAllowed
// gates it further, as data of the size in use). The first of its size in
// flight always may; another only while the congestion window keeps room
// for a datagram of data beside it: two probes of a large ceiling (64 KiB,
// over loopback) fill a new connection's initial window (two datagrams of
// the ceiling), and the first message the application wrote waited a
// round trip for their acknowledgement.
func (c *Conn) probeFits(ps int) bool {
	p := c.pmtu
	return p.sent == p.lost || c.recovery.bytesInFlight+ps+c.datagramSize() <= c.recovery.cc.Window()
}

// probeYields reports whether a probe wanted now lets the data waiting
// (wantData) go first, and notes since when it does: for up to a smoothed
// round trip of data waiting. Sent while data waits, a probe is paced at
// its size, as that data is (recovery.onSent), and the pacer then holds
// the data back until it has earned the probe's bytes back: the first
// message an application wrote after the handshake waited milliseconds
// behind 64 KiB probes (in Manual mode, until the application next drove
// the socket). Data first, the probe follows it, for free, once none
// waits; a bulk sender, which always has data waiting, lets the probes go
// first after a round trip.
func (c *Conn) probeYields(now time.Time, wantData bool) bool {
	p := c.pmtu
	if !wantData {
		p.yieldingSince = time.Time{}
		return false
	}
	if p.yieldingSince.IsZero() {
		p.yieldingSince = now
	}
	return now.Before(p.yieldingSince.Add(c.recovery.rtt.smoothed))
}

// onProbeSent counts a probe of the size being tried.
func (p *pathMTU) onProbeSent() { p.sent++ }

// onProbeAcked: the path carries size bytes.
func (c *Conn) onProbeAcked(now time.Time, size int) {
	p := c.pmtu
	if !p.searching || size <= p.lo || size > p.hi {
		return // of an earlier search, or a size settled since
	}
	p.lo = size
	if size >= p.trying {
		p.trying = 0
	}
	if size > p.size {
		if c.debugOn() {
			c.debug("rudp: path MTU grew: a probe was acknowledged", slog.Int("from", p.size), slog.Int("size", size))
		}
		c.setDatagramSize(size)
	}
	c.settleSearch(now)
}

// onProbeLost: a probe of size bytes was declared lost.
func (c *Conn) onProbeLost(now time.Time, size int) {
	p := c.pmtu
	if !p.searching || size != p.trying {
		return // of an earlier search, or a size settled since
	}
	p.lost++
	if p.lost < pmtuMaxProbes {
		return // random loss, maybe: the others may still arrive
	}
	p.hi, p.trying = size-1, 0
	c.settleSearch(now)
}

// settleSearch ends the search once lo and hi have converged.
func (c *Conn) settleSearch(now time.Time) {
	p := c.pmtu
	if p.hi-p.lo >= pmtuSearchGranularity && p.lo < p.hi {
		return
	}
	p.searching = false
	if p.lo < p.max {
		p.raiseAt = now.Add(pmtuRaiseInterval)
	}
	if c.debugOn() {
		c.debug("rudp: path MTU search complete", slog.Int("size", p.size))
	}
}

// fullSized reports whether a packet of size bytes is one a path that
// stopped carrying the datagram size in use would drop: within the search's
// granularity of that size and larger than BaseDatagramSize. (Packets cut
// for an earlier, smaller size are not: their loss says nothing of this one.)
func (p *pathMTU) fullSized(size int) bool {
	return size > BaseDatagramSize && size > p.size-pmtuSearchGranularity
}

// onLargeAcked notes an acknowledged packet of size bytes numbered pn.
func (c *Conn) onLargeAcked(pn uint64, size int) {
	p := c.pmtu
	if p == nil {
		return
	}
	if p.smallPN != 0 {
		switch {
		case pn+1 == p.smallPN:
			p.smallAcked = true
		case pn+1 < p.smallPN && size > BaseDatagramSize:
			p.smallPN, p.smallAcked = 0, false // a large packet got through: a stall
		}
	}
	if !p.fullSized(size) {
		return
	}
	if pn+1 > p.largeAcked {
		p.largeAcked = pn + 1
	}
	p.largeLost = 0
}

// onLargeLost notes a packet of size bytes numbered pn declared lost, and
// falls back if the path became a black hole for packets that large: it is
// the pmtuBlackHoleLosses-th full-sized packet lost with none acknowledged
// after them (smaller packets were, or the loss would not be known).
func (c *Conn) onLargeLost(now time.Time, pn uint64, size int) {
	p := c.pmtu
	if p == nil || p.size <= BaseDatagramSize {
		return
	}
	if p.smallAcked && pn+1 < p.smallPN && size > BaseDatagramSize {
		// After a silence, a small probe got through and a larger packet
		// sent before it did not, and none of those did: a black hole.
		c.pathBlackHole(now)
		return
	}
	if !p.fullSized(size) || pn+1 <= p.largeAcked {
		return
	}
	p.largeLost++
	if p.largeLost >= pmtuBlackHoleLosses {
		c.pathBlackHole(now)
	}
}

// pathBlackHole falls back to BaseDatagramSize and searches again.
func (c *Conn) pathBlackHole(now time.Time) {
	p := c.pmtu
	if c.debugOn() {
		c.debug("rudp: path MTU black hole: back to the base size", slog.Int("from", p.size), slog.Int("size", BaseDatagramSize))
	}
	p.largeLost = 0
	p.largeAcked = c.nextPN // packets sent before now prove nothing
	p.smallProbe, p.smallAcked, p.smallPN = false, false, 0
	p.restart(BaseDatagramSize)
	p.blackHoles++
	c.setDatagramSize(BaseDatagramSize)
}

// setDatagramSize makes size the datagram size of new packets. Messages are
// cut into fragments that fit it from now on; fragments cut for a larger
// size are split when sent (splitFragment).
func (c *Conn) setDatagramSize(size int) {
	c.traceMTU(c.datagramSize(), size)
	if c.pmtu != nil {
		c.pmtu.size = size
	}
	payload := fragPayloadFor(size) - c.sealOverhead()
	if payload != c.fragPayload {
		c.fragPayload = payload
		c.chunkFree = nil // pooled chunks are of the old size
	}
}

// fragPayloadFor is the data one fragment carries in a datagram of size bytes.
func fragPayloadFor(size int) int {
	return size - PacketOverhead - maxMsgHeader - ackFrameReserve
}

// appendProbe writes a path MTU probe of size bytes into buf: a PING, then
// PADDING. It returns the body's length (sealPacket adds the trailer).
func appendProbe(buf []byte, size int) int {
	n := headerLen
	buf[n] = framePing
	n++
	end := size - trailerLen
	clear(buf[n:end])
	return end
}

// suspectBlackHole asks for a small probe if datagrams larger than
// BaseDatagramSize are in use (a probe timeout found the path silent
// again). Silence alone does not tell a path that now drops large
// datagrams from a peer or path that stalled (a receiver not scheduled
// for a while, a burst of delay): falling back on it would cut every
// queued fragment to the base size for nothing. A small PING that is
// acknowledged while the large packets before it are not does tell
// (RFC 8899 §4.3); onLargeLost then falls back.
func (c *Conn) suspectBlackHole() {
	if c.pmtu != nil && c.pmtu.size > BaseDatagramSize {
		c.pmtu.smallProbe = true
	}
}

// smallProbeDue reports whether the next probe is suspectBlackHole's PING
// of BaseDatagramSize.
func (c *Conn) smallProbeDue() bool { return c.pmtu != nil && c.pmtu.smallProbe }
