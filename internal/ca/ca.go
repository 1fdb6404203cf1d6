// Package ca is keybound's certificate authorities: it creates (or loads)
// the key pairs in the data directory and signs certificates with them. The
// local CA (Authority) issues the server certificate of the HTTPS listeners;
// the workload CA (Issuer: an ECDSA P-256 root and an intermediate, or an
// operator-supplied CA) signs the workload client certificates and CRLs
// that package workload decides to issue. It decides nothing about who gets
// a certificate.
//
// It never writes a private key with permissions wider than 0600, and never
// logs or returns one in a printable form.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside the TLS directory.
const (
	CACertFile     = "ca.pem"
	caKeyFile      = "ca-key.pem"
	ServerCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"
)

// Lifetimes. The CA lives long because operators pin it (curl --cacert); the
// server certificate is re-issued at every start if it is within a week of
// expiry or does not cover the requested names.
const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 90 * 24 * time.Hour
	renewBefore    = 7 * 24 * time.Hour
)

// Authority holds the CA certificate and its signer.
type Authority struct {
	Cert *x509.Certificate
	key  crypto.Signer
	// CertPEM is the CA certificate as written to ca.pem.
	CertPEM []byte
}

// String keeps the key out of logs and fmt output.
func (a *Authority) String() string { return "ca.Authority(" + a.Cert.Subject.CommonName + ")" }

// LoadOrCreate loads the CA from dir, creating dir (0700) and a new ECDSA
// P-256 CA on first use.
func LoadOrCreate(dir string, now time.Time) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, caKeyFile)
	if _, err := os.Stat(certPath); err == nil {
		return load(certPath, keyPath)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("ca: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "keybound local CA", Organization: []string{"keybound"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	cert, key, err := createPair(certPath, keyPath, tmpl, nil, nil)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, key: key, CertPEM: certsPEM([]*x509.Certificate{cert})}, nil
}

func load(certPath, keyPath string) (*Authority, error) {
	cert, key, err := loadPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, key: key, CertPEM: certsPEM([]*x509.Certificate{cert})}, nil
}

// ServerCertificate returns a TLS certificate for hosts (DNS names or IPs),
// re-using the one in dir when it is still valid for a week and covers every
// host, issuing and writing a new one otherwise.
func (a *Authority) ServerCertificate(dir string, hosts []string, now time.Time) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, ServerCertFile), filepath.Join(dir, serverKeyFile)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && c.Leaf != nil && covers(c.Leaf, hosts) && now.Add(renewBefore).Before(c.Leaf.NotAfter) {
		return c, nil
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"keybound"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if _, _, err := createPair(certPath, keyPath, tmpl, a.Cert, a.key); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

// Pool returns a certificate pool holding only this CA.
func (a *Authority) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.Cert)
	return p
}

// IssueClientCertificate signs a client certificate for pub with the given
// subject and URIs (SPIFFE IDs), valid for lifetime.
func (a *Authority) IssueClientCertificate(pub crypto.PublicKey, subject pkix.Name, dnsNames []string, lifetime time.Duration, now time.Time) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		DNSNames:     dnsNames,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, pub, a.key)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return x509.ParseCertificate(der)
}

// Thumbprint is the SHA-256 of a certificate's DER: the value x5t#S256
// carries base64url-encoded (RFC 8705 section 3.1).
func Thumbprint(der []byte) [32]byte { return sha256.Sum256(der) }

func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("ca: crypto/rand failed: " + err.Error())
	}
	return n
}

// createPair generates an ECDSA P-256 key, signs tmpl for it with parent
// and parentKey (or self-signs when parent is nil), and writes the key
// (0600) to keyPath and the certificate (0644) to certPath.
func createPair(certPath, keyPath string, tmpl, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(certPath, certsPEM([]*x509.Certificate{cert}), 0o644); err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	return cert, key, nil
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	// O_EXCL is not used: re-issuing the server key replaces the old one.
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return os.Chmod(path, 0o600)
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("ca: %s holds no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: %s: not a signing key", path)
	}
	return s, nil
}

// readCert reads a file holding one PEM certificate.
func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	c, err := parseCertPEM(b)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", path, err)
	}
	return c, nil
}

// holdsKeyOf reports whether k is the private key of c.
func holdsKeyOf(k crypto.Signer, c *x509.Certificate) bool {
	pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(c.PublicKey)
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(blk.Bytes)
}
