package clientauth

import (
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/oauth"
)

// fakeWorkload stands in for the workload CA: it names the client a
// certificate was issued to by serial and refuses what it is told to.
type fakeWorkload struct {
	owner   map[string]string // serial -> client
	refused error
	// foreign: the fixture's CA is not one of this workload CA's roots,
	// as for an operator CA that copied the workload issuer's name.
	foreign bool
}

func (w fakeWorkload) IssuedBy([]*x509.Certificate) bool { return !w.foreign }

func (w fakeWorkload) ClientOf(c *x509.Certificate) (string, bool) {
	id, ok := w.owner[c.SerialNumber.String()]
	return id, ok
}

func (w fakeWorkload) CheckCert(*x509.Certificate, time.Time) error { return w.refused }

// TestWorkloadCertificates: a workload certificate authenticates only the
// client it was issued to, and one revoked or expired authenticates
// nobody. A tls_client_auth client that registered no subject accepts only
// keybound workload certificates issued to it; one with more than one
// subject is still refused at authentication unless the certificate is its
// own workload certificate.
func TestWorkloadCertificates(t *testing.T) {
	f := loadFixture(t)
	none, two := *f.clients["tls-dn"], *f.clients["tls-dn"]
	none.ID, none.TLSSubjectDN = "tls-none", ""
	two.ID, two.TLSSANDNS = "tls-two", "svc.payments.example.test"
	f.clients[none.ID], f.clients[two.ID] = &none, &two
	serial := f.leaf.SerialNumber.String()
	mtls := func(id string) Request {
		return Request{Form: url.Values{paramClientID: {id}}, PeerCertificates: []*x509.Certificate{f.leaf}}
	}
	jwtOverMTLS := Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-client", "wl-1", nil), nil)), PeerCertificates: []*x509.Certificate{f.leaf}}
	tests := []struct {
		name   string
		wl     WorkloadCerts
		req    Request
		ok     bool
		detail string
	}{
		{"no workload CA: registered subject as before", nil, mtls("tls-dn"), true, ""},
		{"workload certificate authenticates its own client whatever subject is registered", fakeWorkload{owner: map[string]string{serial: "tls-dn-other"}}, mtls("tls-dn-other"), true, ""},
		{"workload certificate never authenticates another client", fakeWorkload{owner: map[string]string{serial: "tls-dn-other"}}, mtls("tls-dn"), false, "issued to another client"},
		{"a foreign certificate falls back to the registered subject", fakeWorkload{owner: map[string]string{}}, mtls("tls-dn"), true, ""},
		{"revoked or expired: tls_client_auth refused", fakeWorkload{refused: errors.New("revoked")}, mtls("tls-dn"), false, "revoked or has expired"},
		{"revoked or expired: private_key_jwt over mTLS refused too", fakeWorkload{refused: errors.New("revoked")}, jwtOverMTLS, false, "revoked or has expired"},
		{"no subject: workload certificate of the client", fakeWorkload{owner: map[string]string{serial: "tls-none"}}, mtls("tls-none"), true, ""},
		{"no subject: workload certificate of another client", fakeWorkload{owner: map[string]string{serial: "tls-dn"}}, mtls("tls-none"), false, "issued to another client"},
		{"no subject: a trusted certificate that is not a workload certificate", fakeWorkload{owner: map[string]string{}}, mtls("tls-none"), false, "only keybound workload certificates"},
		{"no subject and no workload CA configured", nil, mtls("tls-none"), false, "only keybound workload certificates"},
		{"two subjects registered", fakeWorkload{owner: map[string]string{}}, mtls("tls-two"), false, "at most one certificate subject"},
		{"two subjects, but the client's own workload certificate", fakeWorkload{owner: map[string]string{serial: "tls-two"}}, mtls("tls-two"), true, ""},
		// ClientOf alone (an issuer name and a SPIFFE ID) does not make a
		// workload certificate: the chain must end at a workload CA root.
		{"another CA's certificate named like a workload one: registered subject only", fakeWorkload{owner: map[string]string{serial: "tls-dn-other"}, foreign: true}, mtls("tls-dn-other"), false, "does not match"},
		{"another CA's certificate named like a workload one, no subject registered", fakeWorkload{owner: map[string]string{serial: "tls-none"}, foreign: true}, mtls("tls-none"), false, "only keybound workload certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := f.authenticator()
			a.Workload = tt.wl
			res, err := a.Authenticate(t.Context(), tt.req)
			if tt.ok {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if res.CertThumbprint == "" {
					t.Error("no thumbprint for the presented certificate")
				}
				if res.Client.ID != tt.req.Form.Get(paramClientID) || res.Method != identity.AuthTLSClient {
					t.Errorf("authenticated %s with %s", res.Client.ID, res.Method)
				}
				return
			}
			var oe *oauth.Error
			if !errors.As(err, &oe) || oe.Code != oauth.CodeInvalidClient || oe.Status != 401 || !strings.Contains(oe.Description, tt.detail) || !errors.Is(err, ErrBadCredential) {
				t.Errorf("Authenticate = %v; want invalid_client mentioning %q", err, tt.detail)
			}
		})
	}
}
