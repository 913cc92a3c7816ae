package rudp_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"

	"github.com/rudp-go/rudp"
)

// Streams: game state on an Order stream of its own, so that a lost chat
// datagram on stream 0 never delays it (and a lost state update is
// overtaken by the next one instead of being waited for).
func ExampleConn_OpenStream_gameState() {
	conn, err := rudp.Dial("udp", "127.0.0.1:9000", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	state, err := conn.OpenStream(context.Background(), &rudp.StreamOptions{Guarantee: rudp.Order})
	if err != nil {
		log.Fatal(err)
	}
	for frame := range 60 {
		fmt.Fprintf(state, "frame %d: player at (%d, 0)", frame, frame) // one message per Write
	}
	fmt.Fprintf(conn, "chat: gg\n") // stream 0: a reliable byte stream, as always
}

// The server's side of streams: each stream the client opens, with the
// guarantee it chose, is accepted before any data of it arrives.
func ExampleConn_AcceptStream_echo() {
	ln, err := rudp.Listen("udp", "127.0.0.1:9000", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	conn, err := ln.AcceptRUDP()
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	for {
		s, err := conn.AcceptStream(context.Background())
		if err != nil {
			return // the connection ended
		}
		go func() {
			defer s.Close()
			io.Copy(s, s) // each stream echoed on its own
		}()
	}
}

// What a listener's socket did: handshakes, refusals and drops by cause.
func ExampleListener_Stats() {
	ln, err := rudp.Listen("udp", "127.0.0.1:9000", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	// ... serve for a while, then:
	s := ln.Stats()
	fmt.Printf("%d connections open, %d accepted, %d handshakes completed, %d failed\n",
		s.Conns, s.Accepted, s.HandshakesCompleted, s.HandshakesFailed)
	fmt.Printf("%d refused (%d for a full backlog), %d malformed datagrams dropped\n",
		s.Refused, s.RefusedBacklog, s.DroppedMalformed)
}

// Debug logs: the handshake's steps and timing, Retries, refusals and
// why, path and MTU changes, close reasons and drops by cause (at most a
// line a second per cause), as structured slog events. nil (the default)
// is silent and costs nothing.
func ExampleConfig_logger() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	conn, err := rudp.Dial("udp", "127.0.0.1:9000", &rudp.Config{Logger: logger})
	if err != nil {
		log.Fatal(err) // the log says why: a refusal, no answer, an unreachable port
	}
	defer conn.Close()
	// time=... level=DEBUG msg="rudp: connecting" cid=5577006791947779410 to=127.0.0.1:9000
	// time=... level=DEBUG msg="rudp: Retry received: sending the HELLO again with its cookie" cid=... after=84µs
	// time=... level=DEBUG msg="rudp: handshake complete" cid=... remote_cid=... took=161µs
}
