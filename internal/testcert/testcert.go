// Package testcert makes certificate authorities and certificates for
// tests of TLS connections: a CA made in the test, a leaf it signs for
// given names and validity, and the pool that trusts the CA. ECDSA P-256
// keys (small certificates, fast signatures) unless a leaf's key is given
// (LeafWithKey). Not for production.
package testcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"time"
)

// CA is a certificate authority made for a test. Safe for concurrent use.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// Pool trusts the CA alone (a tls.Config's RootCAs or ClientCAs).
	Pool *x509.CertPool
}

// NewCA makes a self-signed CA named name, valid from notBefore to notAfter.
func NewCA(name string, notBefore, notAfter time.Time) (*CA, error) {
	return newSelfSigned(pkix.Name{CommonName: name}, nil, notBefore, notAfter)
}

// SelfSigned makes a self-signed ECDSA P-256 certificate for names (as
// Leaf's: DNS names and IP addresses), valid from notBefore to notAfter,
// for server authentication: the certificate a server serves and the pool
// a client trusts it by.
func SelfSigned(names []string, notBefore, notAfter time.Time) (tls.Certificate, *x509.CertPool, error) {
	ca, err := newSelfSigned(pkix.Name{CommonName: names[0]}, names, notBefore, notAfter)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{ca.Cert.Raw}, PrivateKey: ca.Key, Leaf: ca.Cert}, ca.Pool, nil
}

// newSelfSigned makes a self-signed CA certificate for subject and names.
func newSelfSigned(subject pkix.Name, names []string, notBefore, notAfter time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	dns, ips := splitNames(names)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               subject,
		DNSNames:              dns,
		IPAddresses:           ips,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, Pool: pool}, nil
}

// splitNames splits a certificate's names into DNS names and IP addresses.
func splitNames(names []string) (dns []string, ips []net.IP) {
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	return dns, ips
}

// Leaf makes a certificate the CA signs for dnsNames (the first is also
// the subject's name; a name that is an IP address goes in the IP
// addresses), valid from notBefore to notAfter, for both server and
// client authentication, with an ECDSA P-256 key.
func (ca *CA) Leaf(dnsNames []string, notBefore, notAfter time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	return ca.LeafWithKey(dnsNames, notBefore, notAfter, key)
}

// LeafWithKey is Leaf with the leaf's key (an *ecdsa.PrivateKey,
// *rsa.PrivateKey or ed25519.PrivateKey).
func (ca *CA) LeafWithKey(dnsNames []string, notBefore, notAfter time.Time, key crypto.Signer) (tls.Certificate, error) {
	names, ips := splitNames(dnsNames)
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     names,
		IPAddresses:  ips,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
