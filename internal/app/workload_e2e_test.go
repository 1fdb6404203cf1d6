package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/ca"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
	"github.com/keybound/keybound/internal/workloadapi"
)

// workload is one enrolled workload: its key and current chain.
type workload struct {
	key   *ecdsa.PrivateKey
	chain []byte
	cert  *x509.Certificate
	view  workloadapi.Certificate
}

func (w workload) pair(t *testing.T) tls.Certificate {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(w.key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tls.X509KeyPair(w.chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func csrFor(t *testing.T, key any, tmpl *x509.CertificateRequest) string {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// workloadPost sends body as JSON to a workload endpoint with c (nil: no
// client certificate).
func (h *harness) workloadPost(c *http.Client, path string, body any) httpResult {
	h.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.do(c, "POST", path, "application/json", b, nil)
}

// issued decodes a 201 issuance into a workload holding key.
func issued(t *testing.T, r httpResult, key *ecdsa.PrivateKey) workload {
	t.Helper()
	if r.status != http.StatusCreated {
		t.Fatalf("issuance: %d %s", r.status, r.body)
	}
	var v workloadapi.Certificate
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(v.CertificateChain))
	if blk == nil {
		t.Fatalf("no certificate in %s", r.body)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return workload{key: key, chain: []byte(v.CertificateChain), cert: c, view: v}
}

func (h *harness) joinToken(clientID string) string {
	h.t.Helper()
	code, b := h.adminDo("POST", "/join-tokens", adminapi.JoinTokenRequest{ClientID: clientID})
	if code != http.StatusCreated {
		h.t.Fatalf("join token: %d %s", code, b)
	}
	var v adminapi.JoinTokenView
	if err := json.Unmarshal(b, &v); err != nil {
		h.t.Fatal(err)
	}
	return v.JoinToken
}

// enrollWithToken enrolls a fresh key with a new join token for clientID.
func (h *harness) enrollWithToken(clientID string) workload {
	h.t.Helper()
	key := newEC(h.t)
	return issued(h.t, h.workloadPost(nil, workloadapi.PathEnroll, workloadapi.EnrollRequest{CSR: csrFor(h.t, key, nil), JoinToken: h.joinToken(clientID)}), key)
}

func (h *harness) certs(clientID string) []adminapi.CertView {
	h.t.Helper()
	code, b := h.adminDo("GET", "/certificates?client_id="+url.QueryEscape(clientID), nil)
	if code != 200 {
		h.t.Fatalf("list certificates: %d %s", code, b)
	}
	var out struct {
		Certificates []adminapi.CertView `json:"certificates"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		h.t.Fatal(err)
	}
	return out.Certificates
}

func (h *harness) crlSerials(issuerCert *x509.Certificate) []string {
	h.t.Helper()
	r := h.do(nil, "GET", workloadapi.PathCRL, "", nil, nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/pkix-crl" {
		h.t.Fatalf("CRL: %d %s", r.status, r.header.Get("Content-Type"))
	}
	crl, err := x509.ParseRevocationList(r.body)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(issuerCert); err != nil {
		h.t.Errorf("CRL signature: %v", err)
	}
	var out []string
	for _, e := range crl.RevokedCertificateEntries {
		out = append(out, e.SerialNumber.Text(16))
	}
	return out
}

// intermediateOf returns the intermediate in a workload's chain.
func intermediateOf(t *testing.T, chain []byte) *x509.Certificate {
	t.Helper()
	_, rest := pem.Decode(chain)
	blk, _ := pem.Decode(rest)
	if blk == nil {
		t.Fatal("the chain has no intermediate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func thumb(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestWorkloadCertificateLifecycle follows a workload certificate through
// real TLS handshakes: enroll with a join token, authenticate with
// tls_client_auth, call the gateway with the certificate-bound token, renew
// over mTLS, then revoke and watch the token service, the gateway and
// renewal refuse it at once while the CRL lists it.
func TestWorkloadCertificateLifecycle(t *testing.T) {
	g := startGateway(t, nil)
	v := g.register(inventory.Registration{Name: "billing-sync", Scope: "invoices:read", AuthMethod: "tls_client_auth",
		TLSSANURI: "spiffe://keybound.local/billing-sync", MTLSBound: true})
	w := g.enrollWithToken(v.ClientID)

	wantID := "spiffe://keybound.local/client/" + v.ClientID
	if w.view.SPIFFEID != wantID || len(w.cert.URIs) != 1 || w.cert.URIs[0].String() != wantID || w.view.ClientID != v.ClientID {
		t.Fatalf("certificate names %v; want %s", w.cert.URIs, wantID)
	}
	if got := time.Until(w.cert.NotAfter); got < 23*time.Hour || got > 24*time.Hour {
		t.Errorf("lifetime %s; want the 24h default", got)
	}
	// The trust bundle: the answer's, the public endpoint's and the one on
	// disk agree, and the chain verifies to it.
	bundle := g.do(nil, "GET", workloadapi.PathBundle, "", nil, nil)
	if bundle.status != 200 || string(bundle.body) != w.view.TrustBundle {
		t.Fatalf("bundle: %d", bundle.status)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(bundle.body)
	inter := intermediateOf(t, w.chain)
	ip := x509.NewCertPool()
	ip.AddCert(inter)
	if _, err := w.cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: ip, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the chain does not verify to the bundle: %v", err)
	}

	// tls_client_auth with the issued certificate: a real handshake, a
	// certificate-bound token.
	c1 := g.httpClient([]tls.Certificate{w.pair(t)})
	tr := g.postForm(c1, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {v.ClientID}}, nil)
	if tr.status != 200 {
		t.Fatalf("token with the workload certificate: %d %s", tr.status, tr.raw)
	}
	tok1 := tr.body["access_token"].(string)
	cnf, _ := decodeClaims(t, tok1)["cnf"].(map[string]any)
	if cnf["x5t#S256"] != thumb(w.cert) {
		t.Fatalf("token cnf = %v; want the certificate's thumbprint", cnf)
	}
	// Through the gateway over mTLS with the same certificate.
	if got := g.send(c1, "GET", "/invoices/7", map[string]string{"Authorization": "Bearer " + tok1}); got.status != 200 {
		t.Fatalf("gateway with the bound certificate: %d %s", got.status, got.body)
	}
	if g.up.last().Header.Get("Authorization") != "" {
		t.Error("the token reached the upstream")
	}

	// Renew over mTLS with the current certificate, for a new key.
	key2 := newEC(t)
	w2 := issued(t, g.workloadPost(c1, workloadapi.PathRenew, workloadapi.RenewRequest{CSR: csrFor(t, key2, nil)}), key2)
	if w2.view.SPIFFEID != wantID || w2.view.Serial == w.view.Serial {
		t.Fatalf("renewed: %+v", w2.view)
	}
	c2 := g.httpClient([]tls.Certificate{w2.pair(t)})
	tr2 := g.postForm(c2, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {v.ClientID}}, nil)
	if tr2.status != 200 {
		t.Fatalf("token with the renewed certificate: %d %s", tr2.status, tr2.raw)
	}
	tok2 := tr2.body["access_token"].(string)

	// Revoke the first certificate: refused everywhere at once.
	code, b := g.adminDo("POST", "/certificates/"+w.view.Serial+"/revoke", map[string]string{"reason": "key left on a laptop"})
	if code != 200 {
		t.Fatalf("revoke: %d %s", code, b)
	}
	before := g.up.count()
	got := g.send(c1, "GET", "/invoices/7", map[string]string{"Authorization": "Bearer " + tok1})
	if got.status != 401 || !strings.Contains(got.header.Get("WWW-Authenticate"), "invalid_token") || !strings.Contains(got.body, "revoked") {
		t.Errorf("gateway after revocation: %d %s %s", got.status, got.header.Get("WWW-Authenticate"), got.body)
	}
	if g.up.count() != before {
		t.Error("the upstream saw a request with a revoked certificate")
	}
	tr = g.postForm(c1, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {v.ClientID}}, nil)
	if tr.status != 401 || tr.body["error"] != "invalid_client" || !strings.Contains(tr.raw, "revoked") {
		t.Errorf("token endpoint after revocation: %d %s", tr.status, tr.raw)
	}
	rr := g.workloadPost(c1, workloadapi.PathRenew, workloadapi.RenewRequest{CSR: csrFor(t, w.key, nil)})
	if p := rr.problem(t); rr.status != 401 || p.Type != "urn:keybound:problem:certificate-revoked" || p.Code != "invalid_client" {
		t.Errorf("renewal with the revoked certificate: %d %+v", rr.status, p)
	}
	// The renewed certificate is untouched.
	if got := g.send(c2, "GET", "/invoices/7", map[string]string{"Authorization": "Bearer " + tok2}); got.status != 200 {
		t.Errorf("gateway with the renewed certificate: %d %s", got.status, got.body)
	}
	if crl := g.crlSerials(inter); !slices.Equal(crl, []string{w.view.Serial}) {
		t.Errorf("CRL lists %v; want %s", crl, w.view.Serial)
	}

	// The inventory and the admin log.
	cs := g.certs(v.ClientID)
	if len(cs) != 2 || cs[0].Serial != w2.view.Serial || cs[0].Status != "active" || cs[0].Via != "renewal" || cs[0].RenewedFrom != w.view.Serial ||
		cs[1].Status != "revoked" || cs[1].Via != "join_token" || cs[1].RevocationReason != "key left on a laptop" || cs[1].Thumbprint != thumb(w.cert) {
		t.Errorf("inventory: %+v", cs)
	}
	var actions []string
	for _, ev := range g.events() {
		if ev.Target == v.ClientID {
			actions = append(actions, ev.Action+"/"+ev.Changes["via"])
		}
	}
	if want := []string{"cert.revoke/", "cert.issue/renewal", "cert.issue/join_token", "join_token.create/", "client.create/"}; !slices.Equal(actions, want) {
		t.Errorf("admin log for the identity: %v; want %v", actions, want)
	}
	// No secret in the log: not the join token, never a key.
	for _, ev := range g.events() {
		for _, val := range ev.Changes {
			if strings.Contains(val, "kbjt.") || strings.Contains(val, "PRIVATE KEY") {
				t.Errorf("admin event %s holds a secret", ev.Action)
			}
		}
	}
}

// TestWorkloadEnrollWithPrivateKeyJWT enrolls a private_key_jwt identity
// with an assertion, then gets a certificate-bound token by
// private_key_jwt over mTLS and uses it at the gateway; revoking the
// identity refuses the certificate at both and lists it in the CRL.
func TestWorkloadEnrollWithPrivateKeyJWT(t *testing.T) {
	g := startGateway(t, nil)
	ck := g.newKeyClient(inventory.Registration{Scope: "invoices:read", MTLSBound: true})
	key := newEC(t)
	r := g.workloadPost(nil, workloadapi.PathEnroll, workloadapi.EnrollRequest{CSR: csrFor(t, key, nil), ClientID: ck.id,
		ClientAssertionType: assertionType, ClientAssertion: ck.assertion(t, g.issuer+workloadapi.PathEnroll)})
	w := issued(t, r, key)
	if cs := g.certs(ck.id); len(cs) != 1 || cs[0].Via != "private_key_jwt" {
		t.Fatalf("inventory: %+v", cs)
	}
	c := g.httpClient([]tls.Certificate{w.pair(t)})
	tr := g.postForm(c, "/oauth2/token", tokenForm(ck, g.harness), nil)
	if tr.status != 200 {
		t.Fatalf("token: %d %s", tr.status, tr.raw)
	}
	tok := tr.body["access_token"].(string)
	if cnf, _ := decodeClaims(t, tok)["cnf"].(map[string]any); cnf["x5t#S256"] != thumb(w.cert) {
		t.Fatalf("cnf = %v", cnf)
	}
	if got := g.send(c, "GET", "/invoices/1", map[string]string{"Authorization": "Bearer " + tok}); got.status != 200 {
		t.Fatalf("gateway: %d %s", got.status, got.body)
	}

	if code, b := g.adminDo("POST", "/clients/"+ck.id+"/revoke", map[string]string{"reason": "decommissioned"}); code != 200 {
		t.Fatalf("revoke identity: %d %s", code, b)
	}
	if got := g.send(c, "GET", "/invoices/1", map[string]string{"Authorization": "Bearer " + tok}); got.status != 401 {
		t.Errorf("gateway after the identity was revoked: %d", got.status)
	}
	if tr := g.postForm(c, "/oauth2/token", tokenForm(ck, g.harness), nil); tr.status != 401 || tr.body["error"] != "invalid_client" {
		t.Errorf("token endpoint after the identity was revoked: %d %s", tr.status, tr.raw)
	}
	if cs := g.certs(ck.id); len(cs) != 1 || cs[0].Status != "revoked" {
		t.Errorf("the revoked identity's certificate: %+v", cs)
	}
	if crl := g.crlSerials(intermediateOf(t, w.chain)); !slices.Contains(crl, w.view.Serial) {
		t.Errorf("CRL %v misses the revoked identity's certificate", crl)
	}
}

// TestWorkloadExpiredCertificateRefused: a workload certificate that has
// expired is refused by the token service, by renewal and, when a token
// is bound to it, by the gateway. The certificate is signed with the data
// directory's workload CA with a validity of a few seconds; the test waits
// for it to pass (the server runs on the wall clock).
func TestWorkloadExpiredCertificateRefused(t *testing.T) {
	g := startGateway(t, nil)
	v := g.register(inventory.Registration{Scope: "invoices:read", AuthMethod: "tls_client_auth", TLSSANURI: "spiffe://keybound.local/x", MTLSBound: true})
	iss, err := ca.LoadOrCreateWorkload(filepath.Join(g.cfg.DataDir, "tls"), "keybound.local", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key := newEC(t)
	u, _ := url.Parse("spiffe://keybound.local/client/" + v.ClientID)
	notAfter := time.Now().Add(2 * time.Second)
	cert, err := iss.Issue(&x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: v.ClientID}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	w := workload{key: key, cert: cert, chain: append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), iss.ChainPEM()...)}
	c := g.httpClient([]tls.Certificate{w.pair(t)})
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {v.ClientID}}
	tr := g.postForm(c, "/oauth2/token", form, nil)
	if tr.status != 200 {
		t.Fatalf("token while valid: %d %s", tr.status, tr.raw)
	}
	tok := tr.body["access_token"].(string)
	if got := g.send(c, "GET", "/invoices/1", map[string]string{"Authorization": "Bearer " + tok}); got.status != 200 {
		t.Fatalf("gateway while valid: %d %s", got.status, got.body)
	}
	time.Sleep(time.Until(notAfter) + 1100*time.Millisecond)
	c = g.httpClient([]tls.Certificate{w.pair(t)}) // a new connection, as a workload would open
	before := g.up.count()
	got := g.send(c, "GET", "/invoices/1", map[string]string{"Authorization": "Bearer " + tok})
	if got.status != 401 || !strings.Contains(got.body, "expired") {
		t.Errorf("gateway with an expired certificate: %d %s", got.status, got.body)
	}
	if g.up.count() != before {
		t.Error("the upstream saw a request with an expired certificate")
	}
	if tr := g.postForm(c, "/oauth2/token", form, nil); tr.status != 401 || tr.body["error"] != "invalid_client" {
		t.Errorf("token endpoint with an expired certificate: %d %s", tr.status, tr.raw)
	}
	rr := g.workloadPost(c, workloadapi.PathRenew, workloadapi.RenewRequest{CSR: csrFor(t, key, nil)})
	if p := rr.problem(t); rr.status != 401 || p.Type != "urn:keybound:problem:certificate-expired" {
		t.Errorf("renewal with an expired certificate: %d %+v", rr.status, p)
	}
}

// seedJoinToken writes a join token straight into the store, for states
// the API cannot produce on demand (already expired).
func seedJoinToken(t *testing.T, h *harness, clientID string, expires time.Time) string {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(h.cfg.DataDir, "keybound.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id, secret := "aaaaaaaaaaaaaaaa", base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	sum := sha256.Sum256([]byte(secret))
	if err := st.CreateJoinToken(context.Background(), &store.JoinToken{ID: id, ClientID: clientID, Hash: sum[:], CreatedAt: expires.Add(-time.Hour), ExpiresAt: expires, CreatedBy: "test"}, 0,
		store.AdminEvent{Time: time.Now(), Actor: "test", Action: "join_token.create", Target: clientID}); err != nil {
		t.Fatal(err)
	}
	return "kbjt." + id + "." + secret
}

// TestWorkloadEnrollmentRefusals sends every bad enrollment and renewal
// and checks the status, the problem body and that nothing was issued.
func TestWorkloadEnrollmentRefusals(t *testing.T) {
	h := start(t, nil)
	ck := h.newKeyClient(inventory.Registration{Scope: "a", MTLSBound: true})
	other := h.newKeyClient(inventory.Registration{Scope: "a", MTLSBound: true})
	suspended := h.newKeyClient(inventory.Registration{Scope: "a", MTLSBound: true})
	suspendedToken := h.joinToken(suspended.id)
	if code, b := h.adminDo("POST", "/clients/"+suspended.id+"/suspend", nil); code != 200 {
		t.Fatalf("suspend: %d %s", code, b)
	}
	secretClient := h.register(inventory.Registration{Scope: "a", AuthMethod: "client_secret_basic", AllowBearer: true})
	key := newEC(t)
	good := csrFor(t, key, nil)
	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	otherURI, _ := url.Parse("spiffe://keybound.local/client/" + other.id)
	usedToken := h.joinToken(ck.id)
	if r := h.workloadPost(nil, workloadapi.PathEnroll, workloadapi.EnrollRequest{CSR: good, JoinToken: usedToken}); r.status != 201 {
		t.Fatalf("first use of a join token: %d %s", r.status, r.body)
	}
	expiredToken := seedJoinToken(t, h, ck.id, time.Now().Add(-time.Minute))
	liveToken := h.joinToken(ck.id)
	assert := func(c clientKey) workloadapi.EnrollRequest {
		return workloadapi.EnrollRequest{CSR: good, ClientID: c.id, ClientAssertionType: assertionType, ClientAssertion: c.assertion(t, h.issuer+workloadapi.PathEnroll)}
	}
	withCSR := func(r workloadapi.EnrollRequest, csr string) workloadapi.EnrollRequest { r.CSR = csr; return r }
	jsonBody := func(v any) []byte { b, _ := json.Marshal(v); return b }

	tests := []struct {
		name        string
		path        string
		contentType string
		body        []byte
		status      int
		problem     string
		code        string
		detail      string
	}{
		{"weak key (join token)", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: csrFor(t, weakKey, nil), JoinToken: liveToken}), 400, "weak-key", "invalid_request", "1024 bits"},
		{"weak key (private_key_jwt)", workloadapi.PathEnroll, "", jsonBody(withCSR(assert(ck), csrFor(t, weakKey, nil))), 400, "weak-key", "invalid_request", "at least 2048"},
		{"CSR for another identity", workloadapi.PathEnroll, "", jsonBody(withCSR(assert(ck), csrFor(t, key, &x509.CertificateRequest{URIs: []*url.URL{otherURI}}))), 403, "identity-mismatch", "access_denied", other.id},
		{"CSR with another common name", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: csrFor(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: other.id}}), JoinToken: liveToken}), 403, "identity-mismatch", "access_denied", "common name"},
		{"reused join token", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: good, JoinToken: usedToken}), 400, "join-token-used", "invalid_grant", "already used"},
		{"expired join token", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: good, JoinToken: expiredToken}), 400, "join-token-expired", "invalid_grant", "expired"},
		{"forged join token", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: good, JoinToken: liveToken[:len(liveToken)-3] + "AAA"}), 400, "invalid-join-token", "invalid_grant", "not valid"},
		{"malformed join token", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: good, JoinToken: "let-me-in"}), 400, "invalid-join-token", "invalid_grant", "malformed"},
		{"suspended identity (join token)", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: good, JoinToken: suspendedToken}), 403, "identity-not-usable", "unauthorized_client", "suspended"},
		{"suspended identity (private_key_jwt)", workloadapi.PathEnroll, "", jsonBody(assert(suspended)), 401, "invalid-client", "invalid_client", "suspended"},
		{"static secret identity", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: good, ClientID: secretClient.ClientID, ClientAssertionType: assertionType, ClientAssertion: clientKey{id: secretClient.ClientID, key: ck.key, kid: ck.kid}.assertion(t, h.issuer)}), 401, "invalid-client", "invalid_client", "client_secret_basic"},
		{"assertion signed by another key", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: good, ClientID: ck.id, ClientAssertionType: assertionType, ClientAssertion: clientKey{id: ck.id, key: other.key, kid: other.kid}.assertion(t, h.issuer)}), 401, "invalid-client", "invalid_client", ""},
		{"assertion for the token endpoint", workloadapi.PathEnroll, "", jsonBody(withCSR(workloadapi.EnrollRequest{ClientID: ck.id, ClientAssertionType: assertionType, ClientAssertion: ck.assertion(t, h.issuer+"/oauth2/token")}, good)), 401, "invalid-client", "invalid_client", ""},
		{"join token and assertion", workloadapi.PathEnroll, "", jsonBody(func() workloadapi.EnrollRequest { r := assert(ck); r.JoinToken = liveToken; return r }()), 400, "invalid-request", "invalid_request", "exactly one"},
		{"no proof", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: good}), 400, "invalid-request", "invalid_request", "exactly one"},
		{"no CSR", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{JoinToken: liveToken}), 400, "invalid-request", "invalid_request", "csr is required"},
		{"garbage CSR", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: "hello", JoinToken: liveToken}), 400, "invalid-request", "invalid_request", "PKCS#10"},
		{"lifetime above the maximum", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: good, JoinToken: liveToken, Lifetime: 25 * 3600}), 400, "invalid-request", "invalid_request", "lifetime"},
		{"negative lifetime", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: good, JoinToken: liveToken, Lifetime: -1}), 400, "invalid-request", "invalid_request", "lifetime"},
		{"unknown field", workloadapi.PathEnroll, "", []byte(`{"csr":"x","join_token":"y","spiffe_id":"spiffe://keybound.local/client/admin"}`), 400, "invalid-request", "invalid_request", "unknown field"},
		{"trailing data", workloadapi.PathEnroll, "", []byte(`{"csr":"x"} {}`), 400, "invalid-request", "invalid_request", "after the JSON"},
		{"form body", workloadapi.PathEnroll, "application/x-www-form-urlencoded", []byte("csr=x"), 415, "unsupported-media-type", "invalid_request", "application/json"},
		{"body too large", workloadapi.PathEnroll, "", jsonBody(workloadapi.EnrollRequest{CSR: strings.Repeat("A", 40<<10), JoinToken: liveToken}), 413, "too-large", "invalid_request", ""},
		{"renew without a certificate", workloadapi.PathRenew, "", jsonBody(workloadapi.RenewRequest{CSR: good}), 401, "invalid-certificate", "invalid_client", "present the current"},
	}
	beforeCerts, beforeEvents := len(h.certs(ck.id))+len(h.certs(suspended.id))+len(h.certs(other.id)), len(h.events())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			r := h.do(nil, "POST", tt.path, ct, tt.body, nil)
			if r.status != tt.status {
				t.Fatalf("status %d; want %d: %s", r.status, tt.status, r.body)
			}
			if ctype := r.header.Get("Content-Type"); ctype != "application/problem+json" {
				t.Errorf("Content-Type %q", ctype)
			}
			p := r.problem(t)
			if p.Type != "urn:keybound:problem:"+tt.problem || p.Code != tt.code || p.Status != tt.status || p.Instance != tt.path || !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("problem %+v; want type %s, error %s, detail containing %q", p, tt.problem, tt.code, tt.detail)
			}
		})
	}
	if n := len(h.certs(ck.id)) + len(h.certs(suspended.id)) + len(h.certs(other.id)); n != beforeCerts {
		t.Errorf("refused enrollments issued %d certificates", n-beforeCerts)
	}
	if n := len(h.events()); n != beforeEvents {
		t.Errorf("refused enrollments wrote %d admin events", n-beforeEvents)
	}
	// The live token survived every refusal made with it.
	if r := h.workloadPost(nil, workloadapi.PathEnroll, workloadapi.EnrollRequest{CSR: good, JoinToken: liveToken}); r.status != 201 {
		t.Errorf("the live join token after refusals: %d %s", r.status, r.body)
	}
}

// TestWorkloadAdminRefusals covers the admin side: issuance from a bad CSR,
// unknown and repeated revocations, join tokens nobody may have.
func TestWorkloadAdminRefusals(t *testing.T) {
	h := start(t, nil)
	ck := h.newKeyClient(inventory.Registration{Scope: "a", MTLSBound: true})
	suspended := h.newKeyClient(inventory.Registration{Scope: "a", MTLSBound: true})
	h.adminDo("POST", "/clients/"+suspended.id+"/suspend", nil)
	key := newEC(t)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)

	code, b := h.adminDo("POST", "/certificates", adminapi.IssueRequest{ClientID: ck.id, CSR: csrFor(t, key, nil), Lifetime: 600})
	if code != 201 {
		t.Fatalf("admin issue: %d %s", code, b)
	}
	var v adminapi.CertView
	_ = json.Unmarshal(b, &v)
	if v.Via != "admin" || v.Status != "active" || !strings.Contains(v.CertificateChain, "BEGIN CERTIFICATE") || v.NotAfter.Sub(v.IssuedAt) > 10*time.Minute || v.NotAfter.Sub(v.IssuedAt) < 10*time.Minute-time.Second {
		t.Errorf("admin issue: %+v", v)
	}
	if code, _ := h.adminDo("POST", "/certificates/"+v.Serial+"/revoke", nil); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	before := len(h.events())
	tests := []struct {
		name, method, path string
		body               any
		status             int
		problem            string
	}{
		{"weak key", "POST", "/certificates", adminapi.IssueRequest{ClientID: ck.id, CSR: csrFor(t, weak, nil)}, 400, "weak-key"},
		{"suspended identity", "POST", "/certificates", adminapi.IssueRequest{ClientID: suspended.id, CSR: csrFor(t, key, nil)}, 403, "identity-not-usable"},
		{"unknown identity", "POST", "/certificates", adminapi.IssueRequest{ClientID: "kb-nobody", CSR: csrFor(t, key, nil)}, 404, "not-found"},
		{"no CSR", "POST", "/certificates", adminapi.IssueRequest{ClientID: ck.id}, 400, "invalid-request"},
		{"lifetime too long", "POST", "/certificates", adminapi.IssueRequest{ClientID: ck.id, CSR: csrFor(t, key, nil), Lifetime: 31 * 24 * 3600}, 400, "invalid-parameter"},
		{"revoke twice", "POST", "/certificates/" + v.Serial + "/revoke", nil, 409, "already-revoked"},
		{"revoke unknown", "POST", "/certificates/abcdef/revoke", nil, 404, "not-found"},
		{"revoke not hex", "POST", "/certificates/zz/revoke", nil, 400, "invalid-request"},
		{"join token for a suspended identity", "POST", "/join-tokens", adminapi.JoinTokenRequest{ClientID: suspended.id}, 403, "identity-not-usable"},
		{"join token lifetime too long", "POST", "/join-tokens", adminapi.JoinTokenRequest{ClientID: ck.id, Lifetime: 25 * 3600}, 400, "invalid-parameter"},
		{"list with a bad filter", "GET", "/certificates?live=maybe", nil, 400, "invalid-parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, b := h.adminDo(tt.method, tt.path, tt.body)
			var p problemBody
			_ = json.Unmarshal(b, &p)
			if code != tt.status || p.Type != "urn:keybound:problem:"+tt.problem {
				t.Errorf("%d %s; want %d %s", code, b, tt.status, tt.problem)
			}
		})
	}
	if n := len(h.events()); n != before {
		t.Errorf("refused admin calls wrote %d admin events", n-before)
	}
	if cs := h.certs(ck.id); len(cs) != 1 {
		t.Errorf("refused admin calls issued certificates: %d", len(cs)-1)
	}
	// Without the admin scope nothing is served.
	r := h.do(nil, "GET", adminapi.Prefix+"/certificates", "", nil, nil)
	if r.status != 401 {
		t.Errorf("certificates without a token: %d", r.status)
	}
}
