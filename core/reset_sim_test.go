package core_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// The authenticated stateless reset of a protected connection
// (docs/PROTOCOL.md §14.3), in the simulator: a listener Endpoint with
// clients, which then loses its state as a restarted process does.

// restartServer replaces the listener's Endpoint with a new one, as a
// restarted process's: it knows no connection, and its reset key is key.
// The old connections are forgotten with the old Endpoint.
func restartServer(t testing.TB, s *epSim, seed uint64, cfg *core.Config, key []byte) {
	t.Helper()
	ep, err := core.NewEndpoint(&core.EndpointConfig{Listen: true, Conn: cfg,
		ResetKey: key, Rand: rand.NewPCG(seed, 0x7e57a7)})
	require.NoError(t, err)
	s.server.ep, s.server.conns = ep, epConns{}
}

// resetKeys are two reset keys: the listener's before its restart, and
// another.
var resetKeys = [2][]byte{bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32)}

// TestSimSecureServerRestart: a protected client whose listener restarted
// with the same reset key learns it from the first packet it sends after:
// its connection ends with ErrReset about a round trip later (the link's
// latency is 10 ms each way), its next Recv and Send fail with it. With
// another key the listener's resets carry tokens the client was never
// told: each is dropped as unauthenticated and the client stays.
func TestSimSecureServerRestart(t *testing.T) {
	st := newSimTLS(t)
	psk := bytes.Repeat([]byte{0x5a}, 32)
	const latency = 10 * time.Millisecond
	seeds := 20
	if testing.Short() {
		seeds = 4
	}
	for _, mode := range []string{"TLS", "PSK"} {
		for _, sameKey := range []bool{true, false} {
			name := mode + "/samekey"
			if !sameKey {
				name = mode + "/otherkey"
			}
			t.Run(name, func(t *testing.T) {
				ccfg, scfg := protectedConfig(st.client, nil), protectedConfig(st.server, nil)
				if mode == "PSK" {
					ccfg, scfg = protectedConfig(nil, psk), protectedConfig(nil, psk)
				}
				epSeeds(t, seeds, func(seed uint64) error {
					seedCrypto(t, seed)
					s, err := secureSimWith(t, seed, sim.LinkConfig{Latency: latency}, 1, ccfg,
						core.EndpointConfig{Conn: scfg, ResetKey: resetKeys[0]})
					if err != nil {
						return err
					}
					c := s.clients.conns[0]
					if !c.Established() {
						return fmt.Errorf("not established: %v", c.Err())
					}
					key := resetKeys[0]
					if !sameKey {
						key = resetKeys[1]
					}
					restartServer(t, s, seed, scfg, key)
					unauth := c.Stats().DroppedUnauthenticated
					restart := s.net.Now()
					if err := c.Send(core.Delivery, []byte("after the restart")); err != nil {
						return err
					}
					s.clients.set.touch(c)
					if !sameKey {
						_ = s.net.RunUntil(c.Closed, time.Second)
						if c.Closed() {
							return fmt.Errorf("a reset under another key ended the client: %v", c.Err())
						}
						if c.Stats().DroppedUnauthenticated == unauth || s.server.ep.Stats().ResetsSent == 0 {
							return fmt.Errorf("no reset dropped as unauthenticated (%d resets sent)", s.server.ep.Stats().ResetsSent)
						}
						return nil
					}
					if err := s.net.RunUntil(c.Closed, 30*time.Second); err != nil {
						return fmt.Errorf("after the restart: %w", err)
					}
					took := s.net.Now().Sub(restart)
					if !errors.Is(c.Err(), core.ErrReset) {
						return fmt.Errorf("the client ended with %v, want ErrReset", c.Err())
					}
					if _, err := c.Recv(); !errors.Is(err, core.ErrReset) {
						return fmt.Errorf("Recv after the reset: %v", err)
					}
					if err := c.Send(core.Delivery, []byte("x")); !errors.Is(err, core.ErrReset) {
						return fmt.Errorf("Send after the reset: %v", err)
					}
					if seed == 0 {
						t.Logf("seed 0: the client learnt of the restart %v after it", took)
					}
					// A round trip (the packet out, the reset back), with
					// room for the send's pacing: far from the idle timeout.
					if took > 3*2*latency {
						return fmt.Errorf("the client learnt of the restart %v after it", took)
					}
					return nil
				})
			})
		}
	}
}

// TestSimSecureResetForged: resets a protected connection must not take,
// each made by someone who lacks the token of its peer's connection ID:
// one with a wrong token, one with the token of another connection of the
// same listener (replayed to this one), one with the right ID and packet
// number but no token (a plaintext reset), each from the listener's
// address and from another. Every one is dropped and counted, and the
// connection goes on: a message sent after them arrives.
func TestSimSecureResetForged(t *testing.T) {
	st := newSimTLS(t)
	seedCrypto(t, 1)
	s, err := secureSimWith(t, 1, sim.LinkConfig{Latency: 10 * time.Millisecond}, 2, protectedConfig(st.client, nil),
		core.EndpointConfig{Conn: protectedConfig(st.server, nil), ResetKey: resetKeys[0]})
	require.NoError(t, err)
	c, other := s.clients.conns[0], s.clients.conns[1]
	require.True(t, c.Established() && other.Established())
	ep := s.clients.eps[0]
	// The tokens the listener's Endpoint would send for each connection.
	mine, others := s.server.ep.ResetToken(c.RemoteCID()), s.server.ep.ResetToken(other.RemoteCID())
	require.NotEqual(t, mine, others)
	var wrong [core.ResetTokenLen]byte
	copy(wrong[:], "not the token...")
	h := core.Header{Type: core.PacketApp, DstCID: c.RemoteCID(), PacketNumber: 7}
	forged := map[string][]byte{
		"wrong token":                  core.AppendTokenReset(nil, h, &wrong),
		"another connection's token":   core.AppendTokenReset(nil, h, &others),
		"no token (a plaintext reset)": core.AppendReset(nil, h),
	}
	for name, d := range forged {
		for _, from := range []netip.AddrPort{epServerAddr, netip.MustParseAddrPort("198.51.100.7:4433")} {
			before := c.Stats()
			now := s.net.Now()
			ev := ep.HandleDatagram(now, from, d)
			require.Equal(t, c, ev.Conn, "%s from %v: routed to the connection", name, from)
			ep.Deliver(now, c, from, d)
			after := c.Stats()
			require.False(t, c.Closed(), "%s from %v ended the connection: %v", name, from, c.Err())
			require.Equal(t, before.DroppedUnauthenticated+before.DatagramsDropped+1, after.DroppedUnauthenticated+after.DatagramsDropped,
				"%s from %v: dropped and counted", name, from)
			require.Equal(t, epServerAddr, ep.Addr(c), "%s from %v moved the connection", name, from)
		}
	}
	// The connection goes on both ways.
	require.NoError(t, c.Send(core.Delivery, []byte("still here")))
	s.clients.set.touch(c)
	var got []byte
	require.NoError(t, s.net.RunUntil(func() bool {
		for _, sc := range s.server.all {
			if m, _ := sc.Recv(); m.Data != nil {
				got = m.Data
			}
		}
		return got != nil
	}, 5*time.Second))
	require.Equal(t, "still here", string(got))
	// And the genuine token ends it: the one test that it is the token
	// that decides.
	now := s.net.Now()
	d := core.AppendTokenReset(nil, h, &mine)
	ep.Deliver(now, ep.HandleDatagram(now, epServerAddr, d).Conn, epServerAddr, d)
	require.ErrorIs(t, c.Err(), core.ErrReset)
}

// TestSimSecureTokenNotInClear: no side's stateless reset token is ever
// readable on the path: a capture of every datagram of protected
// handshakes and a message each way (through loss, so that flights go
// again) holds none of the tokens the Endpoints would send. A TLS
// client's transport parameters travel in its ClientHello, in the clear,
// so it sends no token there (RFC 9000 §18.2 forbids it for QUIC's client
// likewise): its listener takes no reset for it. The listener's travel in
// EncryptedExtensions; Noise's payloads are encrypted, under the key.
func TestSimSecureTokenNotInClear(t *testing.T) {
	st := newSimTLS(t)
	psk := bytes.Repeat([]byte{0x5a}, 32)
	for _, mode := range []string{"TLS", "PSK"} {
		t.Run(mode, func(t *testing.T) {
			ccfg, scfg := protectedConfig(st.client, nil), protectedConfig(st.server, nil)
			if mode == "PSK" {
				ccfg, scfg = protectedConfig(nil, psk), protectedConfig(nil, psk)
			}
			seedCrypto(t, 3)
			var captured []byte
			link := sim.LinkConfig{Latency: 10 * time.Millisecond, Loss: 0.1,
				Filter: func(_ time.Time, b []byte) bool { captured = append(captured, b...); return true }}
			s, err := secureSim(t, 3, link, 3, ccfg, scfg)
			require.NoError(t, err)
			for _, c := range s.clients.conns {
				require.True(t, c.Established(), "%v", c.Err())
				require.NoError(t, c.Send(core.Delivery, []byte("ping")))
				s.clients.set.touch(c)
			}
			require.NoError(t, s.net.RunFor(2*time.Second))
			for i, c := range s.clients.conns {
				token := s.clients.eps[i].ResetToken(c.LocalCID())
				require.False(t, bytes.Contains(captured, token[:]), "client %d's token is in the capture", i)
			}
			for _, c := range s.server.all {
				token := s.server.ep.ResetToken(c.LocalCID())
				require.False(t, bytes.Contains(captured, token[:]), "the listener's token for %x is in the capture", c.LocalCID())
			}
		})
	}
}
