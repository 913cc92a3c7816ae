package core_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/sim"
)

// TestHandshakeCost measures each mode's handshake on a clean link with a
// 20 ms round trip: when the client is established (Dial returns) and when
// the listener's connection is, in round trips, and the bytes each side
// sent by then (the Endpoint's Retry included), the first flight's Retry
// exchange among them. It asserts the bounds the modes must keep: one
// round trip beyond plaintext for TLS's client (its Finished acknowledged),
// none for PSK's, and the listener's bytes within 3x the client's.
func TestHandshakeCost(t *testing.T) {
	st := newSimTLS(t)
	psk := bytes.Repeat([]byte{9}, 32)
	const rtt = 20 * time.Millisecond
	link := sim.LinkConfig{Latency: rtt / 2}
	type cost struct {
		client, server     time.Duration
		clientOut, servOut uint64
	}
	measure := func(ccfg, scfg *core.Config) cost {
		// Without path MTU probes, which start at the establishment.
		cc, sc := *ccfg, *scfg
		cc.MaxDatagramSize, sc.MaxDatagramSize = core.MinHelloDatagram, core.MinHelloDatagram
		s, err := secureSim(t, 1, link, 1, &cc, &sc)
		if err != nil {
			t.Fatal(err)
		}
		c := s.clients.conns[0]
		if !c.Established() || len(s.server.all) != 1 {
			t.Fatalf("not established: %v", c.Err())
		}
		var out cost
		out.clientOut = c.Stats().BytesSent
		out.servOut = s.server.all[0].Stats().BytesSent + s.server.ep.Stats().RetriesSent*35
		out.client = s.net.Now().Sub(sim.Epoch)
		return out
	}
	results := map[string]cost{
		"plaintext": measure(epSimConfig, epSimConfig),
		"TLS":       measure(protectedConfig(st.client, nil), protectedConfig(st.server, nil)),
		"PSK":       measure(protectedConfig(nil, psk), protectedConfig(nil, psk)),
	}
	for _, mode := range []string{"plaintext", "TLS", "PSK"} {
		r := results[mode]
		t.Logf("%-9s both established after %v (%.1f RTT); client sent %d bytes, listener %d (Retry included)",
			mode, r.client, float64(r.client)/float64(rtt), r.clientOut, r.servOut)
		if r.servOut > 3*r.clientOut {
			t.Errorf("%s: the listener sent %d bytes for the client's %d: over 3x", mode, r.servOut, r.clientOut)
		}
	}
	if d := results["TLS"].client - results["plaintext"].client; d > rtt+rtt/2 {
		t.Errorf("TLS takes %v more than plaintext: over one round trip", d)
	}
	if d := results["PSK"].client - results["plaintext"].client; d > rtt/2 {
		t.Errorf("PSK takes %v more than plaintext", d)
	}
}

// BenchmarkHandshake is the CPU cost of one connection's handshake, both
// sides, in each mode (a simulated clean link: the protocol's work, not
// the network's): its rate is the handshakes per second one core can do.
func BenchmarkHandshake(b *testing.B) {
	st := newSimTLS(b)
	psk := bytes.Repeat([]byte{9}, 32)
	for _, mode := range []struct {
		name       string
		ccfg, scfg *core.Config
	}{
		{"plaintext", epSimConfig, epSimConfig},
		{"TLS", protectedConfig(st.client, nil), protectedConfig(st.server, nil)},
		{"PSK", protectedConfig(nil, psk), protectedConfig(nil, psk)},
	} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			link := sim.LinkConfig{Latency: time.Millisecond}
			for i := 0; b.Loop(); i++ {
				s, err := secureSim(b, uint64(i), link, 1, mode.ccfg, mode.scfg)
				if err != nil || !s.clients.conns[0].Established() {
					b.Fatal(err, s.clients.conns[0].Err())
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}
