package rudp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The batch calls are made with x/sys/unix on buffers this package owns:
// x/net's ipv4/ipv6 ReadBatch makes the same recvmmsg call but allocates a
// net.UDPAddr for every datagram.

// rxSys is a receive batch's recvmmsg vectors, pointing at its buffers.
type rxSys struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for a sockaddr_in too
	cmsgs []byte                  // room for one UDP_GRO control message per message
}

// groCmsgSpace is the room for the UDP_GRO control message: an int, the
// size of the coalesced datagrams.
var groCmsgSpace = unix.CmsgSpace(4)

func (s *rxSys) init(b *rxBatch) {
	n := len(b.bufs)
	s.hdrs = make([]unix.Mmsghdr, n)
	s.iovs = make([]unix.Iovec, n)
	s.names = make([]unix.RawSockaddrInet6, n)
	s.cmsgs = make([]byte, n*groCmsgSpace)
	for i := range n {
		s.iovs[i].Base = &b.bufs[i][0]
		s.iovs[i].SetLen(len(b.bufs[i]))
		h := &s.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
	}
}

// txSys is a flush batch's sendmmsg vectors: one message per datagram, or
// per run of datagrams sent as one GSO buffer, each message's iovecs the
// pieces of buf and of send buffers its datagrams are in (txParts).
type txSys struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	niov  int    // iovecs used
	first []int  // the datagram each message starts with
	cmsgs []byte // one UDP_SEGMENT control message per message
	name  unix.RawSockaddrInet6
	nlen  uint32

	msgs  int // messages packed
	sent  int // messages sent
	k     int // what the last sendmmsg sent
	errno syscall.Errno
	call  func(fd uintptr) bool // sendmmsg, bound once
}

var gsoCmsgSpace = unix.CmsgSpace(2)

func (s *txSys) init(b *txBatch) {
	n := cap(b.lens)
	s.hdrs = make([]unix.Mmsghdr, n)
	s.iovs = make([]unix.Iovec, 3*n) // a datagram is at most three pieces
	s.first = make([]int, n)
	s.cmsgs = make([]byte, n*gsoCmsgSpace)
	s.call = s.sendmmsg
}

// setName encodes the destination for a socket of the given family; false
// if the socket cannot reach it (an IPv6 address on an IPv4 socket).
func (s *txSys) setName(to netip.AddrPort, v6 bool) bool {
	a := to.Addr()
	if !v6 {
		if !a.Is4() {
			return false
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&s.name))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], to.Port())
		s.nlen = unix.SizeofSockaddrInet4
		return true
	}
	s.name = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s.name.Port))[:], to.Port())
	s.nlen = unix.SizeofSockaddrInet6
	return true
}

// pack lays out b's datagrams from datagram from on as messages. With gso,
// a run of equal-sized datagrams (the last may be shorter) is one message
// that the kernel cuts at the size a UDP_SEGMENT control message gives.
func (s *txSys) pack(b *txBatch, from int, gso bool) {
	s.msgs, s.sent, s.niov = 0, 0, 0
	off := 0
	for i := range from {
		off += b.parts[i].held
	}
	for i := from; i < len(b.lens); {
		seg := b.lens[i]
		j, total := i+1, seg
		if gso && b.probe != i+1 {
			for j < len(b.lens) && b.probe != j+1 && b.lens[j] <= seg && total+b.lens[j] <= gsoMaxBytes {
				total += b.lens[j]
				j++
				if b.lens[j-1] < seg {
					break // a shorter datagram ends a run
				}
			}
		}
		k := s.msgs
		iov := s.niov
		for d := i; d < j; d++ {
			p := b.parts[d]
			s.addPiece(b.buf[off:off+p.at], iov)
			if p.data != nil {
				s.addPiece(p.data, iov)
				s.addPiece(b.buf[off+p.at:off+p.held], iov)
			}
			off += p.held
		}
		h := &s.hdrs[k].Hdr
		*h = unix.Msghdr{Iov: &s.iovs[iov]}
		if s.nlen != 0 {
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(&s.name)), s.nlen
		}
		h.SetIovlen(s.niov - iov)
		if j-i > 1 {
			c := s.cmsgs[k*gsoCmsgSpace : (k+1)*gsoCmsgSpace]
			cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			cm.Level = unix.IPPROTO_UDP
			cm.Type = unix.UDP_SEGMENT
			cm.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(seg)
			h.Control = &c[0]
			h.SetControllen(len(c))
		}
		s.first[k] = i
		s.msgs++
		i = j
	}
}

// addPiece adds p to the iovecs of the message being packed, whose first
// iovec is iovs[first]: it extends the message's last iovec if p follows it
// in memory (datagrams back to back in buf are one piece).
func (s *txSys) addPiece(p []byte, first int) {
	if len(p) == 0 {
		return
	}
	if k := s.niov - 1; k >= first {
		last := &s.iovs[k]
		if uintptr(unsafe.Pointer(last.Base))+uintptr(last.Len) == uintptr(unsafe.Pointer(&p[0])) {
			last.SetLen(int(last.Len) + len(p))
			return
		}
	}
	s.iovs[s.niov].Base = &p[0]
	s.iovs[s.niov].SetLen(len(p))
	s.niov++
}

func (s *txSys) sendmmsg(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&s.hdrs[s.sent])), uintptr(s.msgs-s.sent), 0, 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		}
		// EAGAIN (the socket's send buffer is full) is reported, not
		// waited out: the sender holds its connection's lock, and the
		// socket's reader (or a Manual-mode Pump) must never block on it.
		s.k, s.errno = int(n), errno
		return true
	}
}

// gathers reports whether the socket's flushes may send datagrams in
// pieces (txParts): with sendmmsg's iovecs. (Once a batch call failed for
// want of sendmmsg, sendEach puts each datagram together.)
func (u *udpSocket) gathers() bool { return u.txBatched.Load() }

// muxSys is the socket state of a mux for batched I/O.
type muxSys struct {
	v6       bool // an AF_INET6 socket: destinations go as sockaddr_in6
	rxWait   bool
	rxWaited bool // the read in progress waited for the socket to become readable
	// rxOne: read one datagram per call. recvmmsg tries for a second
	// datagram after the first, which costs a lone datagram (a request, a
	// reply) almost a second system call.
	rxOne   bool
	peek    [1]byte // where rxOne's first look at the socket peeks
	rxBatch *rxBatch
	rxErr   error
	recv    func(fd uintptr) bool // recvmmsg, bound once
}

// initIO finds what the socket offers: batch calls, and UDP GSO and GRO
// unless Config.DisableGSO. GRO is asked for only with recvmmsg, the read
// that returns the control message giving the coalesced datagrams' size.
func (u *udpSocket) initIO() {
	batched := u.set.batchIO && u.raw != nil
	if batched {
		err := u.raw.Control(func(fd uintptr) {
			domain, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
			if err != nil {
				batched = false
				return
			}
			u.sys.v6 = domain == unix.AF_INET6
			if u.set.gso {
				// Kernels without UDP GSO (before 4.18) do not know the option.
				_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
				u.gso.Store(err == nil)
				// Nor UDP GRO (before 5.0).
				u.rxGRO = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
			}
		})
		batched = batched && err == nil
	}
	u.rxBatched = batched
	u.txBatched.Store(batched)
	u.sys.recv = u.recvmmsg
}

// receive returns the datagrams ready on the socket, waiting for one if
// wait is set (else failing with EAGAIN when there is none).
func (u *udpSocket) receive(wait bool) (*rxBatch, error) {
	if !u.rxBatched {
		return u.receiveOne(wait)
	}
	s := &u.sys
	s.rxWait, s.rxWaited, s.rxErr = wait, false, nil
	err := u.raw.Read(s.recv)
	b := s.rxBatch
	s.rxBatch = nil
	if err == nil {
		err = s.rxErr
	}
	if err != nil {
		if b != nil {
			b.release()
		}
		if errors.Is(err, unix.ENOSYS) {
			// No recvmmsg: one datagram per call from now on, and so no
			// GRO, whose segment size only recvmmsg reads.
			u.rxBatched = false
			if u.rxGRO {
				u.rxGRO = false
				_ = u.raw.Control(func(fd uintptr) {
					_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 0)
				})
				u.rxSize = u.set.core.MaxDatagramSize
			}
			u.setRxPool()
		}
		return nil, err
	}
	return b, nil
}

func (u *udpSocket) recvmmsg(fd uintptr) bool {
	s := &u.sys
	if s.rxOne && s.rxWait && !s.rxWaited && s.rxBatch == nil {
		// A lone datagram is most likely not there yet (the reply to what
		// was just sent): look without borrowing and setting up a batch.
		_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&s.peek[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EAGAIN {
			s.rxWaited = true
			return false
		}
		if errno != 0 && errno != unix.EINTR {
			// The socket's pending error (an ICMP report), which the peek
			// took: the read that follows would not see it.
			s.rxErr = errno
			return true
		}
	}
	if s.rxBatch == nil {
		if s.rxOne {
			s.rxBatch = u.rxLonePool.Get().(*rxBatch)
		} else {
			s.rxBatch = u.rxPool.Get().(*rxBatch)
		}
	}
	b := s.rxBatch
	hdrs := b.sys.hdrs
	if s.rxOne {
		hdrs = hdrs[:1]
	}
	for i := range hdrs {
		h := &b.sys.hdrs[i]
		h.Hdr.Namelen = unix.SizeofSockaddrInet6
		h.Hdr.Flags = 0
		h.Len = 0
		if u.rxGRO {
			h.Hdr.Control = &b.sys.cmsgs[i*groCmsgSpace]
			h.Hdr.SetControllen(groCmsgSpace)
		} else {
			h.Hdr.Control = nil
			h.Hdr.SetControllen(0)
		}
	}
	for {
		var n uintptr
		var errno syscall.Errno
		if s.rxOne {
			// One datagram at a time (see rxOne): recvmsg, which does not
			// look for a second datagram as recvmmsg does.
			n, _, errno = unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&b.sys.hdrs[0].Hdr)), 0)
			if errno == 0 {
				b.sys.hdrs[0].Len = uint32(n)
				n = 1
			}
		} else {
			n, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, fd,
				uintptr(unsafe.Pointer(&b.sys.hdrs[0])), uintptr(len(b.sys.hdrs)), 0, 0, 0)
		}
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN && s.rxWait:
			// Hold no buffer while waiting: an idle socket owns none.
			b.release()
			s.rxBatch = nil
			s.rxWaited = true
			return false
		case errno != 0:
			s.rxErr = errno
			return true
		}
		// A read that found datagrams waiting may find more the next
		// time: batch. One that had to wait and got a lone datagram is
		// request-response traffic: read one at a time.
		s.rxOne = s.rxWaited && n == 1
		s.rxWaited = false
		b.n = int(n)
		for i := range b.n {
			h := &b.sys.hdrs[i]
			b.lens[i] = int(h.Len)
			b.segs[i] = 0
			if h.Hdr.Controllen != 0 {
				c := b.sys.cmsgs[i*groCmsgSpace:]
				b.segs[i] = groSegmentSize(c[:min(int(h.Hdr.Controllen), len(c))])
			}
			b.from[i] = sockaddrAddrPort(&b.sys.names[i])
		}
		s.rxBatch = smallRead(b)
		return true
	}
}

// groSegmentSize returns the datagram size a UDP_GRO control message in c
// gives, or 0 when there is none (the buffer is one datagram).
func groSegmentSize(c []byte) int {
	for len(c) >= unix.CmsgLen(0) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		n := int(h.Len)
		if n < unix.CmsgLen(0) || n > len(c) {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && n >= unix.CmsgLen(4) {
			return int(*(*int32)(unsafe.Pointer(&c[unix.CmsgLen(0)])))
		}
		c = c[min(unix.CmsgSpace(n-unix.CmsgLen(0)), len(c)):]
	}
	return 0
}

// sockaddrAddrPort decodes a received sockaddr_in or sockaddr_in6.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	if sa.Family == unix.AF_INET {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
}

// send hands the kernel b's datagrams for to: in one sendmmsg call when it
// can, with GSO when the socket offers it. A datagram the kernel refuses is
// lost (recovery repairs it); GSO that fails is turned off for the socket,
// and batch calls the kernel lacks too.
func (u *udpSocket) send(b *txBatch, to netip.AddrPort) {
	if len(b.lens) == 0 {
		return
	}
	if len(b.lens) == 1 && b.parts[0].data == nil {
		// A lone datagram (a request, a reply, an acknowledgement): one
		// plain sendto costs less than packing a sendmmsg.
		u.writeTo(b.buf[:b.lens[0]], to)
		return
	}
	s := &b.sys
	if !u.txBatched.Load() || !s.setName(to, u.sys.v6) {
		u.sendEach(b, 0, to)
		return
	}
	gso := u.gso.Load()
	s.pack(b, 0, gso)
	retried := 0 // the message at s.sent failed with a pending report's error (see reportRetries)
	for s.sent < s.msgs {
		if err := u.raw.Write(s.call); err != nil {
			return // the socket is closed
		}
		if s.errno == 0 {
			s.sent += s.k
			retried = 0
			continue
		}
		failed := s.sent
		switch {
		case gso && (s.errno == unix.EIO || s.errno == unix.EINVAL) && s.hdrs[failed].Hdr.Controllen != 0:
			// No checksum offload on the route, or a kernel that takes the
			// option but not this segment size: send them one by one.
			u.gso.Store(false)
			gso = false
			u.set.core.Logger.Debug("rudp: UDP GSO off for socket", "laddr", u.laddr, "err", s.errno)
			s.pack(b, s.first[failed], false)
		case s.errno == unix.ENOSYS:
			u.txBatched.Store(false)
			u.sendEach(b, s.first[failed], to)
			return
		case s.errno == unix.EAGAIN:
			return // the rest is lost, as datagrams a full queue drops
		case retried < reportRetries && isPendingReport(s.errno):
			// Most likely not this datagram's error: send it again.
			u.failed(s.errno)
			retried++
		default:
			u.failed(s.errno)
			s.sent++ // lost, as a datagram the network drops
			retried = 0
		}
	}
}
