package rudp_test

import (
	"bytes"
	"crypto/tls"
	"strconv"
	"testing"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/internal/testhooks"
)

// BenchmarkBulkProtected is the cost of packet protection over real
// loopback sockets: one connection moves 64 KiB writes, in plaintext and
// protected with each of the three TLS 1.3 suites (keyed by a PSK
// handshake, the suite forced by testhooks.PSKSuite: crypto/tls has no knob
// for TLS 1.3 suites), at the default datagram size and at 65000 bytes
// (Config.MaxDatagramSize: on loopback path MTU discovery grows datagrams to
// it, so per-packet costs shrink and the AEAD's per-byte cost is most of
// what protection adds). One binary, one run: compare each suite's MB/s
// and CPU seconds per GiB (cpu-s/GiB, benchWrite's: both ends, the figure
// a loaded machine distorts least) with plaintext's at the same datagram
// size.
//
//	go test -run '^$' -bench BulkProtected -benchtime 2000x -count 3 .
func BenchmarkBulkProtected(b *testing.B) {
	psk := bytes.Repeat([]byte{0x5a}, 32)
	suites := []struct {
		name  string
		suite uint16 // 0: plaintext
	}{
		{"plaintext", 0},
		{"aes128gcm", tls.TLS_AES_128_GCM_SHA256},
		{"aes256gcm", tls.TLS_AES_256_GCM_SHA384},
		{"chacha20", tls.TLS_CHACHA20_POLY1305_SHA256},
	}
	for _, s := range suites {
		b.Run(s.name, func(b *testing.B) {
			for _, datagram := range []int{0, 65000} {
				name := "datagram=" + strconv.Itoa(datagram)
				if datagram == 0 {
					name = "datagram=default"
				}
				b.Run(name, func(b *testing.B) {
					cfg := &rudp.Config{MaxDatagramSize: datagram}
					if s.suite != 0 {
						cfg.PSK = psk
						b.Cleanup(testhooks.SetPSKSuite(s.suite))
					}
					client, server := rudpBenchPairWith(b, cfg)
					if s.suite != 0 {
						for _, c := range []any{client, server} {
							if got := c.(*rudp.Conn).ConnectionState().CipherSuite; got != s.suite {
								b.Fatalf("the connection is protected with %s, not %s", tls.CipherSuiteName(got), tls.CipherSuiteName(s.suite))
							}
						}
					}
					benchWrite(b, client, server, 65536)
				})
			}
		})
	}
}
