package clientauth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"testing"
	"time"
)

func TestSubjectMatches(t *testing.T) {
	oid := func(s ...int) asn1.ObjectIdentifier { return asn1.ObjectIdentifier(s) }
	cn, ou, o, c, uid := oid(2, 5, 4, 3), oid(2, 5, 4, 11), oid(2, 5, 4, 10), oid(2, 5, 4, 6), oid(0, 9, 2342, 19200300, 100, 1, 1)
	// ASN.1 order: C, O, then a multi-valued RDN OU+UID, then CN with a comma.
	subject := pkix.RDNSequence{
		{{Type: c, Value: "US"}},
		{{Type: o, Value: "Example Corp"}},
		{{Type: ou, Value: "Payments"}, {Type: uid, Value: "svc-42"}},
		{{Type: cn, Value: "payments, primary"}},
	}
	raw, err := asn1.Marshal(subject)
	if err != nil {
		t.Fatal(err)
	}
	key := mustEC(t)
	leaf := mustCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(7), RawSubject: raw,
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
	}, nil, key, key)

	tests := []struct {
		dn   string
		want bool
	}{
		{`CN=payments\, primary,OU=Payments+UID=svc-42,O=Example Corp,C=US`, true},
		{`CN=payments\2C primary,UID=svc-42+OU=Payments,O=Example Corp,C=US`, true},
		{`cn=PAYMENTS\, PRIMARY , ou=payments + uid=svc-42 , o=example  corp , c=us`, true},
		{`2.5.4.3=payments\, primary,OU=Payments+0.9.2342.19200300.100.1.1=svc-42,O=Example Corp,C=US`, true},
		{`CN=payments\, primary,OU=Payments,UID=svc-42,O=Example Corp,C=US`, false}, // RDN split differently
		{`C=US,O=Example Corp,OU=Payments+UID=svc-42,CN=payments\, primary`, false}, // reversed order
		{`CN=payments\, primary,OU=Payments+UID=svc-42,O=Example Corp`, false},      // missing C
		{`CN=payments,OU=Payments+UID=svc-42,O=Example Corp,C=US`, false},
		{`CN=#0403616263,OU=Payments+UID=svc-42,O=Example Corp,C=US`, false}, // hex values unsupported
		{`XX=payments\, primary,OU=Payments+UID=svc-42,O=Example Corp,C=US`, false},
		{`CN=payments\, primary,OU=Payments+UID=svc-42,O=Example Corp,C=US\`, false},
		{``, false},
	}
	other := mustCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(8), Subject: pkix.Name{CommonName: "payments, primary"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
	}, nil, key, key)
	var cache subjectCache
	for _, tt := range tests {
		if got := subjectMatches(leaf, tt.dn); got != tt.want {
			t.Errorf("subjectMatches(%q) = %v, want %v", tt.dn, got, tt.want)
		}
		// The cache answers the same, first computed then remembered, and
		// keeps certificates with other subjects apart.
		for range 2 {
			if got := cache.matches(leaf, tt.dn); got != tt.want {
				t.Errorf("cached matches(%q) = %v, want %v", tt.dn, got, tt.want)
			}
			if cache.matches(other, tt.dn) {
				t.Errorf("cached matches(%q) accepted a certificate with another subject", tt.dn)
			}
		}
	}
	for i := range maxCachedSubjects + 10 {
		cache.matches(leaf, fmt.Sprintf("CN=n%d", i))
		if len(cache.m) > maxCachedSubjects {
			t.Fatalf("subject cache holds %d entries, bound %d", len(cache.m), maxCachedSubjects)
		}
	}
}

// FuzzParseDN checks the RFC 4514 parser never panics and that whatever it
// accepts has no empty RDN.
func FuzzParseDN(f *testing.F) {
	for _, s := range []string{`CN=a,O=b`, `CN=a\,b+UID=c`, `cn=\41`, `1.2.3=x`, `=`, `CN=\`, `CN=#00`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rdns, err := parseDN(s)
		if err != nil {
			return
		}
		for _, rdn := range rdns {
			if len(rdn) == 0 {
				t.Fatalf("parseDN(%q) returned an empty RDN", s)
			}
		}
	})
}
