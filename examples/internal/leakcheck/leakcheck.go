// Package leakcheck checks that an example left no goroutine behind.
package leakcheck

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// settle bounds how long Verify waits for goroutines to end by themselves.
//
// Closing a rudp connection does not end it at once: a side whose CLOSE
// is unacknowledged sends it again (up to 10 copies over about 35 probe
// timeouts), and a side that saw both CLOSEs lingers 3 probe timeouts to
// acknowledge the peer's again (see docs/PROTOCOL.md §8.2). Until then the
// socket and its reader goroutine stay open, past goleak's own retries on
// a slow or loaded machine.
const settle = 10 * time.Second

// Verify fails t if goroutines other than the test's own are still running
// once they had settle to end.
func Verify(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for goleak.Find() != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	goleak.VerifyNone(t)
}
