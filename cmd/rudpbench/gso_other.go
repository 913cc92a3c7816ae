//go:build !linux

package main

import (
	"errors"
	"net"
)

func enableGRO(*net.UDPConn) error {
	return errors.New("UDP GSO and GRO are Linux's: no udpgso baseline on this platform")
}

func gsoControl(int) []byte { return nil }

const groControlSpace = 0

func groSegment([]byte) int { return 0 }
