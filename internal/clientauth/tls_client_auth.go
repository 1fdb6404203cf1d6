package clientauth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/keybound/keybound/internal/identity"
)

// certificate authenticates a client by the TLS client certificate it
// presented (RFC 8705 section 2), with the method the client registered.
func (a *Authenticator) certificate(ctx context.Context, id string, certs []*x509.Certificate) (*Result, error) {
	c, err := a.getClient(ctx, id)
	if err != nil {
		return nil, err
	}
	if !c.AuthMethod.IsCertificate() {
		return nil, invalidClient(fmt.Sprintf("the client is registered for %s and must authenticate with it", registered(c.AuthMethod)),
			fmt.Errorf("%w: registered %q, sent only client_id", ErrMethod, c.AuthMethod))
	}
	if len(certs) == 0 {
		return nil, invalidClient(fmt.Sprintf("the client is registered for %s and must present its TLS client certificate", c.AuthMethod), ErrBadCredential)
	}
	check := func(c *identity.Client) error {
		if c.AuthMethod == identity.AuthTLSClient {
			return a.tlsClientAuth(c, certs)
		}
		return selfSignedTLSClientAuth(c, certs[0])
	}
	if err = check(c); err != nil {
		// During a rotation overlap the subject or certificate rotated out
		// still authenticates.
		if prev := c.WithPrevious(a.now()); prev == nil || check(prev) != nil {
			return nil, err
		}
	}
	if err := a.usable(c); err != nil {
		return nil, err
	}
	return &Result{Client: c, Method: c.AuthMethod}, nil
}

// tlsClientAuth implements RFC 8705 section 2.1: the chain verifies to
// ClientCAs for client authentication, and the leaf carries the one subject
// the client registered (section 2.1.2). A client that registered no subject
// accepts only keybound workload certificates issued to it.
func (a *Authenticator) tlsClientAuth(c *identity.Client, certs []*x509.Certificate) error {
	if a.ClientCAs == nil {
		return serverError(errors.New("clientauth: tls_client_auth needs ClientCAs"))
	}
	if len(certs) > MaxPeerCertificates {
		return invalidClient(fmt.Sprintf("the client certificate chain is longer than %d certificates", MaxPeerCertificates), nil)
	}
	leaf := certs[0]
	now := a.now()
	ck := chainKey(certs)
	verified, workload := a.chains.verified(ck, now)
	if !verified {
		inter := x509.NewCertPool()
		for _, ic := range certs[1:] {
			inter.AddCert(ic)
		}
		chains, err := leaf.Verify(x509.VerifyOptions{
			Roots:         a.ClientCAs,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			return invalidClient("the client certificate does not verify to a CA this server trusts for client authentication, or is outside its validity period", fmt.Errorf("%w: %w", ErrBadCredential, err))
		}
		// Only a chain through the workload CA makes this a workload
		// certificate: another trusted CA could copy the workload
		// issuer's name and a SPIFFE ID, but not its keys.
		workload = a.Workload != nil && slices.ContainsFunc(chains, a.Workload.IssuedBy)
		a.chains.remember(ck, certs, now, workload)
	}
	// A workload certificate names its client by SPIFFE ID, bound at
	// issuance: it authenticates that client whatever subject is
	// registered, and never another one.
	if workload {
		if id, ok := a.Workload.ClientOf(leaf); ok {
			if id != c.ID {
				return invalidClient("the client certificate was issued to another client", fmt.Errorf("%w: workload certificate of %q", ErrBadCredential, id))
			}
			return nil
		}
	}

	set := 0
	for _, v := range []string{c.TLSSubjectDN, c.TLSSANURI, c.TLSSANDNS} {
		if v != "" {
			set++
		}
	}
	switch {
	case set == 0:
		// No subject registered means "keybound workload certificates
		// only": the workload check above is the only way in.
		return invalidClient("the client accepts only keybound workload certificates issued to it, and this certificate is not one; enroll with `keybound cert` or the SDK",
			fmt.Errorf("%w: no subject registered and not a workload certificate of the client", ErrBadCredential))
	case set > 1:
		return invalidClient("the client registration must name at most one certificate subject (RFC 8705 section 2.1.2); ask its owner to fix it",
			fmt.Errorf("%w: %d subject parameters registered", ErrBadCredential, set))
	}
	var ok bool
	switch {
	case c.TLSSubjectDN != "":
		ok = a.subjects.matches(leaf, c.TLSSubjectDN)
	case c.TLSSANURI != "":
		ok = slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return u.String() == c.TLSSANURI })
	default:
		// DNS names compare without regard to ASCII case (RFC 4343).
		ok = slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return strings.EqualFold(n, c.TLSSANDNS) })
	}
	if !ok {
		return invalidClient("the client certificate subject does not match the one registered for the client", ErrBadCredential)
	}
	return nil
}

// selfSignedTLSClientAuth implements RFC 8705 section 2.2: the presented
// leaf must be one of the certificates in the x5c of the client's registered
// JWKS, or carry the public key of one of its JWKs. No chain or validity
// period is checked: the registration is the trust anchor, and the TLS
// handshake proved possession of the key.
func selfSignedTLSClientAuth(c *identity.Client, leaf *x509.Certificate) error {
	keys, err := parseJWKS(c.JWKS, "")
	if err != nil {
		return invalidClient("the client has no usable registered JWKS; ask its owner to register its certificate", err)
	}
	got := sha256.Sum256(leaf.Raw)
	match := 0
	for i := range keys {
		for _, rc := range keys[i].Certificates {
			want := sha256.Sum256(rc.Raw)
			match |= subtle.ConstantTimeCompare(got[:], want[:])
		}
		if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(keys[i].Key) {
			match = 1
		}
	}
	if match != 1 {
		return invalidClient("the client certificate is not one registered for the client", ErrBadCredential)
	}
	return nil
}

// Subject DN matching (RFC 8705 section 2.1.2, tls_client_auth_subject_dn).
//
// The registered value is an RFC 4514 string, most specific RDN first
// ("CN=svc,OU=payments,O=Example,C=US"). The certificate side is the leaf's
// raw Subject, decoded as an RDNSequence and read in the same order (the
// reverse of its ASN.1 order), so the comparison never goes through
// pkix.Name, which drops multi-valued RDNs and reorders attributes.
//
// Both sides are reduced to a list of RDNs, each a set of (OID, value):
//   - attribute types compare as OIDs, case-insensitively by name (CN, O, OU,
//     C, L, ST, STREET, POSTALCODE, SERIALNUMBER, DC, UID, EMAILADDRESS or E)
//     or as dotted OIDs;
//   - values are unescaped (\, \+ \XX ...), trimmed, runs of spaces collapsed
//     to one, and compared without regard to case, as caseIgnoreMatch does;
//   - the order of attributes inside a multi-valued RDN does not matter; the
//     order of RDNs does.
//
// A registered hex value ("#04...") or an attribute value that is not a
// string in the certificate never matches.
type ava struct{ oid, value string }

func subjectMatches(leaf *x509.Certificate, registered string) bool {
	want, err := parseDN(registered)
	if err != nil {
		return false
	}
	got, err := certDN(leaf)
	if err != nil {
		return false
	}
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if len(got[i]) != len(want[i]) {
			return false
		}
		for j := range got[i] {
			if got[i][j].oid != want[i][j].oid || !strings.EqualFold(got[i][j].value, want[i][j].value) {
				return false
			}
		}
	}
	return true
}

var attributeOIDs = map[string]string{
	"CN": "2.5.4.3", "SERIALNUMBER": "2.5.4.5", "C": "2.5.4.6", "L": "2.5.4.7",
	"ST": "2.5.4.8", "STREET": "2.5.4.9", "O": "2.5.4.10", "OU": "2.5.4.11",
	"POSTALCODE": "2.5.4.17", "DC": "0.9.2342.19200300.100.1.25",
	"UID": "0.9.2342.19200300.100.1.1", "EMAILADDRESS": "1.2.840.113549.1.9.1",
	"E": "1.2.840.113549.1.9.1",
}

// certDN reads leaf's raw Subject in RFC 4514 order.
func certDN(leaf *x509.Certificate) ([][]ava, error) {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(leaf.RawSubject, &seq); err != nil || len(rest) != 0 {
		return nil, errors.New("clientauth: malformed certificate subject")
	}
	out := make([][]ava, 0, len(seq))
	for i := len(seq) - 1; i >= 0; i-- {
		rdn := make([]ava, 0, len(seq[i]))
		for _, atv := range seq[i] {
			s, ok := atv.Value.(string)
			if !ok {
				return nil, errors.New("clientauth: certificate subject has a non-string attribute")
			}
			rdn = append(rdn, ava{oid: atv.Type.String(), value: normValue(s)})
		}
		out = append(out, sortRDN(rdn))
	}
	return out, nil
}

// parseDN parses an RFC 4514 distinguished name.
func parseDN(s string) ([][]ava, error) {
	var (
		out [][]ava
		rdn []ava
	)
	for i := 0; ; {
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, errors.New("clientauth: DN attribute without '='")
		}
		oid, err := attributeOID(strings.TrimSpace(s[i : i+eq]))
		if err != nil {
			return nil, err
		}
		i += eq + 1
		var val []byte
		if strings.HasPrefix(strings.TrimLeft(s[i:], " "), "#") {
			return nil, errors.New("clientauth: hex DN values are not supported")
		}
		end := byte(0)
		for i < len(s) {
			ch := s[i]
			if ch == ',' || ch == '+' {
				end = ch
				i++
				break
			}
			if ch != '\\' {
				val = append(val, ch)
				i++
				continue
			}
			if i+1 >= len(s) {
				return nil, errors.New("clientauth: DN ends in an escape")
			}
			if h, ok := unhex(s[i+1:]); ok {
				val = append(val, h)
				i += 3
				continue
			}
			val = append(val, s[i+1])
			i += 2
		}
		if !utf8.Valid(val) {
			return nil, errors.New("clientauth: DN value is not UTF-8")
		}
		rdn = append(rdn, ava{oid: oid, value: normValue(string(val))})
		if end != '+' {
			out = append(out, sortRDN(rdn))
			rdn = nil
		}
		if end == 0 {
			return out, nil
		}
	}
}

func attributeOID(t string) (string, error) {
	if oid, ok := attributeOIDs[strings.ToUpper(t)]; ok {
		return oid, nil
	}
	t = strings.TrimPrefix(strings.TrimPrefix(t, "OID."), "oid.")
	if t == "" || strings.Trim(t, "0123456789.") != "" || strings.Contains(t, "..") || t[0] == '.' || t[len(t)-1] == '.' {
		return "", errors.New("clientauth: unknown DN attribute type")
	}
	return t, nil
}

func unhex(s string) (byte, bool) {
	if len(s) < 2 {
		return 0, false
	}
	hi, ok1 := hexVal(s[0])
	lo, ok2 := hexVal(s[1])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// normValue trims a value and collapses runs of spaces, as RFC 4518
// insignificant-space handling does for the attributes clients register.
func normValue(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func sortRDN(rdn []ava) []ava {
	slices.SortFunc(rdn, func(x, y ava) int {
		if c := strings.Compare(x.oid, y.oid); c != 0 {
			return c
		}
		return strings.Compare(strings.ToLower(x.value), strings.ToLower(y.value))
	})
	return rdn
}
