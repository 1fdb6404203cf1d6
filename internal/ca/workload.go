package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Workload CA files inside the TLS directory. The root key is read only when
// the intermediate must be (re-)issued, so an operator may move it offline
// between intermediate renewals.
const (
	WorkloadRootFile   = "workload-root-ca.pem"
	workloadRootKey    = "workload-root-ca-key.pem"
	WorkloadIssuerFile = "workload-ca.pem"
	workloadIssuerKey  = "workload-ca-key.pem"
)

// Workload CA lifetimes. The root is what relying parties pin (the trust
// bundle); the intermediate signs every workload certificate and is
// re-issued at start when it is within IntermediateRenewBefore of expiry,
// so it always outlives the longest workload certificate by weeks.
const (
	workloadRootLifetime    = 10 * 365 * 24 * time.Hour
	intermediateLifetime    = 365 * 24 * time.Hour
	IntermediateRenewBefore = 30 * 24 * time.Hour
)

// Issuer is the workload CA as issuance sees it: the issuing CA certificate
// and its signer, the intermediates a leaf presents after itself, and the
// roots relying parties trust (the trust bundle).
//
// It is safe for concurrent use; it never exposes its key.
type Issuer struct {
	// Cert is the issuing CA certificate.
	Cert *x509.Certificate
	// Chain is what a leaf presents after itself: Cert first, then any
	// further intermediates, never the root. Empty when Cert is the root.
	Chain []*x509.Certificate
	// Roots are the trust anchors of issued certificates.
	Roots []*x509.Certificate
	// External is set for an operator-supplied CA (LoadWorkloadIssuer),
	// whose root may sign other CAs too; keybound's own root signs only
	// its intermediates.
	External bool
	key      crypto.Signer
}

// String keeps the key out of logs and fmt output.
func (i *Issuer) String() string { return "ca.Issuer(" + i.Cert.Subject.CommonName + ")" }

// LoadOrCreateWorkload loads keybound's own workload CA from dir: an ECDSA
// P-256 root and an intermediate under it whose name constraints permit
// only URIs in trustDomain. Missing files are created on first use; an
// intermediate that is near expiry, not issued by the root, or constrained
// to another trust domain is re-issued (which needs the root key).
func LoadOrCreateWorkload(dir, trustDomain string, now time.Time) (*Issuer, error) {
	if trustDomain == "" {
		return nil, errors.New("ca: workload CA needs a trust domain")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	rootPath, rootKeyPath := filepath.Join(dir, WorkloadRootFile), filepath.Join(dir, workloadRootKey)
	interPath, interKeyPath := filepath.Join(dir, WorkloadIssuerFile), filepath.Join(dir, workloadIssuerKey)

	var root *x509.Certificate
	var rootKey crypto.Signer
	if _, err := os.Stat(rootPath); errors.Is(err, os.ErrNotExist) {
		tmpl := &x509.Certificate{
			SerialNumber:          serial(),
			Subject:               pkix.Name{CommonName: "keybound workload root CA", Organization: []string{"keybound"}, OrganizationalUnit: []string{trustDomain}},
			NotBefore:             now.Add(-time.Minute),
			NotAfter:              now.Add(workloadRootLifetime),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLen:            1,
		}
		if root, rootKey, err = createPair(rootPath, rootKeyPath, tmpl, nil, nil); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	} else if root, err = readCert(rootPath); err != nil {
		return nil, err
	}

	inter, interKey, err := loadPair(interPath, interKeyPath)
	if err == nil && inter.CheckSignatureFrom(root) == nil && slices.Equal(inter.PermittedURIDomains, []string{trustDomain}) &&
		now.Add(IntermediateRenewBefore).Before(inter.NotAfter) {
		return &Issuer{Cert: inter, Chain: []*x509.Certificate{inter}, Roots: []*x509.Certificate{root}, key: interKey}, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if rootKey == nil {
		if rootKey, err = readKey(rootKeyPath); err != nil {
			return nil, fmt.Errorf("ca: the workload intermediate must be re-issued and needs the root key: %w", err)
		}
	}
	if !now.Add(intermediateLifetime).Before(root.NotAfter) {
		return nil, fmt.Errorf("ca: the workload root %s expires %s, before a new intermediate would; replace the root (remove %s and %s) and redistribute the trust bundle",
			rootPath, root.NotAfter.Format(time.RFC3339), rootPath, rootKeyPath)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "keybound workload CA", Organization: []string{"keybound"}, OrganizationalUnit: []string{trustDomain}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(intermediateLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		// Defence in depth: even a mis-issued leaf cannot name an identity
		// outside the trust domain and still verify.
		PermittedURIDomains: []string{trustDomain},
	}
	inter, interKey, err = createPair(interPath, interKeyPath, tmpl, root, rootKey)
	if err != nil {
		return nil, err
	}
	return &Issuer{Cert: inter, Chain: []*x509.Certificate{inter}, Roots: []*x509.Certificate{root}, key: interKey}, nil
}

// LoadWorkloadIssuer loads an operator-supplied workload CA: certFile holds
// the issuing CA certificate first, optionally followed by its chain up to a
// root; keyFile holds the issuing CA's private key (PKCS#8, PKCS#1 or SEC 1
// PEM). The last certificate in certFile is the trust anchor. The issuing
// certificate must be a CA allowed to sign certificates and CRLs, valid at
// now, and match the key.
func LoadWorkloadIssuer(certFile, keyFile string, now time.Time) (*Issuer, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("ca: workload CA certificate: %w", err)
	}
	var certs []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca: %s: %w", certFile, err)
		}
		certs = append(certs, c)
		if len(certs) > 8 {
			return nil, fmt.Errorf("ca: %s holds more than 8 certificates", certFile)
		}
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("ca: %s holds no CERTIFICATE PEM block", certFile)
	}
	key, err := readAnyKey(keyFile)
	if err != nil {
		return nil, err
	}
	issuer := certs[0]
	switch {
	case !issuer.IsCA || !issuer.BasicConstraintsValid:
		return nil, fmt.Errorf("ca: %s: the first certificate is not a CA certificate", certFile)
	case issuer.KeyUsage&x509.KeyUsageCertSign == 0 || issuer.KeyUsage&x509.KeyUsageCRLSign == 0:
		return nil, fmt.Errorf("ca: %s: the CA certificate must allow keyCertSign and cRLSign", certFile)
	case now.Before(issuer.NotBefore) || !now.Before(issuer.NotAfter):
		return nil, fmt.Errorf("ca: %s: the CA certificate is not valid now (%s to %s)", certFile, issuer.NotBefore.Format(time.RFC3339), issuer.NotAfter.Format(time.RFC3339))
	}
	if !holdsKeyOf(key, issuer) {
		return nil, fmt.Errorf("ca: %s does not hold the key of the CA certificate in %s", keyFile, certFile)
	}
	for i := 1; i < len(certs); i++ {
		if err := certs[i-1].CheckSignatureFrom(certs[i]); err != nil {
			return nil, fmt.Errorf("ca: %s: certificate %d is not issued by certificate %d: %w", certFile, i, i+1, err)
		}
	}
	anchor := certs[len(certs)-1]
	chain := certs[:len(certs)-1]
	if len(certs) == 1 {
		chain = nil
	}
	return &Issuer{Cert: issuer, Chain: chain, Roots: []*x509.Certificate{anchor}, External: true, key: key}, nil
}

// Issue signs tmpl for pub with the issuing CA (x509.CreateCertificate;
// the authority key identifier comes from Cert). tmpl must not outlive Cert.
func (i *Issuer) Issue(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	if tmpl.NotAfter.After(i.Cert.NotAfter) {
		return nil, fmt.Errorf("ca: the certificate would outlive its issuer (until %s)", i.Cert.NotAfter.Format(time.RFC3339))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.Cert, pub, i.key)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return x509.ParseCertificate(der)
}

// CreateCRL signs tmpl as a CRL of the issuing CA (RFC 5280 section 5) and
// returns its DER.
func (i *Issuer) CreateCRL(tmpl *x509.RevocationList) ([]byte, error) {
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, i.Cert, i.key)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return der, nil
}

// IssuedBy reports whether c names this issuer as its issuer (same issuer
// name and, when both are present, the same key identifier). It checks no
// signature: use it on certificates whose chain was already verified.
func (i *Issuer) IssuedBy(c *x509.Certificate) bool {
	if !bytes.Equal(c.RawIssuer, i.Cert.RawSubject) {
		return false
	}
	if len(c.AuthorityKeyId) > 0 && len(i.Cert.SubjectKeyId) > 0 {
		return bytes.Equal(c.AuthorityKeyId, i.Cert.SubjectKeyId)
	}
	return true
}

// Pool returns a pool of the roots.
func (i *Issuer) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, r := range i.Roots {
		p.AddCert(r)
	}
	return p
}

// BundlePEM returns the roots as PEM: the trust bundle.
func (i *Issuer) BundlePEM() []byte { return certsPEM(i.Roots) }

// ChainPEM returns Chain as PEM, to append after an issued leaf.
func (i *Issuer) ChainPEM() []byte { return certsPEM(i.Chain) }

func certsPEM(cs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range cs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// loadPair reads a certificate and its PKCS#8 key written by this package.
// A missing certificate is os.ErrNotExist (wrapped).
func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	c, err := readCert(certPath)
	if err != nil {
		return nil, nil, err
	}
	k, err := readKey(keyPath)
	if err != nil {
		return nil, nil, err
	}
	if !holdsKeyOf(k, c) {
		return nil, nil, fmt.Errorf("ca: %s does not hold the key of %s", keyPath, certPath)
	}
	return c, k, nil
}

// readAnyKey reads a PEM private key in PKCS#8, PKCS#1 (RSA) or SEC 1 (EC)
// form, as operators' tooling writes them.
func readAnyKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: workload CA key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("ca: %s holds no PEM block", path)
	}
	var k any
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("ca: %s: unsupported PEM block %q; use a PKCS#8, PKCS#1 or SEC 1 private key", path, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: %s: not a signing key", path)
	}
	return s, nil
}
