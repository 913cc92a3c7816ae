//go:build !unix

package rudp

import (
	"errors"
	"net/netip"
	"syscall"
)

var errNoManualRead = errors.New("rudp: Manual mode needs a unix platform")

// readNonBlocking would read one ready datagram; Manual mode's non-blocking
// read is implemented for unix platforms only.
func readNonBlocking(syscall.RawConn, []byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, errNoManualRead
}
