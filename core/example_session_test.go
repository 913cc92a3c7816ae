package core_test

import (
	"bytes"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/rudp-go/rudp/core"
)

// A Session runs over a connected *net.UDPConn as it is. Here both ends
// are in one program, on loopback: in a real one each end is its own
// process, and each dials the other's address from its own port. The
// other end answers every message in upper case; this end reads the
// answers, then closes gracefully.
func ExampleSession() {
	// Two free loopback ports (a real program knows its own and its peer's).
	addrA, addrB := freePort(), freePort()
	sockA, err := net.DialUDP("udp", addrA, addrB)
	if err != nil {
		log.Fatal(err)
	}
	defer sockA.Close()
	sockB, err := net.DialUDP("udp", addrB, addrA)
	if err != nil {
		log.Fatal(err)
	}
	defer sockB.Close()

	// The other end, in its own goroutine: a blocking loop of Wait and Recv.
	done := make(chan error, 1)
	go func() {
		s, err := core.NewSession(sockB, nil)
		if err != nil {
			done <- err
			return
		}
		for {
			// Sleeps until a message is ready (or a second passes), doing
			// the acknowledgements and retransmissions meanwhile.
			if err := s.Wait(time.Second); err != nil {
				done <- err
				return
			}
			m, err := s.Recv()
			if err != nil { // io.EOF: the peer closed, everything was read
				done <- nil
				return
			}
			if m != nil {
				if err := s.SendPayload(core.Delivery, bytes.ToUpper(m)); err != nil {
					done <- err
					return
				}
			}
		}
	}()

	s, err := core.NewSession(sockA, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range []string{"hello", "there"} {
		if err := s.SendPayload(core.Delivery, []byte(m)); err != nil {
			log.Fatal(err)
		}
	}
	for answers := 0; answers < 2; {
		if err := s.Wait(time.Second); err != nil {
			log.Fatal(err)
		}
		m, err := s.Recv()
		if err != nil {
			log.Fatal(err)
		}
		if m != nil {
			fmt.Println(string(m))
			answers++
		}
	}
	// Close delivers what was sent, then ends the connection; Wait drives
	// it until the peer has acknowledged.
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}
	for !s.Closed() {
		if err := s.Wait(time.Second); err != nil {
			log.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output:
	// HELLO
	// THERE
}

// freePort returns a loopback UDP address nothing is bound to.
func freePort() *net.UDPAddr {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr)
}
