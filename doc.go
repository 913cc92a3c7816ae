// Package rudp is reliable UDP with a guarantee chosen per message: None
// (arrives at most once, in any order, like UDP but never duplicated),
// Order (at most once, never after a newer one) or Delivery (exactly once,
// in order). It is offered as Go's own networking types: Dial gives a *Conn
// (a net.Conn), Listen a *Listener (a net.Listener), ListenPacket a
// *PacketConn (a net.PacketConn), so crypto/tls, net/http, yamux or gRPC
// run over it unchanged. The wire format and state machines are in
// docs/PROTOCOL.md, this package's API in brief in docs/ROOT_API.md.
//
// # Getting started
//
// A server and a client are written as over TCP:
//
//	ln, err := rudp.Listen("udp", ":9000", nil) // nil: the default Config
//	conn, err := ln.Accept()                     // a *rudp.Conn: a reliable, ordered byte stream
//
//	conn, err := rudp.Dial("udp", "example.com:9000", nil)
//	conn.Write(request)
//	conn.SendMessage(rudp.Order, stateUpdate) // one message: a newer one overtakes a lost one
//
// Config.Guarantee sets what Write and Read carry (Delivery, a byte
// stream, by default; Order or None, one message per Write); SendMessage
// and ReadMessage pick the guarantee per message. Streams
// (Conn.OpenStream, Conn.AcceptStream) are ordering domains of their own
// inside one connection: a lost datagram of one delays nothing on another.
// A *PacketConn (ListenPacket) is UDP's net.PacketConn with a reliable
// connection set up per peer. A Listener dials too (Listener.Dial), so
// that many connections share its socket. Config.Manual runs without
// goroutines, driven by Pump from the application's loop. Close waits,
// bounded by Config.Linger, until the peer has everything written.
//
// # Seeing what happens
//
// Conn.Stats gives a connection's RTT, congestion window, packets, losses
// and retransmissions; Listener.Stats and PacketConn.Stats a socket's
// connections, handshakes, refusals and drops by cause. Config.Logger
// takes a *slog.Logger: at slog.LevelDebug it logs the handshake's steps
// and timing, Retries, refusals and why, path and MTU changes, close
// reasons and drops by cause (rate limited), with structured attributes
// (connection IDs, addresses, durations); nil is silent and costs nothing.
//
// To test a program over a bad link on loopback, the impair package
// (github.com/rudp-go/rudp/impair) loses, delays, jitters, duplicates,
// reorders and rate-limits datagrams: wrap a net.PacketConn, or put its
// UDP proxy between client and server ("rudpbench proxy" runs one from the
// command line). The examples directory holds complete programs (echo,
// streams, yamux, tls, http, a game loop in Manual mode, a game server
// through a lossy relay), each copyable into a module of its own.
//
// # Layers
//
// This package owns the sockets, the goroutines, the locks and the
// deadlines, and none of the protocol's rules. Each connection is a
// *core.Conn (package core: the deterministic state machine, proven in the
// simulator of internal/sim) seen through a *stream.Stream (package stream:
// its byte-stream and message views); a root Conn (conn.go) adds blocking,
// deadlines and net.Conn's errors. Each UDP socket is a mux (mux.go): its
// *core.Endpoint decides what each datagram means (the connection its
// connection ID names; a HELLO answered statelessly with a cookie (Retry)
// or a refusal, or a new connection; a stateless reset for an unknown
// connection), and the mux hands it over, writes the answers, reads ICMP
// reports (failfast.go) and runs all its connections' timeouts on one
// timer (timers.go). A Listener
// (listener.go) and a PacketConn (packetconn.go, with its peer table in
// peers.go) take the connections a mux's handshake accepts; a dialed Conn
// (dialer.go) has a mux of its own, or shares its Listener's
// (Listener.Dial). The platform's socket code is behind one type, the
// mux's udpSocket (socket.go, whose doc lists the build-tagged files:
// recvmmsg, sendmmsg and UDP GSO/GRO on Linux, ICMP reports, Manual mode's
// non-blocking read, socket options).
//
// # Concurrency
//
// Every exported method of Conn, Listener and PacketConn may be called
// from any goroutine. By default each socket has one reader goroutine
// (mux.readLoop) and one time.Timer (timers.go's timerQueue, armed for the
// earliest timeout of its connections), and no goroutine per connection:
// a blocked Read or Write waits on its connection's 1-buffered wakeup
// channel (readWake, writeWake) and on its deadline, which arms its own
// timer (conn.go's deadline, after net/pipe.go's). On a socket that carries
// one connection a Read that must wait reads the socket itself rather than
// being woken by the reader goroutine; who reads the socket at any moment
// is one type's state, direct.go's readOwner, whose doc gives the hand-over. With
// Config.Manual no goroutine is started at all: the application's Pump
// reads the socket without blocking (one Pump reads at a time, mux.pumpMu,
// taken with TryLock so a second Pump only fires timers) and fires the
// timers that are due, and TryReadMessage never waits.
//
// # Lock order
//
// PacketConn.dialMu (one implicit dial per address, packetconn.go), then
// Conn.writeMu (one Write at a time, conn.go), then Conn.mu (a
// connection's core.Conn and stream, conn.go), then mux.mu (the socket's
// tables of connections, peers and timers, mux.go), then PacketConn.mu (its
// queue of peers with data for ReadFrom, packetconn.go). mux.mu is never
// held while a Conn's mutex is taken: the reader locks the connection a
// datagram is for and takes mux.mu inside it (mux.accept, mux.schedule),
// and the socket's timer pops the due connections under mux.mu (the
// timerQueue is guarded by it), releases it, then locks each
// (mux.fireTimers). A deadline's mutex (conn.go) is a
// leaf. Config.Tracer's constructor and the core.Tracer's functions are
// called inside the core, so under Conn.mu or mux.mu (an accepted
// connection is made, and handles its first datagram, under mux.mu): they
// must not call the Conn, Listener or PacketConn, and what they take
// (qlog's buffered file writes) delays the socket's other connections.
// What is read without a lock is atomic: the direct-read state
// (readOwner), mux.sockClosed and mux.errPending, Conn.active.
package rudp
