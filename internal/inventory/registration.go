package inventory

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybound/keybound/internal/identity"
)

// Registration is a request to register a machine identity. Field names
// follow RFC 7591 section 2 (and RFC 8705 section 2, RFC 9449 section 5.2)
// where a standard name exists; owner, purpose, environment, vendor,
// expires_at, audiences and allow_bearer are keybound's.
type Registration struct {
	Name        string    `json:"client_name"`
	Owner       string    `json:"owner"`
	Purpose     string    `json:"purpose"`
	Environment string    `json:"environment"`
	Vendor      string    `json:"vendor,omitempty"`
	ExpiresAt   time.Time `json:"expires_at"`
	// Tags name the applications or projects the identity serves.
	Tags []string `json:"tags,omitempty"`

	Scope     string   `json:"scope"`
	Audiences []string `json:"audiences,omitempty"`
	// GrantTypes, when given, must be exactly ["client_credentials"].
	GrantTypes []string `json:"grant_types,omitempty"`

	AuthMethod   identity.AuthMethod `json:"token_endpoint_auth_method"`
	JWKS         json.RawMessage     `json:"jwks,omitempty"`
	TLSSubjectDN string              `json:"tls_client_auth_subject_dn,omitempty"`
	TLSSANDNS    string              `json:"tls_client_auth_san_dns,omitempty"`
	TLSSANURI    string              `json:"tls_client_auth_san_uri,omitempty"`

	DPoPBound bool `json:"dpop_bound_access_tokens,omitempty"`
	MTLSBound bool `json:"tls_client_certificate_bound_access_tokens,omitempty"`
	// AllowBearer must be set explicitly for unbound bearer tokens.
	AllowBearer bool `json:"allow_bearer,omitempty"`
	// AccessTokenLifetime in seconds; 0 means the server default.
	AccessTokenLifetime int64 `json:"access_token_lifetime,omitempty"`
}

// FieldError names one invalid registration field and what to do about it.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// ValidationError lists every invalid field of a registration.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Detail
	}
	return "inventory: invalid registration: " + strings.Join(parts, "; ")
}

// fieldErr is a *ValidationError about one field.
func fieldErr(field, detail string) error {
	return &ValidationError{Fields: []FieldError{{Field: field, Detail: detail}}}
}

// textProblem says what is wrong with v, a trimmed free-text field of an
// identity or owner ("" when nothing): empty when required, too long, or
// not printable UTF-8.
func textProblem(v string, required bool) string {
	switch {
	case v == "" && required:
		return "is required"
	case len(v) > identity.MaxTextLen:
		return fmt.Sprintf("is longer than %d bytes", identity.MaxTextLen)
	case !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "must be printable UTF-8 text"
	}
	return ""
}

// reasonProblem is textProblem for an optional free-text reason (suspend,
// resume, revoke, offboard, owner depart and transfer). A reason is stored
// in the admin log and printed raw by `keybound admin-log`, where a newline
// would forge a log line and an escape sequence would drive the operator's
// terminal, so C1 control characters (U+0080 to U+009F, which some
// terminals also obey) are refused too. It is refused, not cleaned, so the
// log says exactly what the operator sent.
func reasonProblem(v string) string {
	if p := textProblem(v, false); p != "" {
		return p
	}
	if strings.ContainsFunc(v, unicode.IsControl) {
		return "must be printable UTF-8 text"
	}
	return ""
}

// checkText trims a text field and reports its textProblem through bad.
func checkText(field, v string, required bool, bad func(field, format string, args ...any)) string {
	v = strings.TrimSpace(v)
	if p := textProblem(v, required); p != "" {
		bad(field, "%s", p)
	}
	return v
}

// toClient validates r and builds the client it describes, active from now.
func (r Registration) toClient(now time.Time, p Policy) (*identity.Client, error) {
	var fe []FieldError
	bad := func(field, format string, args ...any) {
		fe = append(fe, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	text := func(field, v string, required bool) string { return checkText(field, v, required, bad) }
	c := &identity.Client{
		Name:         text("client_name", r.Name, true),
		Owner:        text("owner", r.Owner, true),
		Purpose:      text("purpose", r.Purpose, true),
		Environment:  text("environment", r.Environment, true),
		Vendor:       text("vendor", r.Vendor, false),
		Status:       identity.StatusActive,
		CreatedAt:    now,
		UpdatedAt:    now,
		ExpiresAt:    r.ExpiresAt.UTC(),
		AuthMethod:   r.AuthMethod,
		TLSSubjectDN: text("tls_client_auth_subject_dn", r.TLSSubjectDN, false),
		TLSSANDNS:    text("tls_client_auth_san_dns", r.TLSSANDNS, false),
		TLSSANURI:    text("tls_client_auth_san_uri", r.TLSSANURI, false),
	}
	if c.Environment != "" && strings.ContainsAny(c.Environment, " \t/") {
		bad("environment", "must be one word such as prod, staging or dev")
	}
	c.Tags = parseTags(r.Tags, bad)

	switch {
	case r.ExpiresAt.IsZero():
		bad("expires_at", "is required: every identity must expire (at most %s from now)", p.MaxLifetime)
	case !r.ExpiresAt.After(now):
		bad("expires_at", "must be in the future")
	case p.MaxLifetime > 0 && r.ExpiresAt.Sub(now) > p.MaxLifetime:
		bad("expires_at", "is more than the allowed maximum of %s from now; choose an earlier date", p.MaxLifetime)
	}

	scopes, err := identity.ParseScope(r.Scope)
	if err != nil {
		bad("scope", "%s", strings.TrimPrefix(err.Error(), "identity: "))
	}
	c.Scopes = scopes
	if len(r.Audiences) > identity.MaxAudiences {
		bad("audiences", "at most %d audiences are allowed", identity.MaxAudiences)
	}
	for i, a := range r.Audiences {
		u, err := url.Parse(a)
		if err != nil || !u.IsAbs() || u.Fragment != "" || len(a) > identity.MaxTextLen {
			bad(fmt.Sprintf("audiences[%d]", i), "must be an absolute URI without a fragment (RFC 8707 section 2)")
			continue
		}
		if !slices.Contains(c.Audiences, a) {
			c.Audiences = append(c.Audiences, a)
		}
	}
	if len(r.GrantTypes) > 0 && !slices.Equal(r.GrantTypes, []string{"client_credentials"}) {
		bad("grant_types", "only [\"client_credentials\"] is supported for machine clients")
	}

	if !r.AuthMethod.Valid() {
		bad("token_endpoint_auth_method", "must be one of private_key_jwt, tls_client_auth, self_signed_tls_client_auth, client_secret_basic, client_secret_post")
	}
	hasJWKS := len(bytes.TrimSpace(r.JWKS)) > 0 && !bytes.Equal(bytes.TrimSpace(r.JWKS), []byte("null"))
	switch r.AuthMethod {
	case identity.AuthPrivateKeyJWT:
		if !hasJWKS {
			bad("jwks", "is required for private_key_jwt: register the client's public keys")
		} else if err := checkJWKS(r.JWKS, false); err != nil {
			bad("jwks", "%v", err)
		}
	case identity.AuthSelfSignedTLSClient:
		if !hasJWKS {
			bad("jwks", "is required for self_signed_tls_client_auth: register the client's certificate as x5c")
		} else if err := checkJWKS(r.JWKS, true); err != nil {
			bad("jwks", "%v", err)
		}
	case identity.AuthTLSClient:
		n := 0
		for _, v := range []string{c.TLSSubjectDN, c.TLSSANDNS, c.TLSSANURI} {
			if v != "" {
				n++
			}
		}
		// None means keybound workload certificates only: their SPIFFE ID
		// names the client id, which is not known before registration.
		if n > 1 {
			bad("tls_client_auth_subject_dn", "at most one of tls_client_auth_subject_dn, tls_client_auth_san_dns or tls_client_auth_san_uri may be set for tls_client_auth (RFC 8705 section 2.1.2); set none to accept only keybound workload certificates")
		}
	}
	if hasJWKS && r.AuthMethod.Valid() && r.AuthMethod != identity.AuthPrivateKeyJWT && r.AuthMethod != identity.AuthSelfSignedTLSClient {
		bad("jwks", "is only used with private_key_jwt or self_signed_tls_client_auth")
	}
	if hasJWKS {
		c.JWKS = append(json.RawMessage(nil), bytes.TrimSpace(r.JWKS)...)
	}

	n := 0
	for _, b := range []bool{r.DPoPBound, r.MTLSBound, r.AllowBearer} {
		if b {
			n++
		}
	}
	switch {
	case n != 1:
		bad("dpop_bound_access_tokens", "choose exactly one binding: dpop_bound_access_tokens, tls_client_certificate_bound_access_tokens, or (only if you must) allow_bearer")
	case r.DPoPBound:
		c.Binding = identity.BindingDPoP
	case r.MTLSBound:
		c.Binding = identity.BindingMTLS
	default:
		c.Binding = identity.BindingBearer
	}

	if r.AccessTokenLifetime != 0 {
		d := time.Duration(r.AccessTokenLifetime) * time.Second
		if r.AccessTokenLifetime < 10 || (p.MaxTokenLifetime > 0 && d > p.MaxTokenLifetime) {
			bad("access_token_lifetime", "must be between 10 and %d seconds", int64(p.MaxTokenLifetime/time.Second))
		}
		c.TokenLifetime = d
	}
	if len(fe) > 0 {
		return nil, &ValidationError{Fields: fe}
	}
	return c, nil
}

// checkJWKS accepts only a bounded set of public, asymmetric signing keys.
// With needX5C, each key must carry its certificate (RFC 8705 section 2.2).
func checkJWKS(raw json.RawMessage, needX5C bool) error {
	if len(raw) > identity.MaxJWKSBytes {
		return fmt.Errorf("is larger than %d bytes", identity.MaxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return fmt.Errorf("is not a JSON Web Key Set (RFC 7517 section 5): %v", err)
	}
	if len(set.Keys) == 0 || len(set.Keys) > identity.MaxJWKSKeys {
		return fmt.Errorf("must hold between 1 and %d keys", identity.MaxJWKSKeys)
	}
	kids := map[string]bool{}
	for i, k := range set.Keys {
		if !k.Valid() {
			return fmt.Errorf("key %d is not a valid key", i)
		}
		if !k.IsPublic() {
			return fmt.Errorf("key %d holds private key material: register only the public key, and treat this private key as exposed", i)
		}
		switch pub := k.Key.(type) {
		case *ecdsa.PublicKey:
		case ed25519.PublicKey:
		case *rsa.PublicKey:
			if pub.N.BitLen() < 2048 {
				return fmt.Errorf("key %d is RSA with %d bits; at least 2048 are required", i, pub.N.BitLen())
			}
		default:
			return fmt.Errorf("key %d has an unsupported type; use EC, OKP (Ed25519) or RSA", i)
		}
		if k.Use != "" && k.Use != "sig" {
			return fmt.Errorf("key %d has use %q; client keys must be for signatures", i, k.Use)
		}
		if k.KeyID != "" {
			if kids[k.KeyID] {
				return fmt.Errorf("key id %q appears twice", k.KeyID)
			}
			kids[k.KeyID] = true
		}
		if needX5C && len(k.Certificates) == 0 {
			return fmt.Errorf("key %d has no x5c certificate", i)
		}
	}
	return nil
}

// parseTags validates application tags: short single words, no duplicates,
// at most identity.MaxTags.
func parseTags(tags []string, bad func(field, format string, args ...any)) []string {
	if len(tags) > identity.MaxTags {
		bad("tags", "at most %d tags are allowed, not %d", identity.MaxTags, len(tags))
		return nil
	}
	var out []string
	for i, t := range tags {
		t = strings.TrimSpace(t)
		if !ValidTag(t) {
			bad(fmt.Sprintf("tags[%d]", i), "must be 1 to %d letters, digits or . _ - : characters, not %q", MaxTagLen, t)
			continue
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// MaxTagLen bounds one application tag.
const MaxTagLen = 64

// ValidTag reports whether t is a well-formed application tag.
func ValidTag(t string) bool {
	if t == "" || len(t) > MaxTagLen {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-:", r)) {
			return false
		}
	}
	return true
}
