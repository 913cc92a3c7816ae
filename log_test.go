package rudp_test

import (
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/core"
	"github.com/rudp-go/rudp/internal/logcapture"
)

// captureHandler keeps every debug record.
type captureHandler struct{ logcapture.Handler }

// wait returns the first record with message msg and the attribute
// key = want (any value if want is ""), waiting for it to be logged.
func (h *captureHandler) wait(t *testing.T, msg, key, want string) logcapture.Record {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, r := range h.Find(msg) {
			if v, ok := r.Attrs[key]; ok && (want == "" || v.String() == want) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event %q with %s=%q; logged: %+v", msg, key, want, h.Records())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestDebugLog: with Config.Logger at debug level, a connection's life is
// logged as events with structured attributes: the client connecting, the
// Retry both sides see, the acceptance, the handshake's completion with
// its duration, a refusal with its reason, drops by cause, and the close
// with the addresses and the reason.
func TestDebugLog(t *testing.T) {
	h := &captureHandler{logcapture.Handler{Level: slog.LevelDebug}}
	cfg := &rudp.Config{Logger: slog.New(h), AcceptBacklog: 1}
	ln, err := rudp.Listen("udp4", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	defer ln.Close()
	c, err := rudp.Dial("udp4", ln.Addr().String(), cfg)
	require.NoError(t, err)
	defer c.Close()
	// (The client's socket is bound to 0.0.0.0; the server sees 127.0.0.1.)
	laddr := "127.0.0.1:" + strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
	raddr := ln.Addr().String()

	clientCID := h.wait(t, "rudp: connecting", "to", raddr).Attrs["cid"].String()
	h.wait(t, "rudp: HELLO without a valid cookie: Retry sent", "from", laddr)
	h.wait(t, "rudp: Retry received: sending the HELLO again with its cookie", "after", "")
	serverCID := h.wait(t, "rudp: connection accepted: its HELLO echoed a valid cookie", "from", laddr).Attrs["cid"].Uint64()
	done := h.wait(t, "rudp: handshake complete", "cid", clientCID)
	require.Positive(t, done.Attrs["took"].Duration())
	require.Contains(t, done.Attrs, "remote_cid")
	require.Contains(t, done.Attrs, "cid")

	// The backlog is full: the next client is refused, and both sides say why.
	_, err = rudp.Dial("udp4", raddr, cfg)
	require.ErrorIs(t, err, rudp.ErrRefused)
	h.wait(t, "rudp: connection attempt refused", "reason", "accept budget spent (AcceptBudget connections wait for Accept)")
	h.wait(t, "rudp: connection ended", "reason", rudp.ErrRefused.Error())

	// Garbage is dropped, and counted in the log line.
	sock, err := net.Dial("udp4", raddr)
	require.NoError(t, err)
	defer sock.Close()
	_, err = sock.Write([]byte("garbage"))
	require.NoError(t, err)
	drop := h.wait(t, "rudp: datagrams dropped", "cause", "malformed")
	require.Equal(t, sock.LocalAddr().String(), drop.Attrs["from"].String())
	require.Equal(t, uint64(1), drop.Attrs["count"].Uint64())
	// A well-formed packet for the server's connection whose frame is
	// unknown is dropped by the connection: another cause.
	p := rawPacket(core.PacketData, serverCID, 1000, 1)
	p[14] = 0xff // no such frame type
	p = binary.BigEndian.AppendUint32(p[:len(p)-4], crc32.Checksum(p[:len(p)-4], crc32.MakeTable(crc32.Castagnoli)))
	_, err = sock.Write(p)
	require.NoError(t, err)
	h.wait(t, "rudp: datagrams dropped", "cause", "malformed or unexpected, by its connection")

	// The close, with the addresses.
	require.NoError(t, c.Close())
	closed := h.wait(t, "rudp: connection closed", "laddr", c.LocalAddr().String())
	require.Equal(t, raddr, closed.Attrs["raddr"].String())
	require.Equal(t, clientCID, closed.Attrs["cid"].String())
}
