package clientauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/oauth"
)

// hs256WithPublicKey forges the classic alg-confusion token: HS256 "signed"
// with the client's public key bytes as the HMAC secret.
func hs256WithPublicKey(t *testing.T, f *fixture, cl map[string]any) string {
	der, err := x509.MarshalPKIXPublicKey(&f.ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	unsigned := rawJWS(map[string]any{"alg": "HS256", "kid": "ec1"}, cl, nil)
	unsigned = strings.TrimSuffix(unsigned, ".")
	m := hmac.New(sha256.New, der)
	m.Write([]byte(unsigned))
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestAuthenticate(t *testing.T) {
	f := loadFixture(t)
	es := func(cl map[string]any) string { return sign(t, f.ecKey, jose.ES256, "ec1", cl, nil) }
	jwtClaims := func(jti string, mod func(map[string]any)) map[string]any { return claims("jwt-client", jti, mod) }
	certs := func(c ...*x509.Certificate) []*x509.Certificate { return c }
	otherSelf := selfSigned(t, mustEC(t), 11)
	sameKeyNewCert := selfSigned(t, f.selfKey, 12)

	tests := []struct {
		name  string
		req   Request
		setup func(*Authenticator, *fakeReplay)
		// wantCode empty means success with wantMethod and wantClient.
		wantCode      string
		wantStatus    int
		wantDesc      string // substring of the description
		wantChallenge string
		wantCause     error
		wantMethod    identity.AuthMethod
		wantClient    string
		wantThumb     bool
	}{
		// Successes.
		{name: "private_key_jwt ES256 with kid", req: Request{Form: assertionForm(es(jwtClaims("j1", nil)))},
			wantMethod: identity.AuthPrivateKeyJWT, wantClient: "jwt-client"},
		{name: "private_key_jwt EdDSA without kid", req: Request{Form: assertionForm(sign(t, f.edKey, jose.EdDSA, "", jwtClaims("j2", nil), nil))},
			wantMethod: identity.AuthPrivateKeyJWT, wantClient: "jwt-client"},
		{name: "private_key_jwt PS256", req: Request{Form: assertionForm(sign(t, f.rsaKey, jose.PS256, "rsa1", jwtClaims("j3", nil), nil))},
			wantMethod: identity.AuthPrivateKeyJWT, wantClient: "jwt-client"},
		{name: "private_key_jwt RS256 typ JWT", req: Request{Form: assertionForm(sign(t, f.rsaKey, jose.RS256, "", jwtClaims("j4", nil), map[jose.HeaderKey]any{"typ": "JWT"}))},
			wantMethod: identity.AuthPrivateKeyJWT, wantClient: "jwt-client"},
		{name: "private_key_jwt aud array with token endpoint and matching client_id", req: Request{Form: func() url.Values {
			v := assertionForm(es(jwtClaims("j5", func(m map[string]any) { m["aud"] = []string{"https://other", tokenEndpoint} })))
			v.Set(paramClientID, "jwt-client")
			return v
		}()}, wantMethod: identity.AuthPrivateKeyJWT, wantClient: "jwt-client"},
		{name: "private_key_jwt over mTLS reports thumbprint", req: Request{Form: assertionForm(es(jwtClaims("j6", nil))), PeerCertificates: certs(f.leaf)},
			wantMethod: identity.AuthPrivateKeyJWT, wantClient: "jwt-client", wantThumb: true},
		{name: "private_key_jwt exp within leeway and no iat", req: Request{Form: assertionForm(es(jwtClaims("j7", func(m map[string]any) {
			delete(m, "iat")
			m["exp"] = t0.Add(-10 * time.Second).Unix()
		})))}, wantMethod: identity.AuthPrivateKeyJWT, wantClient: "jwt-client"},
		{name: "tls_client_auth subject DN", req: Request{Form: url.Values{paramClientID: {"tls-dn"}}, PeerCertificates: certs(f.leaf)},
			wantMethod: identity.AuthTLSClient, wantClient: "tls-dn", wantThumb: true},
		{name: "tls_client_auth subject DN case and space insensitive", req: Request{Form: url.Values{paramClientID: {"tls-dn-loose"}}, PeerCertificates: certs(f.leaf)},
			wantMethod: identity.AuthTLSClient, wantClient: "tls-dn-loose", wantThumb: true},
		{name: "tls_client_auth SAN URI", req: Request{Form: url.Values{paramClientID: {"tls-uri"}}, PeerCertificates: certs(f.leaf)},
			wantMethod: identity.AuthTLSClient, wantClient: "tls-uri", wantThumb: true},
		{name: "tls_client_auth SAN DNS", req: Request{Form: url.Values{paramClientID: {"tls-dns"}}, PeerCertificates: certs(f.leaf)},
			wantMethod: identity.AuthTLSClient, wantClient: "tls-dns", wantThumb: true},
		{name: "self_signed_tls_client_auth registered x5c", req: Request{Form: url.Values{paramClientID: {"self-client"}}, PeerCertificates: certs(f.selfCert)},
			wantMethod: identity.AuthSelfSignedTLSClient, wantClient: "self-client", wantThumb: true},
		{name: "self_signed_tls_client_auth new cert for registered key", req: Request{Form: url.Values{paramClientID: {"self-client"}}, PeerCertificates: certs(sameKeyNewCert)},
			wantMethod: identity.AuthSelfSignedTLSClient, wantClient: "self-client", wantThumb: true},
		{name: "client_secret_basic", req: Request{HasBasic: true, BasicUser: "basic-client", BasicPass: f.secret},
			setup: allowSecrets, wantMethod: identity.AuthClientSecretBasic, wantClient: "basic-client"},
		{name: "client_secret_post", req: Request{Form: url.Values{paramClientID: {"post-client"}, paramClientSecret: {f.secret}}},
			setup: allowSecrets, wantMethod: identity.AuthClientSecretPost, wantClient: "post-client"},

		// private_key_jwt refusals.
		{name: "alg none", req: Request{Form: assertionForm(rawJWS(map[string]any{"alg": "none"}, jwtClaims("n1", nil), nil))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "algorithm"},
		{name: "HS256 signed with the client's public key", req: Request{Form: assertionForm(hs256WithPublicKey(t, f, jwtClaims("n2", nil)))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "algorithm"},
		{name: "HS256 configured into the allow-list is still refused", req: Request{Form: assertionForm(hs256WithPublicKey(t, f, jwtClaims("n3", nil)))},
			setup:    func(a *Authenticator, _ *fakeReplay) { a.Algorithms = []string{"HS256", "ES256"} },
			wantCode: oauth.CodeInvalidClient, wantDesc: "algorithm"},
		{name: "alg outside a narrowed allow-list", req: Request{Form: assertionForm(sign(t, f.edKey, jose.EdDSA, "ed1", jwtClaims("n4", nil), nil))},
			setup:    func(a *Authenticator, _ *fakeReplay) { a.Algorithms = []string{"ES256"} },
			wantCode: oauth.CodeInvalidClient, wantDesc: "use one of ES256"},
		{name: "expired", req: Request{Form: assertionForm(es(jwtClaims("n5", func(m map[string]any) {
			m["iat"], m["exp"] = t0.Add(-2*time.Minute).Unix(), t0.Add(-31*time.Second).Unix()
		})))}, wantCode: oauth.CodeInvalidClient, wantDesc: "expired"},
		{name: "missing exp", req: Request{Form: assertionForm(es(jwtClaims("n6", func(m map[string]any) { delete(m, "exp") })))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "no exp"},
		{name: "not yet valid (nbf)", req: Request{Form: assertionForm(es(jwtClaims("n7", func(m map[string]any) { m["nbf"] = t0.Add(time.Minute).Unix() })))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "nbf"},
		{name: "exp too far ahead", req: Request{Form: assertionForm(es(jwtClaims("n8", func(m map[string]any) {
			delete(m, "iat")
			m["exp"] = t0.Add(6 * time.Minute).Unix()
		})))}, wantCode: oauth.CodeInvalidClient, wantDesc: "too far ahead"},
		{name: "iat in the future", req: Request{Form: assertionForm(es(jwtClaims("n9", func(m map[string]any) { m["iat"] = t0.Add(time.Minute).Unix() })))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "iat is in the future"},
		{name: "exp - iat exceeds the maximum lifetime", req: Request{Form: assertionForm(es(jwtClaims("n10", func(m map[string]any) {
			m["iat"], m["exp"] = t0.Add(-5*time.Minute).Unix(), t0.Add(time.Minute).Unix()
		})))}, wantCode: oauth.CodeInvalidClient, wantDesc: "lifetime"},
		{name: "replayed jti", req: Request{Form: assertionForm(es(jwtClaims("used", nil)))},
			setup:    func(_ *Authenticator, r *fakeReplay) { r.seen[[2]string{"jwt-client", "used"}] = t0 },
			wantCode: oauth.CodeInvalidClient, wantDesc: "assertion jti was already used", wantCause: ErrReplayed},
		{name: "missing jti", req: Request{Form: assertionForm(es(jwtClaims("", nil)))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "no jti"},
		{name: "wrong aud", req: Request{Form: assertionForm(es(jwtClaims("n11", func(m map[string]any) { m["aud"] = "https://evil.example" })))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "aud"},
		{name: "iss != sub", req: Request{Form: assertionForm(es(jwtClaims("n12", func(m map[string]any) { m["iss"] = "someone-else" })))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "iss must equal sub"},
		{name: "sub != client_id", req: Request{Form: func() url.Values {
			v := assertionForm(es(jwtClaims("n13", nil)))
			v.Set(paramClientID, "tls-dn")
			return v
		}()}, wantCode: oauth.CodeInvalidClient, wantDesc: "client_id does not name"},
		{name: "unknown kid", req: Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "nope", jwtClaims("n14", nil), nil))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "kid names no key"},
		{name: "signature by an unregistered key", req: Request{Form: assertionForm(sign(t, f.otherEC, jose.ES256, "ec1", jwtClaims("n15", nil), nil))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "does not verify", wantCause: ErrBadCredential},
		{name: "signature by an unregistered key without kid", req: Request{Form: assertionForm(sign(t, f.otherEC, jose.ES256, "", jwtClaims("n16", nil), nil))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "does not verify"},
		{name: "kid of a key of another type", req: Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ed1", jwtClaims("n17", nil), nil))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "fits"},
		{name: "typ of an access token", req: Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", jwtClaims("n18", nil), map[jose.HeaderKey]any{"typ": "at+jwt"}))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "typ"},
		{name: "wrong assertion type", req: Request{Form: url.Values{paramClientAssertionType: {"urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}, paramClientAssertion: {es(jwtClaims("n19", nil))}}},
			wantCode: oauth.CodeInvalidClient, wantDesc: "client_assertion_type is not supported"},
		{name: "assertion without type", req: Request{Form: url.Values{paramClientAssertion: {es(jwtClaims("n20", nil))}}},
			wantCode: oauth.CodeInvalidRequest, wantDesc: "client_assertion_type is missing"},
		{name: "type without assertion", req: Request{Form: url.Values{paramClientAssertionType: {JWTBearerAssertionType}}},
			wantCode: oauth.CodeInvalidRequest, wantDesc: "client_assertion is missing"},
		{name: "oversized assertion", req: Request{Form: assertionForm(es(jwtClaims("n21", func(m map[string]any) { m["pad"] = strings.Repeat("x", MaxAssertionBytes) })))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "larger than 8192 bytes"},
		{name: "garbage assertion", req: Request{Form: assertionForm("not.a.jwt-at-all")},
			wantCode: oauth.CodeInvalidClient, wantDesc: "compact serialisation"},
		{name: "JWE-shaped assertion", req: Request{Form: assertionForm("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d")},
			wantCode: oauth.CodeInvalidClient, wantDesc: "compact serialisation"},
		{name: "claims not an object", req: Request{Form: assertionForm(rawJWS(map[string]any{"alg": "ES256"}, nil, []byte{1}))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "no sub"},
		{name: "unknown client", req: Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("ghost", "u1", nil), nil))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "not registered", wantCause: ErrUnknownClient},
		{name: "store failure is server_error", req: Request{Form: assertionForm(es(jwtClaims("u2", nil)))},
			setup:    func(a *Authenticator, _ *fakeReplay) { a.Clients = &fakeClients{err: errors.New("db down")} },
			wantCode: oauth.CodeServerError, wantStatus: http.StatusInternalServerError},
		{name: "no audiences configured fails closed", req: Request{Form: assertionForm(es(jwtClaims("u3", nil)))},
			setup:    func(a *Authenticator, _ *fakeReplay) { a.Audiences = nil },
			wantCode: oauth.CodeServerError, wantStatus: http.StatusInternalServerError},
		{name: "suspended client", req: Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-suspended", "s1", nil), nil))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "suspended", wantCause: identity.ErrSuspended},
		{name: "revoked client", req: Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-revoked", "s2", nil), nil))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "revoked", wantCause: identity.ErrRevoked},
		{name: "expired client", req: Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-expired", "s3", nil), nil))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "expired", wantCause: identity.ErrExpired},
		{name: "assertion for a tls_client_auth client", req: Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("tls-dn", "m1", nil), nil))},
			wantCode: oauth.CodeInvalidClient, wantDesc: "registered for tls_client_auth", wantCause: ErrMethod},

		// Method selection.
		{name: "Basic and client_assertion", req: Request{Form: assertionForm(es(jwtClaims("t1", nil))), HasBasic: true, BasicUser: "jwt-client", BasicPass: f.secret},
			setup: allowSecrets, wantCode: oauth.CodeInvalidRequest, wantDesc: "more than one"},
		{name: "Basic and client_secret", req: Request{Form: url.Values{paramClientSecret: {f.secret}}, HasBasic: true, BasicUser: "basic-client", BasicPass: f.secret},
			setup: allowSecrets, wantCode: oauth.CodeInvalidRequest, wantDesc: "more than one"},
		{name: "repeated client_id", req: Request{Form: url.Values{paramClientID: {"tls-dn", "tls-dn"}}, PeerCertificates: certs(f.leaf)},
			wantCode: oauth.CodeInvalidRequest, wantDesc: "client_id is repeated"},
		{name: "repeated client_assertion", req: Request{Form: url.Values{paramClientAssertionType: {JWTBearerAssertionType}, paramClientAssertion: {"a", "b"}}},
			wantCode: oauth.CodeInvalidRequest, wantDesc: "client_assertion is repeated"},
		{name: "no authentication at all", req: Request{Form: url.Values{}},
			wantCode: oauth.CodeInvalidClient, wantDesc: "no client authentication"},
		{name: "only client_id of a private_key_jwt client", req: Request{Form: url.Values{paramClientID: {"jwt-client"}}, PeerCertificates: certs(f.leaf)},
			wantCode: oauth.CodeInvalidClient, wantDesc: "registered for private_key_jwt", wantCause: ErrMethod},
		{name: "secret for a private_key_jwt client", req: Request{HasBasic: true, BasicUser: "jwt-client", BasicPass: f.secret},
			setup: allowSecrets, wantCode: oauth.CodeInvalidClient, wantDesc: "registered for private_key_jwt", wantChallenge: "Basic", wantCause: ErrMethod},
		{name: "basic-registered client using post", req: Request{Form: url.Values{paramClientID: {"basic-client"}, paramClientSecret: {f.secret}}},
			setup: allowSecrets, wantCode: oauth.CodeInvalidClient, wantDesc: "registered for client_secret_basic", wantCause: ErrMethod},

		// Static secrets.
		{name: "secret when static secrets are off", req: Request{HasBasic: true, BasicUser: "basic-client", BasicPass: f.secret},
			wantCode: oauth.CodeInvalidClient, wantDesc: "disabled", wantChallenge: "Basic", wantCause: ErrSecretsOff},
		{name: "post secret when static secrets are off", req: Request{Form: url.Values{paramClientID: {"post-client"}, paramClientSecret: {f.secret}}},
			wantCode: oauth.CodeInvalidClient, wantDesc: "disabled", wantCause: ErrSecretsOff},
		{name: "wrong secret", req: Request{HasBasic: true, BasicUser: "basic-client", BasicPass: "kbs_wrong-secret-guess"},
			setup: allowSecrets, wantCode: oauth.CodeInvalidClient, wantDesc: "secret is wrong", wantChallenge: "Basic", wantCause: identity.ErrSecretMismatch},
		{name: "Basic user differs from client_id", req: Request{Form: url.Values{paramClientID: {"post-client"}}, HasBasic: true, BasicUser: "basic-client", BasicPass: f.secret},
			setup: allowSecrets, wantCode: oauth.CodeInvalidClient, wantDesc: "client_id does not name", wantChallenge: "Basic"},

		// Certificates.
		{name: "cert not matching registered DN", req: Request{Form: url.Values{paramClientID: {"tls-dn-other"}}, PeerCertificates: certs(f.leaf)},
			wantCode: oauth.CodeInvalidClient, wantDesc: "subject does not match"},
		{name: "tls_client_auth with a self-signed cert", req: Request{Form: url.Values{paramClientID: {"tls-dn"}}, PeerCertificates: certs(f.selfCert)},
			wantCode: oauth.CodeInvalidClient, wantDesc: "does not verify"},
		{name: "tls_client_auth cert outside validity", req: Request{Form: url.Values{paramClientID: {"tls-dn"}}, PeerCertificates: certs(f.leaf)},
			setup:    func(a *Authenticator, _ *fakeReplay) { a.Now = func() time.Time { return t0.Add(48 * time.Hour) } },
			wantCode: oauth.CodeInvalidClient, wantDesc: "validity"},
		{name: "tls_client_auth without ClientCAs fails closed", req: Request{Form: url.Values{paramClientID: {"tls-dn"}}, PeerCertificates: certs(f.leaf)},
			setup:    func(a *Authenticator, _ *fakeReplay) { a.ClientCAs = nil },
			wantCode: oauth.CodeServerError, wantStatus: http.StatusInternalServerError},
		{name: "self-signed cert not registered", req: Request{Form: url.Values{paramClientID: {"self-client"}}, PeerCertificates: certs(otherSelf)},
			wantCode: oauth.CodeInvalidClient, wantDesc: "not one registered"},
		{name: "no cert presented", req: Request{Form: url.Values{paramClientID: {"tls-dn"}}},
			wantCode: oauth.CodeInvalidClient, wantDesc: "must present its TLS client certificate"},
		{name: "no cert presented for self-signed", req: Request{Form: url.Values{paramClientID: {"self-client"}}},
			wantCode: oauth.CodeInvalidClient, wantDesc: "must present"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, replay := f.authenticator()
			if tt.setup != nil {
				tt.setup(a, replay)
			}
			before := replay.len()
			res, err := a.Authenticate(context.Background(), tt.req)

			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("Authenticate: %v (cause %v)", err, errors.Unwrap(err))
				}
				if res.Client.ID != tt.wantClient || res.Method != tt.wantMethod {
					t.Errorf("got client %q method %q, want %q %q", res.Client.ID, res.Method, tt.wantClient, tt.wantMethod)
				}
				if (res.CertThumbprint != "") != tt.wantThumb {
					t.Errorf("CertThumbprint = %q, want set: %v", res.CertThumbprint, tt.wantThumb)
				}
				if tt.wantThumb {
					sum := sha256.Sum256(tt.req.PeerCertificates[0].Raw)
					if want := base64.RawURLEncoding.EncodeToString(sum[:]); res.CertThumbprint != want {
						t.Errorf("CertThumbprint = %q, want %q", res.CertThumbprint, want)
					}
				}
				if res.Method == identity.AuthPrivateKeyJWT {
					if res.AssertionJTI == "" || replay.len() != before+1 {
						t.Errorf("jti %q not claimed (replay entries %d -> %d)", res.AssertionJTI, before, replay.len())
					}
				}
				return
			}

			if res != nil {
				t.Fatalf("Authenticate returned a result with error %v", err)
			}
			var oe *oauth.Error
			if !errors.As(err, &oe) {
				t.Fatalf("error %v is not an *oauth.Error", err)
			}
			wantStatus := tt.wantStatus
			if wantStatus == 0 {
				wantStatus = map[string]int{oauth.CodeInvalidClient: 401, oauth.CodeInvalidRequest: 400}[tt.wantCode]
			}
			if oe.Code != tt.wantCode || oe.Status != wantStatus {
				t.Errorf("got %s/%d, want %s/%d (%v)", oe.Code, oe.Status, tt.wantCode, wantStatus, oe)
			}
			if !strings.Contains(oe.Description, tt.wantDesc) {
				t.Errorf("description %q does not contain %q", oe.Description, tt.wantDesc)
			}
			if oe.Challenge != tt.wantChallenge {
				t.Errorf("Challenge = %q, want %q", oe.Challenge, tt.wantChallenge)
			}
			for _, r := range oe.Description {
				if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
					t.Errorf("description %q has a character RFC 6749 section 5.2 forbids", oe.Description)
					break
				}
			}
			if tt.wantCause != nil && !errors.Is(err, tt.wantCause) {
				t.Errorf("cause %v does not wrap %v", oe.Cause, tt.wantCause)
			}
			for _, s := range secretsOf(tt.req) {
				if strings.Contains(oe.Description, s) || strings.Contains(oe.Error(), s) {
					t.Errorf("description echoes a credential: %q", oe.Description)
				}
			}
			if got := replay.len(); got != before {
				t.Errorf("refused request changed the replay cache: %d -> %d entries", before, got)
			}
		})
	}
}

func allowSecrets(a *Authenticator, _ *fakeReplay) { a.AllowStaticSecrets = true }

// secretsOf lists the credential material in r, and each JWS part of an
// assertion, that no description may echo.
func secretsOf(r Request) []string {
	var out []string
	if r.BasicPass != "" {
		out = append(out, r.BasicPass)
	}
	for _, k := range []string{paramClientSecret, paramClientAssertion} {
		for _, v := range r.Form[k] {
			if len(v) < 8 {
				continue
			}
			out = append(out, v)
			for _, part := range strings.Split(v, ".") {
				if len(part) >= 8 {
					out = append(out, part)
				}
			}
		}
	}
	return out
}

// TestReplayOnSecondUse checks that the same assertion is accepted once.
func TestReplayOnSecondUse(t *testing.T) {
	f := loadFixture(t)
	a, _ := f.authenticator()
	req := Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-client", "once", nil), nil))}
	if _, err := a.Authenticate(context.Background(), req); err != nil {
		t.Fatalf("first use: %v", err)
	}
	_, err := a.Authenticate(context.Background(), req)
	if !errors.Is(err, ErrReplayed) {
		t.Fatalf("second use: got %v, want ErrReplayed", err)
	}
}

// TestReplayUntil checks the replay cache is asked to remember a jti until
// the assertion could no longer be accepted: exp plus leeway.
func TestReplayUntil(t *testing.T) {
	f := loadFixture(t)
	a, replay := f.authenticator()
	exp := t0.Add(2 * time.Minute)
	req := Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-client", "until", func(m map[string]any) { m["exp"] = exp.Unix() }), nil))}
	if _, err := a.Authenticate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got, want := replay.seen[[2]string{"jwt-client", "until"}], exp.Add(DefaultLeeway); !got.Equal(want) {
		t.Errorf("remembered until %v, want %v", got, want)
	}
}

func TestZeroAuthenticatorFailsClosed(t *testing.T) {
	f := loadFixture(t)
	var a Authenticator
	req := Request{Form: assertionForm(sign(t, f.ecKey, jose.ES256, "ec1", claims("jwt-client", "z", nil), nil))}
	if _, err := a.Authenticate(context.Background(), req); err == nil {
		t.Fatal("zero Authenticator accepted a request")
	}
	a.Clients = &fakeClients{m: f.clients}
	if _, err := a.Authenticate(context.Background(), req); err == nil {
		t.Fatal("Authenticator without Replay and Audiences accepted an assertion")
	}
}

func TestRequestLogValueRedacts(t *testing.T) {
	r := Request{Form: url.Values{paramClientSecret: {"kbs_top-secret"}}, HasBasic: true, BasicPass: "kbs_other-secret"}
	s := r.LogValue().String()
	if strings.Contains(s, "kbs_") {
		t.Errorf("LogValue leaks a secret: %s", s)
	}
}
