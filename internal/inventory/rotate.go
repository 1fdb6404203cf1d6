package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// Rotation replaces an identity's credential with a new one while the old
// one keeps working for an overlap window, so the caller can roll the new
// credential out before the old one stops. The old credential is kept as
// identity.Client.Previous; every check that accepts a credential also
// accepts Previous until its RetiresAt, and RetirePrevious drops it from
// the store afterwards. Only one rotation may be open at a time: a second
// one during the overlap would retire a credential that is still rolling
// out, so it is refused unless the caller finishes the open one first.

// RotateRequest names the new credential. Exactly the field of the
// identity's authentication method is used: JWKS for private_key_jwt (the
// new public keys) and self_signed_tls_client_auth (the new certificate as
// x5c), one of the TLS names for tls_client_auth; a legacy secret takes no
// input, a new one is generated.
type RotateRequest struct {
	JWKS         json.RawMessage `json:"jwks,omitempty"`
	TLSSubjectDN string          `json:"tls_client_auth_subject_dn,omitempty"`
	TLSSANDNS    string          `json:"tls_client_auth_san_dns,omitempty"`
	TLSSANURI    string          `json:"tls_client_auth_san_uri,omitempty"`
	// Overlap is how long the old credential keeps working; zero means the
	// policy's RotationOverlap.
	Overlap time.Duration `json:"-"`
}

// Rotated is the result of Rotate. Secret is set only for a legacy secret,
// and this is the only time it is ever available.
type Rotated struct {
	Client *identity.Client
	Secret string
}

// Errors of the rotation lifecycle.
var (
	// ErrRotationOpen refuses a rotation while the previous one's overlap
	// is still open.
	ErrRotationOpen = errors.New("inventory: a rotation is still in its overlap window")
	// ErrNoRotation is returned by RetireNow when no overlap is open.
	ErrNoRotation = errors.New("inventory: no rotation overlap is open")
	// ErrNotRotatable is returned for a credential keybound does not hold:
	// workload certificates renew on their own.
	ErrNotRotatable = errors.New("inventory: the credential cannot be rotated here")
)

// Rotate installs a new credential for client id and keeps the current one
// as Previous until now + overlap, in one store write with an admin event.
func (s *Service) Rotate(ctx context.Context, actor, id string, req RotateRequest) (*Rotated, error) {
	c, err := s.Store.GetClient(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	now := s.now()
	if c.Status == identity.StatusRevoked {
		return nil, fmt.Errorf("%w: client %s is revoked; register a new identity instead", ErrTransition, id)
	}
	if p := c.PreviousAt(now); p != nil {
		return nil, fmt.Errorf("%w until %s; finish it first with `keybound client rotate %s --retire-previous`", ErrRotationOpen, p.RetiresAt.Format(time.RFC3339), id)
	}
	overlap := req.Overlap
	if overlap == 0 {
		overlap = s.Policy.RotationOverlap
	}
	if overlap <= 0 || (s.Policy.MaxRotationOverlap > 0 && overlap > s.Policy.MaxRotationOverlap) {
		return nil, fieldErr("overlap", fmt.Sprintf("must be positive and at most %s", s.Policy.MaxRotationOverlap))
	}

	next := *c
	prev := &identity.PreviousCredential{RotatedAt: now, RetiresAt: now.Add(overlap)}
	if c.ExpiresAt.Before(prev.RetiresAt) {
		// The old credential never outlives its identity.
		prev.RetiresAt = c.ExpiresAt
	}
	changes := map[string]string{"retires_at": prev.RetiresAt.Format(time.RFC3339)}
	out := &Rotated{Client: &next}
	hasJWKS := len(bytes.TrimSpace(req.JWKS)) > 0 && !bytes.Equal(bytes.TrimSpace(req.JWKS), []byte("null"))
	tlsNames := 0
	for _, v := range []string{req.TLSSubjectDN, req.TLSSANDNS, req.TLSSANURI} {
		if strings.TrimSpace(v) != "" {
			tlsNames++
		}
	}
	switch m := c.AuthMethod; {
	case m == identity.AuthPrivateKeyJWT || m == identity.AuthSelfSignedTLSClient:
		if tlsNames > 0 {
			return nil, fieldErr("tls_client_auth_subject_dn", "is only used to rotate a tls_client_auth identity")
		}
		if !hasJWKS {
			return nil, fieldErr("jwks", "is required: give the new public keys (a JWK Set) to rotate to")
		}
		if err := checkJWKS(req.JWKS, m == identity.AuthSelfSignedTLSClient); err != nil {
			return nil, fieldErr("jwks", err.Error())
		}
		newJWKS := append(json.RawMessage(nil), bytes.TrimSpace(req.JWKS)...)
		if bytes.Equal(newJWKS, c.JWKS) {
			return nil, fieldErr("jwks", "is the JWK Set already registered; rotate to new keys")
		}
		prev.JWKS, next.JWKS = c.JWKS, newJWKS
		changes["credential"] = "jwks"
	case m == identity.AuthTLSClient:
		if hasJWKS {
			return nil, fieldErr("jwks", "is only used to rotate private_key_jwt or self_signed_tls_client_auth identities")
		}
		if c.TLSSubjectDN == "" && c.TLSSANDNS == "" && c.TLSSANURI == "" {
			return nil, fmt.Errorf("%w: client %s authenticates with keybound workload certificates, which renew on their own (`keybound cert renew`, or the SDK in the background)", ErrNotRotatable, id)
		}
		if tlsNames != 1 {
			return nil, fieldErr("tls_client_auth_subject_dn", "give exactly one of tls_client_auth_subject_dn, tls_client_auth_san_dns or tls_client_auth_san_uri for the new certificate")
		}
		var fe []FieldError
		bad := func(field, format string, args ...any) {
			fe = append(fe, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
		}
		dn, dns, uri := checkText("tls_client_auth_subject_dn", req.TLSSubjectDN, false, bad), checkText("tls_client_auth_san_dns", req.TLSSANDNS, false, bad), checkText("tls_client_auth_san_uri", req.TLSSANURI, false, bad)
		if len(fe) > 0 {
			return nil, &ValidationError{Fields: fe}
		}
		if dn == c.TLSSubjectDN && dns == c.TLSSANDNS && uri == c.TLSSANURI {
			return nil, fieldErr("tls_client_auth_subject_dn", "names the certificate already registered; rotate to the new certificate's subject")
		}
		prev.TLSSubjectDN, prev.TLSSANDNS, prev.TLSSANURI = c.TLSSubjectDN, c.TLSSANDNS, c.TLSSANURI
		next.TLSSubjectDN, next.TLSSANDNS, next.TLSSANURI = dn, dns, uri
		changes["credential"] = "tls_client_auth_subject"
	case m.IsStaticSecret():
		if hasJWKS || tlsNames > 0 {
			return nil, fieldErr("jwks", "a legacy secret takes no input: keybound generates the new secret")
		}
		secret, h, err := identity.NewSecret()
		if err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		prev.Secret, next.Secret, out.Secret = c.Secret, h, secret
		changes["credential"] = "secret"
	default:
		return nil, fmt.Errorf("%w: client %s has authentication method %q", ErrNotRotatable, id, c.AuthMethod)
	}
	next.Previous = prev
	next.UpdatedAt = after(now, c.UpdatedAt)
	ev := store.AdminEvent{Time: now, Actor: actor, Action: "client.rotate", Target: id, Changes: changes}
	if err := s.Store.UpdateClient(ctx, &next, c.UpdatedAt, ev); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	s.changed(id)
	return out, nil
}

// RetireNow ends the open rotation overlap of client id at once: the
// previous credential stops working, for example once every caller is
// known to use the new one, or when the old one leaked.
func (s *Service) RetireNow(ctx context.Context, actor, id string) (*identity.Client, error) {
	c, err := s.Store.GetClient(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if c.PreviousAt(s.now()) == nil {
		return nil, fmt.Errorf("%w for client %s", ErrNoRotation, id)
	}
	return s.retire(ctx, actor, c, "retired early")
}

// RetirePrevious removes every previous credential whose overlap has ended
// at now: the sweep's task. The credential already stopped working at its
// RetiresAt (every check compares the time); this drops it from the store
// and records the retirement. It returns how many it retired. A client
// changed concurrently is left for the next sweep.
func (s *Service) RetirePrevious(ctx context.Context, actor string, now time.Time) (int, error) {
	cs, err := s.Store.ListClients(ctx, store.ClientFilter{WithPrevious: true})
	if err != nil {
		return 0, fmt.Errorf("inventory: %w", err)
	}
	n := 0
	var errs []error
	for _, c := range cs {
		if c.Previous == nil || now.Before(c.Previous.RetiresAt) {
			continue
		}
		if _, err := s.retire(ctx, actor, c, "overlap ended"); err != nil {
			if !errors.Is(err, store.ErrStale) {
				errs = append(errs, err)
			}
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func (s *Service) retire(ctx context.Context, actor string, c *identity.Client, why string) (*identity.Client, error) {
	now := s.now()
	next := *c
	next.Previous = nil
	next.UpdatedAt = after(now, c.UpdatedAt)
	ev := store.AdminEvent{Time: now, Actor: actor, Action: "client.rotation.retire", Target: c.ID,
		Changes: map[string]string{"reason": why, "rotated_at": c.Previous.RotatedAt.Format(time.RFC3339)}}
	if err := s.Store.UpdateClient(ctx, &next, c.UpdatedAt, ev); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	s.changed(c.ID)
	return &next, nil
}
