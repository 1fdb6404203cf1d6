package workload

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
)

// ParseCSR reads a PKCS#10 certificate request (RFC 2986) in PEM or DER,
// checks its self-signature (the workload proves it holds the key) and its
// key. It accepts ECDSA P-256, P-384 and P-521, Ed25519, and RSA of 2048 to
// 8192 bits with a public exponent of at least 65537.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) == 0 {
		return nil, refuse(ErrBadRequest, "the CSR is empty; send a PKCS#10 certificate request in PEM or DER")
	}
	if len(b) > MaxCSRBytes {
		return nil, refuse(ErrBadRequest, fmt.Sprintf("the CSR is larger than %d bytes", MaxCSRBytes))
	}
	der := b
	if blk, rest := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
			return nil, refuse(ErrBadRequest, fmt.Sprintf("the PEM block is %q; send a CERTIFICATE REQUEST", truncate(blk.Type, 40)))
		}
		if next, _ := pem.Decode(rest); next != nil {
			return nil, refuse(ErrBadRequest, "send exactly one CERTIFICATE REQUEST PEM block")
		}
		der = blk.Bytes
	} else if strings.HasPrefix(strings.TrimSpace(string(b[:min(len(b), 64)])), "-----BEGIN") {
		return nil, refuse(ErrBadRequest, "the CSR is not valid PEM")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, refuseWrap(ErrBadRequest, "the CSR is not a valid PKCS#10 certificate request", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, refuseWrap(ErrBadRequest, "the CSR signature does not verify with its own public key; sign it with the key to be certified", err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, err
	}
	return csr, nil
}

// checkKey refuses weak or unsupported public keys.
func checkKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return refuse(ErrWeakKey, "the CSR's ECDSA key is not on P-256, P-384 or P-521")
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < MinRSABits {
			return refuse(ErrWeakKey, fmt.Sprintf("the CSR's RSA key has %d bits; at least %d are required (an ECDSA P-256 key is better)", bits, MinRSABits))
		}
		if bits > MaxRSABits {
			return refuse(ErrWeakKey, fmt.Sprintf("the CSR's RSA key has %d bits; at most %d are accepted", bits, MaxRSABits))
		}
		if k.E < 65537 || k.E%2 == 0 {
			return refuse(ErrWeakKey, "the CSR's RSA public exponent must be odd and at least 65537")
		}
		return nil
	}
	return refuse(ErrWeakKey, "the CSR's key type is not supported; use ECDSA P-256, Ed25519 or RSA of at least 2048 bits")
}

// checkIdentity refuses a CSR that asks for any identity other than the
// enrolling one. A CSR may leave the identity out (keybound fills it in);
// if it names one, its URI SAN must be spiffeID and its subject common name,
// if any, the client id or spiffeID. DNS, IP and email SANs are never
// issued, so asking for them is a mismatch too.
func checkIdentity(csr *x509.CertificateRequest, clientID, spiffeID string) error {
	mismatch := func(what string) error {
		return refuse(ErrIdentityMismatch, fmt.Sprintf("the CSR requests %s, but it enrolls as %s; leave the identity out of the CSR or request exactly %s", what, spiffeID, spiffeID))
	}
	switch {
	case len(csr.URIs) > 1:
		return mismatch(fmt.Sprintf("%d URI SANs", len(csr.URIs)))
	case len(csr.URIs) == 1 && csr.URIs[0].String() != spiffeID:
		return mismatch("the URI " + quoteShort(csr.URIs[0].String()))
	case len(csr.DNSNames) > 0:
		return mismatch("the DNS name " + quoteShort(csr.DNSNames[0]))
	case len(csr.IPAddresses) > 0:
		return mismatch("the IP address " + csr.IPAddresses[0].String())
	case len(csr.EmailAddresses) > 0:
		return mismatch("an email address")
	}
	if cn := csr.Subject.CommonName; cn != "" && cn != clientID && cn != spiffeID {
		return mismatch("the common name " + quoteShort(cn))
	}
	return nil
}

func quoteShort(s string) string { return fmt.Sprintf("%q", truncate(s, 80)) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
