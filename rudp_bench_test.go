package rudp_test

import (
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/rudp-go/rudp"
)

// The send and receive path of a Conn over real loopback UDP, next to the same
// shapes over loopback TCP (and the ping-pong over raw UDP) so that one run
// gives the ratio:
//
//	go test -run '^$' -bench 'Conn|TCP|UDP' -benchmem .
//
// The write benchmarks stop the clock only once the receiver has read every
// byte, so they measure delivered throughput, not how fast a send buffer
// fills. Both ends run in the benchmark's process: allocations are for both.

var benchWriteSizes = []int{64, 1200, 65536}

func BenchmarkConnWrite(b *testing.B) {
	for _, size := range benchWriteSizes {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			client, server := rudpBenchPair(b)
			benchWrite(b, client, server, size)
		})
	}
}

func BenchmarkTCPWrite(b *testing.B) {
	for _, size := range benchWriteSizes {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			client, server := tcpBenchPair(b)
			benchWrite(b, client, server, size)
		})
	}
}

func BenchmarkConnPingPong(b *testing.B) {
	b.Run("64", func(b *testing.B) {
		client, server := rudpBenchPair(b)
		benchPingPong(b, client, server, 64)
	})
}

func BenchmarkTCPPingPong(b *testing.B) {
	b.Run("64", func(b *testing.B) {
		client, server := tcpBenchPair(b)
		benchPingPong(b, client, server, 64)
	})
}

// BenchmarkUDPPingPong is BenchmarkConnPingPong over two plain connected UDP
// sockets: raw UDP's round trip, the baseline of issue 12's target 2.
func BenchmarkUDPPingPong(b *testing.B) {
	b.Run("64", func(b *testing.B) {
		client, server := udpBenchPair(b)
		benchPingPong(b, client, server, 64)
	})
}

// udpBenchPair returns a loopback UDP socket connected to another, and
// that other as a net.Conn that writes to the first (udpPeerConn), closed
// when the benchmark ends.
func udpBenchPair(b *testing.B) (client, server net.Conn) {
	b.Helper()
	s, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	c, err := net.DialUDP("udp", nil, s.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c, udpPeerConn{s, c.LocalAddr().(*net.UDPAddr)}
}

// udpPeerConn is an unconnected UDP socket whose Write sends to peer.
type udpPeerConn struct {
	*net.UDPConn
	peer *net.UDPAddr
}

func (u udpPeerConn) Write(p []byte) (int, error) { return u.WriteToUDP(p, u.peer) }

// rudpBenchPair returns the two ends of one default-config rudp connection
// over loopback, closed when the benchmark ends.
func rudpBenchPair(b *testing.B) (client, server net.Conn) {
	b.Helper()
	return rudpBenchPairWith(b, nil)
}

// rudpBenchPairWith is rudpBenchPair with cfg at both ends.
func rudpBenchPairWith(b *testing.B, cfg *rudp.Config) (client, server net.Conn) {
	b.Helper()
	ln, err := rudp.Listen("udp", "127.0.0.1:0", cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	c, err := rudp.Dial("udp", ln.Addr().String(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	select {
	case a := <-ch:
		if a.err != nil {
			b.Fatal(a.err)
		}
		b.Cleanup(func() { a.c.Close() })
		return c, a.c
	case <-time.After(10 * time.Second):
		b.Fatal("no connection accepted within 10s of a successful dial")
		return nil, nil
	}
}

// tcpBenchPair returns the two ends of one loopback TCP connection, closed
// when the benchmark ends.
func tcpBenchPair(b *testing.B) (client, server net.Conn) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return c, s
}

// benchWrite writes b.N chunks of size bytes from client and waits until
// server has read all of them. Besides the rate it reports the process's
// CPU seconds per GiB moved (cpu-s/GiB, both ends: where unix says), which
// a loaded machine distorts far less than the wall clock's MB/s.
func benchWrite(b *testing.B, client, server net.Conn, size int) {
	total := int64(b.N) * int64(size)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 256<<10)
		var n int64
		for n < total {
			k, err := server.Read(buf)
			n += int64(k)
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	msg := make([]byte, size)
	deadline := time.Now().Add(2 * time.Minute)
	_ = client.SetWriteDeadline(deadline)
	_ = server.SetReadDeadline(deadline)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	for range b.N {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal("receiver: ", err)
	}
	b.StopTimer()
	if cpu1, ok := processCPU(); ok && cpuOK {
		b.ReportMetric((cpu1-cpu0).Seconds()/(float64(total)/(1<<30)), "cpu-s/GiB")
	}
}

// benchPingPong sends size bytes from client, which server echoes: one round
// trip per iteration. Besides the time it reports the process's CPU per
// round trip (cpu-µs/op, both ends: where unix says): on loopback a round
// trip runs on one thread, so its CPU is its latency, and a loaded machine
// distorts it far less than ns/op.
func benchPingPong(b *testing.B, client, server net.Conn, size int) {
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(server, buf); err != nil {
				done <- err
				return
			}
			if _, err := server.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	msg := make([]byte, size)
	reply := make([]byte, size)
	_ = client.SetDeadline(time.Now().Add(2 * time.Minute))
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	for range b.N {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, reply); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if cpu1, ok := processCPU(); ok && cpuOK {
		b.ReportMetric(float64(cpu1-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
	}
	server.Close() // ends the echo goroutine
	if err := <-done; err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		b.Logf("echo side ended with: %v", err)
	}
}

// BenchmarkClose is how long Close takes in the usual case: a request's
// worth of data written, then Close, which waits until the peer has
// acknowledged it and the close (about a round trip on loopback; the
// peer's reader goroutine is draining). Setting up each connection is not
// timed.
//
//	go test -run '^$' -bench 'Close' .
func BenchmarkClose(b *testing.B) {
	for _, size := range []int{0, 1200, 65536} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			msg := make([]byte, size)
			for b.Loop() {
				b.StopTimer()
				accepted := acceptOne(ln)
				c, err := rudp.Dial("udp", ln.Addr().String(), nil)
				if err != nil {
					b.Fatal(err)
				}
				s := <-accepted
				drained := make(chan struct{})
				go func() {
					defer close(drained)
					_, _ = io.Copy(io.Discard, s)
				}()
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := c.Close(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				<-drained
				_ = s.Close()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkCloseWriteEOF is how long a half-close takes to reach the peer's
// application: from CloseWrite, after a request's worth of data, until the
// peer's Read returns io.EOF (the data read first), about half a round trip
// plus a packet on loopback. That is the closewrite-ns/op metric; ns/op is
// the whole cycle (dial, write, half-close, close), which is timed so that
// the default benchtime bounds the run (a timer stopped around the setup
// let b.N grow to tens of thousands of connections).
func BenchmarkCloseWriteEOF(b *testing.B) {
	for _, size := range []int{0, 1200, 65536} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			msg := make([]byte, size)
			var half time.Duration
			for b.Loop() {
				accepted := acceptOne(ln)
				c, err := rudp.Dial("udp", ln.Addr().String(), nil)
				if err != nil {
					b.Fatal(err)
				}
				s := <-accepted
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				eof := make(chan error, 1)
				go func() {
					_, err := io.Copy(io.Discard, s)
					eof <- err
				}()
				start := time.Now()
				if err := c.CloseWrite(); err != nil {
					b.Fatal(err)
				}
				if err := <-eof; err != nil {
					b.Fatal(err)
				}
				half += time.Since(start)
				_ = s.Close()
				_ = c.Close()
			}
			b.ReportMetric(float64(half.Nanoseconds())/float64(b.N), "closewrite-ns/op")
		})
	}
}

// BenchmarkDial is what one dial costs, both ends in this process: the
// socket, the handshake's round trips and the accepted side, until Dial
// returns and Accept has the connection (dial-ns/op); ns/op is the whole
// cycle, the two Closes included (timed, as stopping the clock around them
// would cost more than they do).
//
//	go test -run '^$' -bench 'Dial$' .
func BenchmarkDial(b *testing.B) {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	b.ReportAllocs()
	var dialing time.Duration
	for b.Loop() {
		start := time.Now()
		accepted := acceptOne(ln)
		c, err := rudp.Dial("udp", ln.Addr().String(), nil)
		if err != nil {
			b.Fatal(err)
		}
		s := <-accepted
		dialing += time.Since(start)
		_ = c.Close()
		_ = s.Close()
	}
	b.ReportMetric(float64(dialing.Nanoseconds())/float64(b.N), "dial-ns/op")
}
