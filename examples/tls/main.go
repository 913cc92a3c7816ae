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
	"bytes"
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
	"os"
	"os/signal"
	"slices"
	"time"

	"github.com/rudp-go/rudp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "tls:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	defer func() {
		// After a timeout or ^C, the I/O error it caused (net.ErrClosed)
		// says less than why. (ctx is the timeout's context below.)
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
	}()
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
		return fmt.Errorf("client: TLS handshake: %w", err)
	}
	state := conn.ConnectionState()
	fmt.Fprintf(out, "client: TLS handshake done in %v: %s, %s, server certificate %q verified\n",
		time.Since(start).Round(time.Microsecond), tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite),
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
		return fmt.Errorf("client: %w", err)
	}
	if !bytes.Equal(payload, echo) {
		return errors.New("client: the echo differs from what was sent")
	}
	elapsed := time.Since(start)
	fmt.Fprintf(out, "client: %d MiB echoed through TLS and verified in %v (%.1f MiB/s each way)\n",
		*sizeMiB, elapsed.Round(time.Microsecond), float64(len(payload))/(1<<20)/elapsed.Seconds())
	s := raw.Stats()
	fmt.Fprintf(out, "client: rudp stats: RTT %v, %d bytes sent / %d received in %d / %d packets, %d lost, %d fragments retransmitted\n",
		s.RTT.Smoothed.Round(time.Microsecond), s.BytesSent, s.BytesReceived, s.PacketsSent, s.PacketsReceived,
		s.PacketsLost, s.FragmentsRetransmitted)

	// tls.Conn.Close sends close_notify, then closes the rudp connection
	// gracefully: the server reads io.EOF.
	if err := conn.Close(); err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	select {
	case err = <-served:
	case <-ctx.Done():
		return errors.New("server did not finish")
	}
	if err != nil {
		return fmt.Errorf("server: %w", err)
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
