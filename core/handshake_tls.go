package core

import (
	"context"
	"crypto/tls"
	"math/rand/v2"
	"time"
)

// tlsHandshake is TLS 1.3 through crypto/tls's QUIC API (RFC 9001's use
// of TLS): crypto/tls hands out the handshake's bytes per encryption level
// and the traffic secrets; the transport parameters travel in TLS's
// quic_transport_parameters extension, so the handshake authenticates
// them. rudp's levels are QUIC's without 0-RTT (levelInitial,
// levelHandshake, levelApp). crypto/tls runs the handshake on a goroutine
// of its own, handed control synchronously (Start, HandleData and
// NextEvent return only when it waits again), so that the connection's
// calls stay deterministic; close ends it.
type tlsHandshake struct {
	q    *tls.QUICConn
	out  handshakeOut
	now  time.Time // the time of the current call: crypto/tls's clock
	done bool
}

// newTLSHandshake makes one side of a TLS handshake over cfg (cloned: its
// Time and Rand become the connection's, and TLS 1.3 is the only
// version), sending the transport parameters local.
func newTLSHandshake(cfg *tls.Config, server bool, rng rand.Source, local []byte, out handshakeOut) *tlsHandshake {
	h := &tlsHandshake{out: out}
	c := cfg.Clone()
	c.MinVersion = tls.VersionTLS13
	c.Time = func() time.Time { return h.now }
	c.Rand = randReader{rng}
	qc := &tls.QUICConfig{TLSConfig: c}
	if server {
		h.q = tls.QUICServer(qc)
	} else {
		h.q = tls.QUICClient(qc)
	}
	h.q.SetTransportParameters(local)
	return h
}

func (h *tlsHandshake) start(now time.Time) error {
	h.now = now
	if err := h.q.Start(context.Background()); err != nil {
		return handshakeError("%w", err)
	}
	return h.events()
}

func (h *tlsHandshake) handleData(now time.Time, l keyLevel, data []byte) error {
	h.now = now
	if err := h.q.HandleData(quicLevel(l), data); err != nil {
		return handshakeError("%w", err)
	}
	return h.events()
}

// events passes crypto/tls's events on to the connection.
func (h *tlsHandshake) events() error {
	for {
		e := h.q.NextEvent()
		var err error
		switch e.Kind {
		case tls.QUICNoEvent:
			return nil
		case tls.QUICWriteData:
			h.out.writeCrypto(levelOfQUIC(e.Level), e.Data)
		case tls.QUICSetReadSecret:
			err = h.out.readSecret(levelOfQUIC(e.Level), e.Suite, e.Data)
		case tls.QUICSetWriteSecret:
			err = h.out.writeSecret(levelOfQUIC(e.Level), e.Suite, e.Data)
		case tls.QUICTransportParameters:
			var p transportParams
			if p, err = parseTransportParams(e.Data); err != nil {
				err = handshakeError("the peer's transport parameters are malformed")
			} else {
				err = h.out.peerParams(&p)
			}
		case tls.QUICHandshakeDone:
			h.done = true
		case tls.QUICErrorEvent:
			return handshakeError("%w", e.Err)
		}
		// (QUICTransportParametersRequired never comes: they are set
		// before Start. Without 0-RTT and session events, neither do
		// QUICRejectedEarlyData, QUICResumeSession, QUICStoreSession.)
		if err != nil {
			return err
		}
	}
}

func (h *tlsHandshake) complete() bool { return h.done }

func (h *tlsHandshake) connectionState() tls.ConnectionState { return h.q.ConnectionState() }

func (h *tlsHandshake) close() { h.q.Close() }

// quicLevel is crypto/tls's encryption level for l.
func quicLevel(l keyLevel) tls.QUICEncryptionLevel {
	switch l {
	case levelHandshake:
		return tls.QUICEncryptionLevelHandshake
	case levelApp:
		return tls.QUICEncryptionLevelApplication
	}
	return tls.QUICEncryptionLevelInitial
}

// levelOfQUIC is rudp's key level for crypto/tls's level. (0-RTT, the
// Early level, is never enabled: no session events, no early data.)
func levelOfQUIC(l tls.QUICEncryptionLevel) keyLevel {
	switch l {
	case tls.QUICEncryptionLevelHandshake:
		return levelHandshake
	case tls.QUICEncryptionLevelApplication:
		return levelApp
	}
	return levelInitial
}
