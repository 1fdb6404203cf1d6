package inventory_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func newService(t *testing.T) (*inventory.Service, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &inventory.Service{
		Store:  st,
		Policy: inventory.Policy{MaxLifetime: 90 * 24 * time.Hour, MaxTokenLifetime: time.Hour, RotationOverlap: 24 * time.Hour, MaxRotationOverlap: 30 * 24 * time.Hour},
		Now:    func() time.Time { return now },
	}, st
}

func jwks(t *testing.T, keys ...any) json.RawMessage {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k, KeyID: "k" + string(rune('0'+len(set.Keys))), Algorithm: "ES256", Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func valid(t *testing.T) inventory.Registration {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return inventory.Registration{
		Name: "billing-sync", Owner: "team-billing@example.com", Purpose: "invoice export", Environment: "prod",
		ExpiresAt: now.Add(30 * 24 * time.Hour), Scope: "invoices:read invoices:read invoices:write",
		Audiences:  []string{"https://api.example.com"},
		AuthMethod: identity.AuthPrivateKeyJWT, JWKS: jwks(t, key.Public()), DPoPBound: true,
	}
}

func TestCreateValid(t *testing.T) {
	svc, st := newService(t)
	out, err := svc.Create(context.Background(), "admin-1", valid(t))
	if err != nil {
		t.Fatal(err)
	}
	c := out.Client
	if !strings.HasPrefix(c.ID, "kb-") || c.Status != identity.StatusActive || c.Binding != identity.BindingDPoP {
		t.Errorf("client = %+v", c)
	}
	if strings.Join(c.Scopes, " ") != "invoices:read invoices:write" {
		t.Errorf("scopes not deduplicated: %v", c.Scopes)
	}
	if out.Secret != "" || c.Secret != nil {
		t.Error("a key client got a secret")
	}
	evs, _ := st.ListAdminEvents(context.Background(), c.ID, 10)
	if len(evs) != 1 || evs[0].Action != "client.create" || evs[0].Actor != "admin-1" || evs[0].Changes["owner"] != "team-billing@example.com" {
		t.Errorf("events = %+v", evs)
	}
}

func TestCreateLegacySecret(t *testing.T) {
	svc, st := newService(t)
	reg := valid(t)
	reg.AuthMethod, reg.JWKS, reg.DPoPBound, reg.AllowBearer = identity.AuthClientSecretBasic, nil, false, true
	out, err := svc.Create(context.Background(), "admin-1", reg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.Secret, identity.SecretPrefix) {
		t.Fatalf("secret %q", out.Secret)
	}
	stored, err := st.GetClient(context.Background(), out.Client.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Secret.Verify(out.Secret) != nil || stored.Secret.Verify(out.Secret+"x") == nil {
		t.Error("stored hash does not verify the shown secret (or verifies a wrong one)")
	}
	evs, _ := st.ListAdminEvents(context.Background(), out.Client.ID, 10)
	for k, v := range evs[0].Changes {
		if strings.Contains(v, out.Secret) {
			t.Errorf("admin event %s holds the secret", k)
		}
	}
}

func TestCreateInvalid(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name   string
		mod    func(r *inventory.Registration)
		fields []string
	}{
		{"missing owner", func(r *inventory.Registration) { r.Owner = " " }, []string{"owner"}},
		{"missing purpose, environment, name", func(r *inventory.Registration) { r.Purpose, r.Environment, r.Name = "", "", "" }, []string{"purpose", "environment", "client_name"}},
		{"no expiry", func(r *inventory.Registration) { r.ExpiresAt = time.Time{} }, []string{"expires_at"}},
		{"expiry in the past", func(r *inventory.Registration) { r.ExpiresAt = now.Add(-time.Hour) }, []string{"expires_at"}},
		{"expiry beyond the maximum", func(r *inventory.Registration) { r.ExpiresAt = now.Add(91 * 24 * time.Hour) }, []string{"expires_at"}},
		{"environment with spaces", func(r *inventory.Registration) { r.Environment = "prod eu" }, []string{"environment"}},
		{"control characters", func(r *inventory.Registration) { r.Purpose = "a\nb" }, []string{"purpose"}},
		{"too long", func(r *inventory.Registration) { r.Owner = strings.Repeat("a", identity.MaxTextLen+1) }, []string{"owner"}},
		{"forbidden scope character", func(r *inventory.Registration) { r.Scope = `read "all"` }, []string{"scope"}},
		{"relative audience", func(r *inventory.Registration) { r.Audiences = []string{"api"} }, []string{"audiences[0]"}},
		{"grant type other than client_credentials", func(r *inventory.Registration) { r.GrantTypes = []string{"authorization_code"} }, []string{"grant_types"}},
		{"unknown auth method", func(r *inventory.Registration) { r.AuthMethod = "none" }, []string{"token_endpoint_auth_method"}},
		{"private_key_jwt without jwks", func(r *inventory.Registration) { r.JWKS = nil }, []string{"jwks"}},
		{"jwks not JSON", func(r *inventory.Registration) { r.JWKS = json.RawMessage(`{"keys":`) }, []string{"jwks"}},
		{"jwks holds a private key", func(r *inventory.Registration) { r.JWKS = jwks(t, ecKey) }, []string{"jwks"}},
		{"jwks with a weak RSA key", func(r *inventory.Registration) { r.JWKS = jwks(t, rsaKey.Public()) }, []string{"jwks"}},
		{"empty jwks", func(r *inventory.Registration) { r.JWKS = json.RawMessage(`{"keys":[]}`) }, []string{"jwks"}},
		{"self-signed without x5c", func(r *inventory.Registration) { r.AuthMethod = identity.AuthSelfSignedTLSClient }, []string{"jwks"}},
		{"tls_client_auth with two subjects", func(r *inventory.Registration) {
			r.AuthMethod, r.JWKS, r.TLSSubjectDN, r.TLSSANDNS = identity.AuthTLSClient, nil, "CN=a", "a.example"
		}, []string{"tls_client_auth_subject_dn"}},
		{"jwks with a secret method", func(r *inventory.Registration) { r.AuthMethod = identity.AuthClientSecretBasic }, []string{"jwks"}},
		{"no binding", func(r *inventory.Registration) { r.DPoPBound = false }, []string{"dpop_bound_access_tokens"}},
		{"two bindings", func(r *inventory.Registration) { r.MTLSBound = true }, []string{"dpop_bound_access_tokens"}},
		{"token lifetime above server maximum", func(r *inventory.Registration) { r.AccessTokenLifetime = 7200 }, []string{"access_token_lifetime"}},
		{"token lifetime too short", func(r *inventory.Registration) { r.AccessTokenLifetime = 1 }, []string{"access_token_lifetime"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, st := newService(t)
			reg := valid(t)
			tt.mod(&reg)
			_, err := svc.Create(context.Background(), "admin-1", reg)
			var ve *inventory.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			got := map[string]string{}
			for _, f := range ve.Fields {
				got[f.Field] = f.Detail
			}
			for _, f := range tt.fields {
				if got[f] == "" {
					t.Errorf("no error for %s; got %v", f, ve.Fields)
				}
			}
			if len(ve.Fields) != len(tt.fields) {
				t.Errorf("fields %v, want exactly %v", ve.Fields, tt.fields)
			}
			if cs, _ := st.ListClients(context.Background(), store.ClientFilter{}); len(cs) != 0 {
				t.Errorf("a rejected registration stored %d clients", len(cs))
			}
			if evs, _ := st.ListAdminEvents(context.Background(), "", 10); len(evs) != 0 {
				t.Errorf("a rejected registration wrote %d events", len(evs))
			}
		})
	}
}

func TestTransitions(t *testing.T) {
	svc, st := newService(t)
	ctx := context.Background()
	out, err := svc.Create(ctx, "admin-1", valid(t))
	if err != nil {
		t.Fatal(err)
	}
	id := out.Client.ID
	steps := []struct {
		name    string
		do      func() (*identity.Client, error)
		want    identity.Status
		wantErr error
	}{
		{"resume an active client", func() (*identity.Client, error) { return svc.Resume(ctx, "a", id, "") }, "", inventory.ErrTransition},
		{"suspend", func() (*identity.Client, error) { return svc.Suspend(ctx, "a", id, "incident 42") }, identity.StatusSuspended, nil},
		{"suspend twice", func() (*identity.Client, error) { return svc.Suspend(ctx, "a", id, "") }, "", inventory.ErrTransition},
		{"resume", func() (*identity.Client, error) { return svc.Resume(ctx, "a", id, "") }, identity.StatusActive, nil},
		{"revoke", func() (*identity.Client, error) { return svc.Revoke(ctx, "a", id, "decommissioned") }, identity.StatusRevoked, nil},
		{"resume a revoked client", func() (*identity.Client, error) { return svc.Resume(ctx, "a", id, "") }, "", inventory.ErrTransition},
		{"revoke twice", func() (*identity.Client, error) { return svc.Revoke(ctx, "a", id, "") }, "", inventory.ErrTransition},
		{"unknown client", func() (*identity.Client, error) { return svc.Suspend(ctx, "a", "kb-nope", "") }, "", store.ErrNotFound},
	}
	for _, s := range steps {
		c, err := s.do()
		if s.wantErr != nil {
			if !errors.Is(err, s.wantErr) {
				t.Errorf("%s: err = %v, want %v", s.name, err, s.wantErr)
			}
			continue
		}
		if err != nil || c.Status != s.want {
			t.Errorf("%s: got %v, %v", s.name, c, err)
		}
	}
	evs, _ := st.ListAdminEvents(ctx, id, 100)
	var actions []string
	for _, e := range evs {
		actions = append(actions, e.Action)
	}
	if got := strings.Join(actions, ","); got != "client.revoke,client.resume,client.suspend,client.create" {
		t.Errorf("events newest first = %s", got)
	}
	if evs[2].Changes["reason"] != "incident 42" || evs[2].Changes["status"] != "active -> suspended" {
		t.Errorf("suspend event = %+v", evs[2])
	}
}
