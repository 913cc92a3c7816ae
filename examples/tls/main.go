// Command tls runs crypto/tls 1.3 over a rudp connection, unchanged: a rudp
// Conn is a net.Conn with a reliable ordered byte stream, which is all
// tls.Server and tls.Client ask for.
//
// The server's certificate is self-signed and made at run time (ECDSA P-256);
// the client trusts exactly that certificate. The client then sends -size
// MiB (4 by default) through the encrypted connection, the server echoes it,
// and the client checks every byte.
//
//	go run ./examples/tls
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	mathrand "math/rand/v2"
	"net"
	"slices"
	"time"

	"github.com/rudp-go/rudp"
	"github.com/rudp-go/rudp/examples/internal/demo"
)

func main() { demo.Main("tls", run) }

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tls", flag.ContinueOnError)
	sizeMiB := fs.Int("size", 4, "`MiB` to echo through the TLS connection")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sizeMiB < 1 {
		return errors.New("-size must be at least 1")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	cert, err := selfSignedCert("localhost")
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	fmt.Fprintf(out, "made a self-signed ECDSA P-256 certificate for %q, valid until %s\n",
		cert.Leaf.Subject.CommonName, cert.Leaf.NotAfter.Format(time.RFC3339))

	ln, err := rudp.Listen("udp", "127.0.0.1:0", nil)
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Fprintf(out, "server: listening on %s (udp), TLS 1.3 on top\n", ln.Addr())
	served := make(chan error, 1)
	go func() {
		served <- serveOne(tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS13,
		}))
	}()

	raw, err := rudp.DialContext(ctx, "udp", ln.Addr().String(), nil)
	if err != nil {
		return err
	}
	defer raw.Close()
	stopOnCancel := context.AfterFunc(ctx, func() { raw.Close(); ln.Close() })
	defer stopOnCancel()

	conn := tls.Client(raw, &tls.Config{
		ServerName: "localhost",
		RootCAs:    roots,
		MinVersion: tls.VersionTLS13,
	})
	start := time.Now()
	if err := conn.HandshakeContext(ctx); err != nil {
		return demo.Fail(ctx, fmt.Errorf("client: TLS handshake: %w", err))
	}
	state := conn.ConnectionState()
	fmt.Fprintf(out, "client: TLS handshake done in %v: %s, %s, server certificate %q verified\n",
		demo.Round(time.Since(start)), tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite),
		state.PeerCertificates[0].Subject.CommonName)

	payload := make([]byte, *sizeMiB<<20)
	mathrand.NewChaCha8([32]byte{'t', 'l', 's'}).Read(payload)
	start = time.Now()
	wrote := make(chan error, 1)
	go func() {
		for chunk := range slices.Chunk(payload, 64<<10) {
			if _, err := conn.Write(chunk); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	echo := make([]byte, len(payload))
	_, readErr := io.ReadFull(conn, echo)
	if err := errors.Join(<-wrote, readErr); err != nil {
		return demo.Fail(ctx, fmt.Errorf("client: %w", err))
	}
	if i := demo.FirstDifference(payload, echo); i >= 0 {
		return fmt.Errorf("client: echo differs from what was sent at byte %d", i)
	}
	elapsed := time.Since(start)
	fmt.Fprintf(out, "client: %d MiB echoed through TLS and verified in %v (%.1f MiB/s each way)\n",
		*sizeMiB, demo.Round(elapsed), float64(len(payload))/(1<<20)/elapsed.Seconds())
	s := raw.Stats()
	fmt.Fprintf(out, "client: rudp stats: RTT %v, %d bytes sent / %d received in %d / %d packets, %d lost, %d fragments retransmitted\n",
		demo.Round(s.RTT.Smoothed), s.BytesSent, s.BytesReceived, s.PacketsSent, s.PacketsReceived,
		s.PacketsLost, s.FragmentsRetransmitted)

	// tls.Conn.Close sends close_notify, then closes the rudp connection
	// gracefully: the server reads io.EOF.
	if err := conn.Close(); err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	select {
	case err = <-served:
	case <-ctx.Done():
		return demo.Fail(ctx, errors.New("server did not finish"))
	}
	if err != nil {
		return demo.Fail(ctx, fmt.Errorf("server: %w", err))
	}
	fmt.Fprintln(out, "server: echoed everything, read close_notify, closed")
	return ln.Close()
}

// serveOne accepts one TLS connection and echoes it until the client closes.
func serveOne(ln net.Listener) error {
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	_, err = io.Copy(c, c)
	// The client closed first, so the server's own close_notify has nobody
	// to read it; its error says nothing about the echo.
	c.Close()
	return err
}

// selfSignedCert makes a fresh key and a certificate for host signed by
// itself, valid for an hour.
func selfSignedCert(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"rudp example"}},
		DNSNames:              []string{host},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
