package impair

import (
	"testing"
	"time"
)

// BenchmarkProxyThroughput blasts 1200-byte datagrams from one client through
// an unimpaired Proxy to a counting sink. Datagrams the kernel drops because
// the proxy falls behind are not delivered; the delivered-MB/s metric counts
// only what reached the sink.
func BenchmarkProxyThroughput(b *testing.B) {
	const size = 1200
	sink := newCollectorCounting(b)
	p := newProxy(b, sink.conn.LocalAddr().String(), Config{}, Config{})
	c := dialProxy(b, p)
	_ = c.SetWriteBuffer(4 << 20)
	msg := make([]byte, size)
	b.SetBytes(size)
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	sink.settle(20*time.Millisecond, time.Second)
	elapsed := time.Since(start)
	got := sink.count.Load()
	b.ReportMetric(float64(got*size)/elapsed.Seconds()/1e6, "delivered-MB/s")
	b.ReportMetric(100*float64(got)/float64(b.N), "delivered-%")
}

// newCollectorCounting is a collector that only counts, so that recording
// does not slow the sink down.
func newCollectorCounting(b *testing.B) *collector {
	c := &collector{conn: listenUDP(b)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		for {
			n, err := c.conn.Read(buf)
			if err != nil {
				if isClosed(err) {
					return
				}
				continue
			}
			c.bytes.Add(int64(n))
			c.count.Add(1)
		}
	}()
	b.Cleanup(func() { c.conn.Close(); <-done })
	return c
}
