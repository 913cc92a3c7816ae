package core

// Packet numbers, message sequences and delivery indexes travel as their low
// 32 bits and wrap around; inside, each is a uint64 counter that never wraps.
// unwrap32 recovers the full value from the low bits by serial-number
// arithmetic (RFC 1982): the candidate closest to the value expected next.
func unwrap32(expected uint64, v uint32) uint64 {
	const window = uint64(1) << 32
	const half = window / 2
	candidate := expected&^(window-1) | uint64(v)
	switch {
	case candidate+half <= expected:
		return candidate + window
	case candidate > expected+half && candidate >= window:
		return candidate - window
	}
	return candidate
}
