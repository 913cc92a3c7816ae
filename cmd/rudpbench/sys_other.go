//go:build !unix

package main

import "time"

// cpuTime is not measured on this platform: the CPU figures read 0.
func cpuTime() time.Duration { return 0 }

// fdLimit is unknown here (0): the conns scenario does not cap K by it.
func fdLimit() uint64 { return 0 }
