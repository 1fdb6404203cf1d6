package inventory_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
)

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRotateKeysWithOverlap(t *testing.T) {
	svc, st := newService(t)
	ctx := context.Background()
	created, err := svc.Create(ctx, "admin", valid(t))
	if err != nil {
		t.Fatal(err)
	}
	id, oldJWKS := created.Client.ID, created.Client.JWKS
	newJWKS := jwks(t, newKey(t).Public())

	out, err := svc.Rotate(ctx, "admin", id, inventory.RotateRequest{JWKS: newJWKS, Overlap: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if out.Secret != "" {
		t.Error("a key rotation returned a secret")
	}
	got, _ := svc.Get(ctx, id)
	if string(got.JWKS) != string(newJWKS) {
		t.Errorf("JWKS after rotation = %s, want the new set", got.JWKS)
	}
	if got.Previous == nil || string(got.Previous.JWKS) != string(oldJWKS) || !got.Previous.RetiresAt.Equal(now.Add(2*time.Hour)) || !got.Previous.RotatedAt.Equal(now) {
		t.Fatalf("Previous = %+v, want the old JWKS retiring at now+2h", got.Previous)
	}
	if p := got.WithPrevious(now.Add(time.Hour)); p == nil || string(p.JWKS) != string(oldJWKS) {
		t.Error("the old keys are not accepted during the overlap")
	}
	if got.WithPrevious(now.Add(2*time.Hour)) != nil {
		t.Error("the old keys are still accepted when the overlap ends")
	}
	evs, _ := st.ListAdminEvents(ctx, id, 1)
	if evs[0].Action != "client.rotate" || evs[0].Changes["credential"] != "jwks" || evs[0].Changes["retires_at"] != now.Add(2*time.Hour).Format(time.RFC3339) {
		t.Errorf("admin event = %+v", evs[0])
	}

	// A second rotation during the overlap is refused and changes nothing.
	if _, err := svc.Rotate(ctx, "admin", id, inventory.RotateRequest{JWKS: jwks(t, newKey(t).Public())}); !errors.Is(err, inventory.ErrRotationOpen) || !strings.Contains(err.Error(), "--retire-previous") {
		t.Fatalf("overlapping rotation: got %v, want ErrRotationOpen naming --retire-previous", err)
	}
	if again, _ := svc.Get(ctx, id); string(again.JWKS) != string(newJWKS) || !again.UpdatedAt.Equal(got.UpdatedAt) {
		t.Error("a refused rotation changed the client")
	}

	// Retiring early ends the overlap; then a new rotation may start.
	retired, err := svc.RetireNow(ctx, "admin", id)
	if err != nil || retired.Previous != nil {
		t.Fatalf("RetireNow = %+v, %v", retired, err)
	}
	if _, err := svc.RetireNow(ctx, "admin", id); !errors.Is(err, inventory.ErrNoRotation) {
		t.Errorf("RetireNow without an overlap: got %v, want ErrNoRotation", err)
	}
	if _, err := svc.Rotate(ctx, "admin", id, inventory.RotateRequest{JWKS: jwks(t, newKey(t).Public())}); err != nil {
		t.Errorf("rotation after retiring: %v", err)
	}
}

func TestRotateLegacySecret(t *testing.T) {
	svc, st := newService(t)
	ctx := context.Background()
	reg := valid(t)
	reg.AuthMethod, reg.JWKS, reg.DPoPBound, reg.AllowBearer = identity.AuthClientSecretBasic, nil, false, true
	created, err := svc.Create(ctx, "admin", reg)
	if err != nil {
		t.Fatal(err)
	}
	id, oldSecret := created.Client.ID, created.Secret
	out, err := svc.Rotate(ctx, "admin", id, inventory.RotateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.Secret, identity.SecretPrefix) || out.Secret == oldSecret {
		t.Fatalf("new secret = %q, want a fresh kbs_ secret", out.Secret)
	}
	got, _ := svc.Get(ctx, id)
	for _, tt := range []struct {
		secret string
		at     time.Time
		ok     bool
	}{
		{out.Secret, now, true},
		{oldSecret, now.Add(23 * time.Hour), true},
		{oldSecret, now.Add(24 * time.Hour), false},
		{"kbs_wrong", now, false},
	} {
		if err := got.VerifySecret(tt.secret, tt.at); (err == nil) != tt.ok {
			t.Errorf("VerifySecret(%.8s..., +%s) = %v, want ok=%t", tt.secret, tt.at.Sub(now), err, tt.ok)
		}
	}
	// Neither secret is ever in the admin log.
	evs, _ := st.ListAdminEvents(ctx, id, 10)
	for _, ev := range evs {
		for k, v := range ev.Changes {
			if strings.Contains(v, out.Secret) || strings.Contains(v, oldSecret) {
				t.Errorf("admin event %s field %s holds a secret", ev.Action, k)
			}
		}
	}
}

func TestRotateRefusals(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	key, err := svc.Create(ctx, "admin", valid(t))
	if err != nil {
		t.Fatal(err)
	}
	tlsReg := valid(t)
	tlsReg.AuthMethod, tlsReg.JWKS, tlsReg.TLSSubjectDN = identity.AuthTLSClient, nil, "CN=billing"
	tlsc, err := svc.Create(ctx, "admin", tlsReg)
	if err != nil {
		t.Fatal(err)
	}
	secReg := valid(t)
	secReg.AuthMethod, secReg.JWKS = identity.AuthClientSecretPost, nil
	sec, err := svc.Create(ctx, "admin", secReg)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := svc.Create(ctx, "admin", valid(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Revoke(ctx, "admin", revoked.Client.ID, "gone"); err != nil {
		t.Fatal(err)
	}
	var verr *inventory.ValidationError
	for _, tt := range []struct {
		name, id string
		req      inventory.RotateRequest
		field    string
		is       error
	}{
		{name: "keys without jwks", id: key.Client.ID, field: "jwks"},
		{name: "the same jwks", id: key.Client.ID, req: inventory.RotateRequest{JWKS: key.Client.JWKS}, field: "jwks"},
		{name: "a private jwk", id: key.Client.ID, req: inventory.RotateRequest{JWKS: []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]}`)}, field: "jwks"},
		{name: "keys with a tls subject", id: key.Client.ID, req: inventory.RotateRequest{JWKS: jwks(t, newKey(t).Public()), TLSSubjectDN: "CN=x"}, field: "tls_client_auth_subject_dn"},
		{name: "overlap above the maximum", id: key.Client.ID, req: inventory.RotateRequest{JWKS: jwks(t, newKey(t).Public()), Overlap: 31 * 24 * time.Hour}, field: "overlap"},
		{name: "negative overlap", id: key.Client.ID, req: inventory.RotateRequest{JWKS: jwks(t, newKey(t).Public()), Overlap: -time.Hour}, field: "overlap"},
		{name: "tls without a subject", id: tlsc.Client.ID, field: "tls_client_auth_subject_dn"},
		{name: "tls with two subjects", id: tlsc.Client.ID, req: inventory.RotateRequest{TLSSubjectDN: "CN=a", TLSSANDNS: "a.example"}, field: "tls_client_auth_subject_dn"},
		{name: "tls with the same subject", id: tlsc.Client.ID, req: inventory.RotateRequest{TLSSubjectDN: "CN=billing"}, field: "tls_client_auth_subject_dn"},
		{name: "tls with jwks", id: tlsc.Client.ID, req: inventory.RotateRequest{JWKS: jwks(t, newKey(t).Public())}, field: "jwks"},
		{name: "secret with jwks", id: sec.Client.ID, req: inventory.RotateRequest{JWKS: jwks(t, newKey(t).Public())}, field: "jwks"},
		{name: "revoked client", id: revoked.Client.ID, req: inventory.RotateRequest{JWKS: jwks(t, newKey(t).Public())}, is: inventory.ErrTransition},
		{name: "unknown client", id: "kb-nosuchclient", req: inventory.RotateRequest{JWKS: jwks(t, newKey(t).Public())}, is: inventory.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := svc.Get(ctx, tt.id)
			_, err := svc.Rotate(ctx, "admin", tt.id, tt.req)
			switch {
			case tt.is != nil:
				if !errors.Is(err, tt.is) {
					t.Fatalf("got %v, want %v", err, tt.is)
				}
			case !errors.As(err, &verr) || verr.Fields[0].Field != tt.field:
				t.Fatalf("got %v, want a validation error on %s", err, tt.field)
			}
			if after, _ := svc.Get(ctx, tt.id); before != nil && (after.Previous != nil || !after.UpdatedAt.Equal(before.UpdatedAt)) {
				t.Error("a refused rotation changed the client")
			}
		})
	}
	// A tls_client_auth rotation to a new subject keeps the old one.
	if _, err := svc.Rotate(ctx, "admin", tlsc.Client.ID, inventory.RotateRequest{TLSSANDNS: "billing-2.example"}); err != nil {
		t.Fatal(err)
	}
	got, _ := svc.Get(ctx, tlsc.Client.ID)
	if got.TLSSANDNS != "billing-2.example" || got.TLSSubjectDN != "" || got.Previous.TLSSubjectDN != "CN=billing" {
		t.Errorf("after tls rotation: subject %q san %q previous %+v", got.TLSSubjectDN, got.TLSSANDNS, got.Previous)
	}
}

func TestRetirePreviousSweep(t *testing.T) {
	svc, st := newService(t)
	ctx := context.Background()
	var ids []string
	for range 3 {
		c, err := svc.Create(ctx, "admin", valid(t))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Client.ID)
	}
	for i, overlap := range []time.Duration{time.Hour, 3 * time.Hour} {
		if _, err := svc.Rotate(ctx, "admin", ids[i], inventory.RotateRequest{JWKS: jwks(t, newKey(t).Public()), Overlap: overlap}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		at   time.Duration
		want int
	}{{30 * time.Minute, 0}, {time.Hour, 1}, {2 * time.Hour, 0}, {3 * time.Hour, 1}, {4 * time.Hour, 0}} {
		n, err := svc.RetirePrevious(ctx, "keybound-governance", now.Add(tt.at))
		if err != nil || n != tt.want {
			t.Errorf("RetirePrevious(+%s) = %d, %v; want %d", tt.at, n, err, tt.want)
		}
	}
	for _, id := range ids {
		if c, _ := svc.Get(ctx, id); c.Previous != nil {
			t.Errorf("client %s still holds a previous credential", id)
		}
	}
	evs, _ := st.ListAdminEvents(ctx, ids[0], 1)
	if evs[0].Action != "client.rotation.retire" || evs[0].Actor != "keybound-governance" || evs[0].Changes["reason"] != "overlap ended" {
		t.Errorf("retire event = %+v", evs[0])
	}
}

func TestRotateOverlapNeverOutlivesTheIdentity(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	reg := valid(t)
	reg.ExpiresAt = now.Add(2 * time.Hour)
	c, err := svc.Create(ctx, "admin", reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Rotate(ctx, "admin", c.Client.ID, inventory.RotateRequest{JWKS: jwks(t, newKey(t).Public()), Overlap: 10 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	got, _ := svc.Get(ctx, c.Client.ID)
	if !got.Previous.RetiresAt.Equal(reg.ExpiresAt) {
		t.Errorf("previous retires at %s, want the identity's expiry %s", got.Previous.RetiresAt, reg.ExpiresAt)
	}
}
