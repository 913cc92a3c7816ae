//go:build !linux

package rudp

import (
	"errors"
	"net"

	"golang.org/x/net/bpf"
)

// reusePortSteering: only Linux steers a port's SO_REUSEPORT datagrams
// with a program (Config.Sockets is refused elsewhere).
const reusePortSteering = false

func listenReusePort(string, *net.UDPAddr, int, []bpf.RawInstruction) ([]*net.UDPConn, error) {
	return nil, errors.New("SO_REUSEPORT steering needs Linux")
}
