// Package core is rudp's protocol engine: the state machine of one
// connection (Conn) and the wire format it speaks, as docs/PROTOCOL.md
// specifies them. A Conn is sans I/O and deterministic: it never reads the
// clock (time comes in as the now argument), the package imports no socket
// package, starts no goroutine, never blocks, and draws randomness only
// from the rand.Source it is given, so that the simulator (internal/sim, driven by
// sim_test.go) runs it through loss, duplication, reordering and
// corruption from a seed, and replays any failure from that seed. (One
// exception: a TLS handshake's key shares and signatures come from the
// process's cryptographic randomness, which crypto/tls does not let a
// caller inject since Go 1.26; a test seeds it with
// testing/cryptotest.SetGlobalRandom to replay such a run: see
// Config.TLS.)
//
// # Layers
//
// A Conn is driven from outside: HandleDatagram(now, b) and
// HandleTimeout(now) are its inputs; PollTransmit(now, buf), which writes
// the next datagram into the caller's buffer, and NextTimeout are its
// outputs; Send, Recv, BeginSet/EndSet and Close are the application's
// side. Its parts are components, each a type with its own methods in a
// file of its own, and the Conn (conn.go) joins them: the lifecycle of
// handshake and close (lifecycle.go), what we owe the peer in
// acknowledgements (acks.go), the ordering domain: how messages are
// numbered and which may be read when (ordering.go), the timer slots
// (timers.go), where received messages' bytes are kept (reassembly.go),
// loss recovery (recovery.go, after RFC 9002) and the packets in flight
// (sent.go); sending and fragmenting (send.go), the frames received and
// flow control (recv.go; the Guarantee values, guarantee.go), the RTT
// estimate (rtt.go), congestion control and pacing (congestion.go; bbr.go,
// the default), path MTU discovery (pmtu.go, after RFC 8899), stateless
// resets and ICMP reports (failfast.go, ratelimit.go), sequence arithmetic
// (seq.go) and the encoding of packets and frames (wire.go). Config
// (config.go) is read once, when a Conn is made. Endpoint (endpoint.go)
// is one socket's worth of protocol over many Conns: it routes datagrams
// by connection ID, answers HELLOs statelessly (cookie, Retry, refusal)
// and unknown connections with a stateless reset. Session
// (session.go) drives one Conn over one connected datagram socket (any
// net.Conn over datagrams), polled from the program's own loop or blocked
// on by one goroutine; the root package rudp drives many Conns over one
// socket with goroutines of its own.
//
// # Concurrency
//
// Nothing in this package is safe for concurrent use and nothing in it
// locks, so it has no lock order: a Conn, an Endpoint or a Session belongs
// to one
// goroutine at a time, and its owner serializes every call (the root
// package holds its Conn.mu around each call on a core.Conn). Values that
// are only read (a Config, a CongestionController's constructor) may be
// shared. The only clock read is Session's, through its Config.Clock
// (clock.go), which a test replaces.
package core
