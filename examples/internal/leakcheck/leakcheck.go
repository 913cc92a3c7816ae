// Package leakcheck checks that an example left no goroutine behind.
package leakcheck

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// settle bounds how long Verify waits for goroutines to end by themselves.
//
// Closing a rudp connection after its peer closed does not end it at once:
// its own CLOSE waits for an acknowledgement (up to 24 probe timeouts, see
// maybeSendClose in core/conn.go) that the peer, whose connection ended when
// its CLOSE was acknowledged, never sends. Until then the listener's socket
// and its reader goroutine stay open, well past goleak's own retries.
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
