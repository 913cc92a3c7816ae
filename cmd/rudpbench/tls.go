package main

import (
	"crypto/tls"
	"time"

	"github.com/rudp-go/rudp/internal/testcert"
)

// benchTLS is -tls's configs: a self-signed ECDSA P-256 certificate for
// the loopback addresses and "localhost", made at start, served by the
// listeners and trusted by the dialers (which fill ServerName from the
// address they dial: an IP literal, checked against the certificate's IP
// addresses).
type benchTLS struct {
	server, client *tls.Config
}

func newBenchTLS() (*benchTLS, error) {
	now := time.Now()
	cert, roots, err := testcert.SelfSigned([]string{"localhost", "127.0.0.1", "::1"}, now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	return &benchTLS{
		server: &tls.Config{Certificates: []tls.Certificate{cert}},
		client: &tls.Config{RootCAs: roots},
	}, nil
}
