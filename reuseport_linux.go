package rudp

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// reusePortSteering: Linux steers a port's SO_REUSEPORT datagrams with a
// classic BPF program (SO_ATTACH_REUSEPORT_CBPF, Linux 4.5 and later).
const reusePortSteering = true

// listenReusePort opens n sockets sharing laddr's port with SO_REUSEPORT
// and attaches prog to their group. Port 0 first finds a free port with a
// socket that does not share it: the kernel would otherwise give a new
// SO_REUSEPORT socket a port that sockets of the same user share already,
// joining their group.
func listenReusePort(network string, laddr *net.UDPAddr, n int, prog []bpf.RawInstruction) ([]*net.UDPConn, error) {
	addr := *laddr
	var socks []*net.UDPConn
	fail := func(err error) ([]*net.UDPConn, error) {
		for _, s := range socks {
			_ = s.Close()
		}
		return nil, err
	}
	for tries := 0; ; tries++ {
		var err error
		if laddr.Port == 0 {
			addr.Port, err = freePort(network, laddr)
			if err != nil {
				return nil, err
			}
		}
		sock, err := listenReuse(network, &addr)
		if err == nil {
			socks = append(socks, sock)
			break
		}
		// Taken between freePort and the bind: try another.
		if laddr.Port != 0 || tries >= 8 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	for len(socks) < n {
		sock, err := listenReuse(network, &addr)
		if err != nil {
			return fail(err)
		}
		socks = append(socks, sock)
	}
	raw, err := socks[0].SyscallConn()
	if err != nil {
		return fail(err)
	}
	var serr error
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	err = raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
	})
	if err == nil && serr != nil {
		err = os.NewSyscallError("setsockopt SO_ATTACH_REUSEPORT_CBPF", serr)
	}
	if err != nil {
		return fail(err)
	}
	return socks, nil
}

// listenReuse opens one socket on addr with SO_REUSEPORT, as listenUDP
// opens one without.
func listenReuse(network string, addr *net.UDPAddr) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return os.NewSyscallError("setsockopt SO_REUSEPORT", serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), network, addr.String())
	if err != nil {
		return nil, err
	}
	sock := pc.(*net.UDPConn)
	setSocketBuffers(sock, socketBufferSize)
	setDontFragment(sock)
	return sock, nil
}

// freePort returns a port on laddr's address that no socket uses now.
func freePort(network string, laddr *net.UDPAddr) (int, error) {
	s, err := net.ListenUDP(network, laddr)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	return s.LocalAddr().(*net.UDPAddr).Port, nil
}
