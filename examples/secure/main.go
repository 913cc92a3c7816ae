// Command secure runs rudp connections protected by rudp itself, no TLS
// layered on top: every packet after the handshake is sealed, so Order and
// None messages, the acknowledgements and the connection's own frames are
// protected too (a forged CLOSE or ACK is dropped).
//
// With TLS (Config.TLS): the server's certificate is made at run time
// (ECDSA P-256, self-signed) and the client trusts exactly it. With a
// pre-shared key (Config.PSK, 32 bytes): both sides hold the key, no
// certificates. Each mode echoes a message through a fresh connection, then
// shows the handshake failing cleanly: a client that trusts another
// certificate, and one holding another key, fail Dial at once with an error
// that says why.
//
//	go run ./examples/secure
//	go run ./examples/secure -mode psk -psk 000102...1f
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
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/rudp-go/rudp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "secure:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("secure", flag.ContinueOnError)
	mode := fs.String("mode", "both", "`tls`, psk or both")
	pskHex := fs.String("psk", "", "the pre-shared key, 64 hex digits (default: a random one)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	switch *mode {
	case "tls", "psk", "both":
	default:
		return fmt.Errorf("-mode %q: want tls, psk or both", *mode)
	}
	if *mode != "psk" {
		if err := runTLS(ctx, out); err != nil {
			return err
		}
	}
	if *mode != "tls" {
		psk := make([]byte, 32)
		if *pskHex != "" {
			var err error
			if psk, err = hex.DecodeString(*pskHex); err != nil || len(psk) != 32 {
				return fmt.Errorf("-psk: want 64 hex digits (32 bytes)")
			}
		} else {
			rand.Read(psk)
		}
		if err := runPSK(ctx, out, psk); err != nil {
			return err
		}
	}
	return nil
}

func runTLS(ctx context.Context, out io.Writer) error {
	cert, err := selfSignedCert("localhost")
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	server := &rudp.Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}
	client := &rudp.Config{TLS: &tls.Config{ServerName: "localhost", RootCAs: roots}}
	fmt.Fprintln(out, "== TLS 1.3 (Config.TLS)")
	if err := echoOnce(ctx, out, server, client); err != nil {
		return err
	}
	other, err := selfSignedCert("localhost")
	if err != nil {
		return err
	}
	stranger := x509.NewCertPool()
	stranger.AddCert(other.Leaf)
	return refused(ctx, out, server, &rudp.Config{TLS: &tls.Config{ServerName: "localhost", RootCAs: stranger}},
		"a client trusting another certificate")
}

func runPSK(ctx context.Context, out io.Writer, psk []byte) error {
	fmt.Fprintln(out, "== pre-shared key (Config.PSK, Noise NNpsk0)")
	cfg := &rudp.Config{PSK: psk}
	if err := echoOnce(ctx, out, cfg, cfg); err != nil {
		return err
	}
	wrong := bytes.Clone(psk)
	wrong[0] ^= 1
	return refused(ctx, out, cfg, &rudp.Config{PSK: wrong}, "a client holding another key")
}

// echoOnce listens with server, dials with client, and has one message
// echoed.
func echoOnce(ctx context.Context, out io.Writer, server, client *rudp.Config) error {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", server)
	if err != nil {
		return err
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.AcceptRUDP()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(c, c) // echo until the client's CloseWrite
		served <- err
	}()
	start := time.Now()
	c, err := rudp.DialContext(ctx, "udp", ln.Addr().String(), client)
	if err != nil {
		return fail(ctx, fmt.Errorf("client: %w", err))
	}
	defer c.Close()
	st := c.ConnectionState()
	peer := "no certificates: both sides proved they hold the key"
	if len(st.PeerCertificates) > 0 {
		peer = fmt.Sprintf("server certificate %q verified", st.PeerCertificates[0].Subject.CommonName)
	}
	fmt.Fprintf(out, "client: handshake done in %v, packets sealed with %s; %s\n",
		round(time.Since(start)), tls.CipherSuiteName(st.CipherSuite), peer)
	msg := []byte("hello through a protected rudp connection")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	echo, err := io.ReadAll(c)
	if err != nil {
		return fail(ctx, fmt.Errorf("client: %w", err))
	}
	if !bytes.Equal(echo, msg) {
		return fmt.Errorf("client: echo %q differs from %q", echo, msg)
	}
	fmt.Fprintf(out, "client: echoed %q\n", echo)
	if err := <-served; err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// refused dials server's listener with client, which must fail.
func refused(ctx context.Context, out io.Writer, server, client *rudp.Config, who string) error {
	ln, err := rudp.Listen("udp", "127.0.0.1:0", server)
	if err != nil {
		return err
	}
	defer ln.Close()
	start := time.Now()
	c, err := rudp.DialContext(ctx, "udp", ln.Addr().String(), client)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s was let in", who)
	}
	if !errors.Is(err, rudp.ErrHandshakeFailed) {
		return fmt.Errorf("%s: %w", who, err)
	}
	fmt.Fprintf(out, "%s: Dial failed in %v: %v\n", who, round(time.Since(start)), err)
	return nil
}

// fail prefers the context's error: after a timeout or ^C, the I/O error it
// caused (net.ErrClosed) says less than why.
func fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	}
	return err
}

// round shortens d for printing.
func round(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// selfSignedCert makes a fresh key and a certificate for host signed by
// itself, valid for an hour (as examples/tls does).
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
