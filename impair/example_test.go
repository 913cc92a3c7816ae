package impair_test

import (
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/impair"
)

// Wrap a socket so that what it sends meets loss, delay and jitter; reads
// are untouched. The receiver here is a plain UDP socket.
func ExampleWrap() {
	recv, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer recv.Close()

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	send, err := impair.Wrap(udp, impair.Config{
		Seed:   1,                     // the same seed, the same decisions
		Loss:   1,                     // every datagram lost, so the output below is certain
		Delay:  25 * time.Millisecond, // one way
		Jitter: 5 * time.Millisecond,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer send.Close() // closes udp too

	for range 10 {
		if _, err := send.WriteTo([]byte("state update"), recv.LocalAddr()); err != nil {
			log.Fatal(err)
		}
	}
	s := send.Stats()
	fmt.Printf("sent %d, lost %d\n", s.Sent, s.DroppedLoss)
	// Output: sent 0, lost 10
}

// A Proxy sits between a client and a server that open their own sockets:
// the client sends to the proxy's address instead of the server's, and each
// direction has its own impairment.
func ExampleNewProxy() {
	server, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close()

	lossy := impair.Config{Loss: 0.05, Delay: 50 * time.Millisecond} // 5% loss, 100 ms round trip
	up, down := lossy, lossy
	up.Seed, down.Seed = 1, 2
	p, err := impair.NewProxy("127.0.0.1:0", server.LocalAddr().String(), up, down)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	client, err := net.Dial("udp", p.Addr().String()) // not server.LocalAddr()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write([]byte("hello")); err != nil {
		log.Fatal(err)
	}
	// ... the server reads "hello" 50 ms later (or never, 5% of the time),
	// from the proxy's address.
}

// Validate names the field that is out of range; Wrap and NewProxy return
// the same error.
func ExampleConfig_Validate() {
	err := impair.Config{Loss: 1.5}.Validate()
	fmt.Println(err)
	// Output: impair: invalid config: Loss = 1.5, want a probability in [0, 1]
}

// A rudp server and client through 5% loss and a 100 ms round trip: how a
// test of your own rudp program may run it over a bad link on loopback.
func ExampleNewProxy_rudp() {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo
	}()

	lossy := impair.Config{Loss: 0.05, Delay: 50 * time.Millisecond}
	up, down := lossy, lossy
	up.Seed, down.Seed = 1, 2
	p, err := impair.NewProxy("127.0.0.1:0", ln.Addr().String(), up, down)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	conn, err := rudp.Dial("udp", p.Addr().String(), nil) // through the proxy
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "hello through loss")
	buf := make([]byte, 64)
	n, err := conn.Read(buf) // whatever was lost was sent again
	if err != nil {
		log.Fatal(err)
	}
	s := p.Stats()
	fmt.Printf("%q; the proxy lost %d datagrams up, %d down\n", buf[:n], s.Up.DroppedLoss, s.Down.DroppedLoss)
}
