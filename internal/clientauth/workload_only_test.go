package clientauth

import (
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/oauth"
)

// TestTLSClientAuthWithoutSubject covers tls_client_auth clients that
// registered no subject: they accept only keybound workload certificates
// issued to them, and a registration with more than one subject is still
// refused at authentication.
func TestTLSClientAuthWithoutSubject(t *testing.T) {
	f := loadFixture(t)
	base := *f.clients["tls-dn"]
	none := base
	none.ID, none.TLSSubjectDN = "tls-none", ""
	two := base
	two.ID, two.TLSSANDNS = "tls-two", "svc.payments.example.test"
	f.clients[none.ID], f.clients[two.ID] = &none, &two
	serial := f.leaf.SerialNumber.String()
	mtls := func(id string) Request {
		return Request{Form: url.Values{paramClientID: {id}}, PeerCertificates: []*x509.Certificate{f.leaf}}
	}
	tests := []struct {
		name   string
		wl     WorkloadCerts
		req    Request
		ok     bool
		detail string
	}{
		{"workload certificate of the client", fakeWorkload{owner: map[string]string{serial: "tls-none"}}, mtls("tls-none"), true, ""},
		{"workload certificate of another client", fakeWorkload{owner: map[string]string{serial: "tls-dn"}}, mtls("tls-none"), false, "issued to another client"},
		{"a trusted certificate that is not a workload certificate", fakeWorkload{owner: map[string]string{}}, mtls("tls-none"), false, "only keybound workload certificates"},
		{"no workload CA configured", nil, mtls("tls-none"), false, "only keybound workload certificates"},
		{"two subjects registered", fakeWorkload{owner: map[string]string{}}, mtls("tls-two"), false, "at most one certificate subject"},
		{"two subjects, but the client's own workload certificate", fakeWorkload{owner: map[string]string{serial: "tls-two"}}, mtls("tls-two"), true, ""},
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
