package core

import (
	"crypto/subtle"
	"log/slog"
	"time"
)

// Failing fast: learning in about a round trip that the peer is gone,
// from a stateless reset (the peer's host runs rudp but lost the
// connection) or from an ICMP port-unreachable report (nothing listens
// there any more). docs/PROTOCOL.md §14 is the description.

// unreachablePTOs is how many probe timeouts a port-unreachable report
// about an established connection must go unanswered by any
// acknowledgement before the connection ends: ICMP is not authenticated,
// so it is only a hint, confirmed by the peer's silence.
const unreachablePTOs = 2

// handleReset takes a stateless reset (see AppendReset). It ends the
// connection with ErrReset if the reset echoes the peer's connection ID
// and the number of a packet we sent that the peer never acknowledged;
// anything else is a forgery, a stale reset or a mistake, and is dropped.
//
// A protected connection takes only a reset that carries the peer's
// stateless reset token (AppendTokenReset), which the peer's authenticated
// transport parameters told it: the connection ID and packet number a
// reset echoes are in the clear for anyone on the path to copy, the token
// is not (the peer's Endpoint sends it only once it lost the connection).
// The packet number is not checked then (the token proves the sender).
func (c *Conn) handleReset(h Header, body []byte) {
	if c.sec != nil {
		c.handleTokenReset(h, body)
		return
	}
	if len(body) != 0 || c.remoteCID == 0 || h.DstCID != c.remoteCID {
		c.stats.DatagramsDropped++
		return
	}
	pn := unwrap32(c.nextPN, h.PacketNumber)
	if pn >= c.nextPN || pn < uint64(c.cfg.InitialSequence) || (c.anyAcked && pn <= c.largestAcked) {
		// Never sent, or from before the newest acknowledgement: the
		// peer had the connection then.
		c.stats.DatagramsDropped++
		return
	}
	c.takeReset(pn)
}

// handleTokenReset is handleReset on a protected connection: the reset
// must carry the token of the peer's connection ID that the peer's
// authenticated transport parameters gave (compared in constant time);
// one that does not is dropped as unauthenticated.
func (c *Conn) handleTokenReset(h Header, body []byte) {
	s := c.sec
	if len(body) != ResetTokenLen || c.remoteCID == 0 || h.DstCID != c.remoteCID {
		c.stats.DatagramsDropped++
		return
	}
	var zero [ResetTokenLen]byte
	if !s.paramsOK || s.peerResetToken == zero || subtle.ConstantTimeCompare(body, s.peerResetToken[:]) != 1 {
		c.stats.DroppedUnauthenticated++
		return
	}
	c.takeReset(unwrap32(c.nextPN, h.PacketNumber))
}

// takeReset ends the connection on a stateless reset that passed its
// checks (pn: the packet number it echoes, for the log).
func (c *Conn) takeReset(pn uint64) {
	if c.life.closeWait() {
		// The peer closed gracefully and forgot the connection: what it
		// sent is here, and the application reads it to its io.EOF; our
		// own close ends the connection (its CLOSE meets this reset).
		c.stats.DatagramsDropped++
		return
	}
	if c.debugOn() {
		c.debug("rudp: stateless reset: the peer has no state for this connection", slog.Uint64("pn", pn))
	}
	c.peerGone(ErrReset)
}

// HandleUnreachable takes a report that a datagram this connection sent
// came back as port unreachable (an ICMP error the caller's socket
// received, matched to the connection by the peer's address). During the
// handshake the connection ends at once with ErrUnreachable, as TCP's
// connect fails on a refusal. An established connection takes it as a
// hint only, since anyone can send an ICMP error: it makes sure something
// the peer must acknowledge is in flight, and ends with ErrUnreachable if
// unreachablePTOs probe timeouts pass without any acknowledgement.
func (c *Conn) HandleUnreachable(now time.Time) {
	if c.life.ended() {
		return
	}
	c.traceAt(now)
	c.stats.UnreachableReports++
	if c.life.peerClosed() {
		// The peer closed gracefully: its CLOSE took effect, so all it
		// sent is here, and its port may well be closed by now. The
		// application reads to io.EOF; the report changes nothing.
		return
	}
	if c.life.handshaking() {
		if c.debugOn() {
			c.debug("rudp: port unreachable during the handshake")
		}
		c.terminate(ErrUnreachable)
		return
	}
	if c.unreachableProbes != 0 {
		return // already waiting for the peer to prove it is there
	}
	c.unreachableProbes = 1
	if c.elicitingInFlight == 0 {
		c.pingNeeded = true // the probe timer needs something in flight
	}
	c.armPTO()
}

// peerGone ends the connection because the peer is known to be gone (err
// says how). A close already under way ends as it would have: our CLOSE
// went out only after everything we sent was acknowledged.
// A peer that closed gracefully first is expected to be gone: what it sent
// before its CLOSE all arrived and waits to be read to io.EOF, so nothing
// ends (ending would discard it); our own close or the idle timer does.
func (c *Conn) peerGone(err error) {
	if c.life.closeWait() {
		c.unreachableProbes = 0
		return
	}
	if c.life.closeSent() {
		c.terminate(nil) // (an abort ends with its reason)
		return
	}
	c.terminate(err)
}
