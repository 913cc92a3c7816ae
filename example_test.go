package rudp_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/rudp-go/rudp"
)

// A server and a client: the same code as over TCP, with rudp's Listen and Dial.
func ExampleListen() {
	ln, err := rudp.Listen("udp", "127.0.0.1:9000", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	for {
		conn, err := ln.Accept() // a *rudp.Conn
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			io.Copy(conn, conn) // echo: a reliable ordered byte stream
		}()
	}
}

func ExampleDial() {
	conn, err := rudp.Dial("udp", "127.0.0.1:9000", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(conn, "hello over rudp\n")
	// Close returns at once; Shutdown waits until the peer has everything.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.Shutdown(ctx); err != nil {
		log.Print(err)
	}
}

// Many connections through one socket: a client that keeps thousands of
// connections open dials them through a Listener, so that they share its
// socket and its one reader goroutine (each costs what an accepted
// connection does) instead of owning a socket and a goroutine each.
func ExampleListener_Dial() {
	client, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close() // the connections dialed stay open until closed
	for i := 0; i < 1000; i++ {
		conn, err := client.Dial("udp", "127.0.0.1:9000")
		if err != nil {
			log.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "hello from connection %d\n", i)
	}
	// http.Transport can share the socket too:
	// &http.Transport{DialContext: (&rudp.Dialer{Listener: client}).DialContext}
}

// A server that one reader goroutine cannot keep up with (Linux): four
// sockets on one port, each with its own reader, all feeding Accept. The
// kernel steers each datagram to the socket whose server ID its connection
// ID carries, so a client whose address changes stays where it is.
// Behind a load balancer that routes by connection ID, each machine gets
// a server ID of its own; its last byte is the socket index on the
// machine (docs/PROTOCOL.md §1.1).
func ExampleConfig_sockets() {
	ln, err := rudp.Listen("udp", ":9000", &rudp.Config{
		Sockets:  4,
		ServerID: []byte{7, 0}, // machine 7; its sockets use {7, 0} .. {7, 3}
	})
	if err != nil {
		log.Fatal(err) // a *rudp.ConfigError naming Sockets elsewhere than Linux
	}
	defer ln.Close()
	// Accept as from any Listener; Stats adds the sockets' counts up,
	// ShardStats gives each.
	for k, st := range ln.ShardStats() {
		fmt.Printf("socket %d: %d connections\n", k, st.Conns)
	}
}

// Per-message guarantees on one connection: state updates that must not
// wait behind a lost one (Order), beside chat that must arrive (Delivery).
func ExampleConn_SendMessage() {
	conn, err := rudp.Dial("udp", "127.0.0.1:9000", &rudp.Config{Guarantee: rudp.Order})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	for frame := 0; frame < 60; frame++ {
		state := []byte(fmt.Sprintf("frame %d: player at (%d, 0)", frame, frame))
		conn.SendMessage(rudp.Order, state) // a newer frame overtakes a lost one
	}
	conn.SendMessage(rudp.Delivery, []byte("gg")) // arrives, in order with the frames
}

// Manual mode: no goroutines; the application's loop drives the protocol.
func ExampleConn_Pump() {
	cfg := &rudp.Config{Manual: true}
	conn, err := rudp.Dial("udp", "127.0.0.1:9000", cfg) // Dial drives its own handshake
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	tick := time.NewTicker(time.Second / 60)
	defer tick.Stop()
	for range tick.C {
		if err := conn.Pump(); err != nil { // read, fire timers, send: never blocks
			return
		}
		for {
			n, g, err := conn.TryReadMessage(buf)
			if err != nil || g == 0 {
				break
			}
			fmt.Printf("%v message: %q\n", g, buf[:n])
		}
		conn.SendMessage(rudp.Order, []byte("input"))
	}
}

// rudp under net/http: the Dialer plugs into http.Transport.
func ExampleDialer() {
	client := &http.Client{Transport: &http.Transport{
		DialContext: (&rudp.Dialer{}).DialContext,
	}}
	resp, err := client.Get("http://127.0.0.1:9000/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
}

// One message per WriteTo, like UDP, with the connection set up implicitly.
func ExampleListenPacket() {
	pc, err := rudp.ListenPacket("udp", "127.0.0.1:0", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf) // one whole message from any peer
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}
