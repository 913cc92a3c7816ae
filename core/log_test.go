package core

import (
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/rudp-go/rudp/internal/logcapture"
)

// captureHandler is logcapture's Handler with the assertion this
// file's tests make.
type captureHandler struct{ logcapture.Handler }

func (h *captureHandler) find(msg string) []logcapture.Record { return h.Find(msg) }

// one returns the only record whose message is msg, failing t otherwise,
// after checking that it carries every key in keys.
func (h *captureHandler) one(t *testing.T, msg string, keys ...string) logcapture.Record {
	t.Helper()
	got := h.find(msg)
	if len(got) != 1 {
		t.Fatalf("%d events %q, want 1; all: %+v", len(got), msg, h.Records())
	}
	for _, k := range keys {
		if _, ok := got[0].Attrs[k]; !ok {
			t.Errorf("event %q lacks attribute %q: %v", msg, k, got[0].Attrs)
		}
	}
	return got[0]
}

// epExchange moves datagrams between a client Endpoint with its connection
// and a listening Endpoint, advancing the clock by rtt/2 a hop, until the
// client's handshake completes (or 20 hops); it returns the server's
// connection and the time reached.
func epExchange(t *testing.T, client *Endpoint, cc *Conn, server *Endpoint, now time.Time, rtt time.Duration) (*Conn, time.Time) {
	t.Helper()
	var sc *Conn
	buf := make([]byte, 2048)
	for range 20 {
		now = now.Add(rtt / 2)
		for {
			n, _ := client.PollConn(now, cc, buf)
			if n == 0 {
				break
			}
			switch ev := server.HandleDatagram(now, epTestClient, buf[:n]); ev.Kind {
			case EventNewConn:
				sc = ev.Conn
				server.Deliver(now, sc, epTestClient, buf[:n])
			case EventDatagram:
				server.Deliver(now, ev.Conn, epTestClient, buf[:n])
			}
		}
		now = now.Add(rtt / 2)
		var back [][]byte
		for {
			n, _, ok := server.PollTransmit(now, buf)
			if !ok {
				break
			}
			back = append(back, append([]byte(nil), buf[:n]...))
		}
		for sc != nil {
			n, _ := server.PollConn(now, sc, buf)
			if n == 0 {
				break
			}
			back = append(back, append([]byte(nil), buf[:n]...))
		}
		for _, b := range back {
			if ev := client.HandleDatagram(now, epTestServer, b); ev.Kind == EventDatagram {
				client.Deliver(now, ev.Conn, epTestServer, b)
			}
		}
		if cc.Established() {
			return sc, now
		}
	}
	t.Fatal("the handshake did not complete")
	return nil, now
}

// TestLogEvents: with a debug logger, the handshake's steps (connecting,
// the Retry both sides see, the acceptance, completion with its duration),
// refusals with their reason and the connection's end with its reason are
// logged, each with its structured attributes.
func TestLogEvents(t *testing.T) {
	h := &captureHandler{logcapture.Handler{Level: slog.LevelDebug}}
	cfg := &Config{Logger: slog.New(h)}
	server := newTestEndpoint(t, EndpointConfig{Listen: true, Conn: cfg})
	client := newTestEndpoint(t, EndpointConfig{Conn: cfg, Rand: rand.NewPCG(3, 4)})
	cc, err := client.Connect(epTestNow, epTestServer, nil)
	if err != nil {
		t.Fatal(err)
	}
	const rtt = 40 * time.Millisecond
	sc, now := epExchange(t, client, cc, server, epTestNow, rtt)

	r := h.one(t, "rudp: connecting", "cid", "to")
	if r.Attrs["to"].String() != epTestServer.String() || r.Attrs["cid"].Uint64() != cc.LocalCID() {
		t.Errorf("connecting: %v", r.Attrs)
	}
	r = h.one(t, "rudp: HELLO without a valid cookie: Retry sent", "from", "client_cid", "had_cookie")
	if r.Attrs["client_cid"].Uint64() != cc.LocalCID() || r.Attrs["from"].String() != epTestClient.String() {
		t.Errorf("Retry sent: %v", r.Attrs)
	}
	r = h.one(t, "rudp: Retry received: sending the HELLO again with its cookie", "cid", "after")
	if r.Attrs["after"].Duration() != rtt {
		t.Errorf("Retry received after %v, want one round trip, %v", r.Attrs["after"].Duration(), rtt)
	}
	h.one(t, "rudp: connection accepted: its HELLO echoed a valid cookie", "cid", "client_cid", "from", "pending")
	var clientDone logcapture.Record
	for _, r := range h.find("rudp: handshake complete") {
		if r.Attrs["cid"].Uint64() == cc.LocalCID() {
			clientDone = r
		}
	}
	if clientDone.Attrs == nil {
		t.Fatalf("no handshake completion of the client's connection: %+v", h.Records())
	}
	if took := clientDone.Attrs["took"].Duration(); took != 2*rtt || clientDone.Attrs["remote_cid"].Uint64() != sc.LocalCID() {
		t.Errorf("handshake complete: %v (took %v, want two round trips, %v)", clientDone.Attrs, took, 2*rtt)
	}

	// The server closes: a refusal of every attempt from then on, with its reason.
	server.Refuse()
	server.HandleDatagram(now, netip.MustParseAddrPort("198.51.100.9:1"), helloDatagram(99, nil))
	r = h.one(t, "rudp: connection attempt refused", "from", "client_cid", "reason")
	if r.Attrs["reason"].String() != refusalNames[refusedClosed] {
		t.Errorf("refusal reason %q", r.Attrs["reason"])
	}

	// An abort ends the client's connection with its reason.
	cc.Abort(now, ErrAborted)
	for range 3 {
		client.PollConn(now, cc, make([]byte, 2048))
		now = now.Add(time.Second)
		cc.HandleTimeout(now)
	}
	r = h.one(t, "rudp: connection ended", "cid", "reason", "established", "remote_cid", "packets_sent", "packets_lost")
	if r.Attrs["reason"].String() != ErrAborted.Error() || !r.Attrs["established"].Bool() {
		t.Errorf("connection ended: %v", r.Attrs)
	}
}

// TestLogDropsRateLimited: datagrams dropped for one cause are logged at
// most once a second, each line counting the drops since the last.
func TestLogDropsRateLimited(t *testing.T) {
	h := &captureHandler{logcapture.Handler{Level: slog.LevelDebug}}
	ep := newTestEndpoint(t, EndpointConfig{Listen: true, Conn: &Config{Logger: slog.New(h)}})
	garbage := []byte("not a rudp datagram")
	now := epTestNow
	for i := range 100 {
		ep.HandleDatagram(now.Add(time.Duration(i)*5*time.Millisecond), epTestClient, garbage) // 0 to 495 ms
	}
	got := h.find("rudp: datagrams dropped")
	if len(got) != 1 || got[0].Attrs["count"].Uint64() != 1 || got[0].Attrs["cause"].String() != "malformed" ||
		got[0].Attrs["from"].String() != epTestClient.String() {
		t.Fatalf("after 100 in half a second: %+v, want one line counting 1", got)
	}
	ep.HandleDatagram(now.Add(time.Second), epTestClient, garbage)
	got = h.find("rudp: datagrams dropped")
	if len(got) != 2 || got[1].Attrs["count"].Uint64() != 100 || got[1].Attrs["since"].Duration() != time.Second {
		t.Fatalf("a second later: %+v, want a second line counting the 100 since the first", got)
	}
	// Another cause has its own budget.
	ep.LogDrop(now.Add(time.Second), DropTruncated, epTestClient)
	if got := h.find("rudp: datagrams dropped"); len(got) != 3 || got[2].Attrs["cause"].String() != "truncated" {
		t.Fatalf("another cause: %+v", got)
	}
	if st := ep.Stats(); st.DroppedMalformed != 101 {
		t.Fatalf("DroppedMalformed = %d, want 101 (logging changes no count)", st.DroppedMalformed)
	}
}

// TestLogSilentAllocs: with the default logger (silent), the events cost
// no allocation: the attributes are built only for a logger that logs.
func TestLogSilentAllocs(t *testing.T) {
	ep := newTestEndpoint(t, EndpointConfig{Listen: true})
	garbage := []byte("not a rudp datagram")
	hello := helloDatagram(5, nil)
	buf := make([]byte, 2048)
	ep.HandleDatagram(epTestNow, epTestClient, hello) // (the first queued datagram allocates the queue)
	allocs := testing.AllocsPerRun(100, func() {
		ep.HandleDatagram(epTestNow, epTestClient, garbage)
		ep.HandleDatagram(epTestNow, epTestClient, hello) // a Retry
		for {
			if _, _, ok := ep.PollTransmit(epTestNow, buf); !ok {
				break
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations a round, want none from logging", allocs)
	}
}
