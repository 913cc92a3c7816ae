// Package testhooks holds knobs that the tests and benchmarks of other
// packages in this module set to reach a state the public API does not
// offer. Nothing outside a test sets them: each is zero in production,
// and zero means the behaviour the documentation describes. A knob is
// read where it applies (not cached), so a test sets it before the
// connections it is for start and resets it after (Set returns the
// reset); tests that set one do not run in parallel with others that
// depend on it.
package testhooks

import "sync/atomic"

// PSKSuite is the TLS 1.3 cipher suite a pre-shared key (Noise) handshake
// keys packet protection with (tls.TLS_AES_128_GCM_SHA256,
// TLS_AES_256_GCM_SHA384 or TLS_CHACHA20_POLY1305_SHA256); 0: the
// documented one, AES-128-GCM. crypto/tls offers no way to choose a TLS
// 1.3 suite, so this is how a benchmark over real sockets measures the
// other two (rudp's BenchmarkBulkProtected). Both ends must agree: it is
// process-wide.
var PSKSuite atomic.Uint32

// SetPSKSuite sets PSKSuite to suite and returns what restores the old
// value.
func SetPSKSuite(suite uint16) (restore func()) {
	old := PSKSuite.Swap(uint32(suite))
	return func() { PSKSuite.Store(old) }
}
