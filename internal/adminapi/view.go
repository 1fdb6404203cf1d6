package adminapi

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
)

// ClientView is a client as the admin API shows it: RFC 7591 section 3.2.1
// response names plus keybound's governance fields. ClientSecret is set only
// in the response to a registration, the one time it can be shown.
type ClientView struct {
	ClientID            string              `json:"client_id"`
	ClientSecret        string              `json:"client_secret,omitempty"`
	ClientIDIssuedAt    int64               `json:"client_id_issued_at"`
	Name                string              `json:"client_name"`
	Owner               string              `json:"owner"`
	Purpose             string              `json:"purpose"`
	Environment         string              `json:"environment"`
	Vendor              string              `json:"vendor,omitempty"`
	Tags                []string            `json:"tags,omitempty"`
	Status              identity.Status     `json:"status"`
	ExpiresAt           time.Time           `json:"expires_at"`
	UpdatedAt           time.Time           `json:"updated_at"`
	Scope               string              `json:"scope"`
	Audiences           []string            `json:"audiences,omitempty"`
	GrantTypes          []string            `json:"grant_types"`
	AuthMethod          identity.AuthMethod `json:"token_endpoint_auth_method"`
	JWKS                json.RawMessage     `json:"jwks,omitempty"`
	TLSSubjectDN        string              `json:"tls_client_auth_subject_dn,omitempty"`
	TLSSANDNS           string              `json:"tls_client_auth_san_dns,omitempty"`
	TLSSANURI           string              `json:"tls_client_auth_san_uri,omitempty"`
	DPoPBound           bool                `json:"dpop_bound_access_tokens"`
	MTLSBound           bool                `json:"tls_client_certificate_bound_access_tokens"`
	AllowBearer         bool                `json:"allow_bearer"`
	AccessTokenLifetime int64               `json:"access_token_lifetime,omitempty"`
	// PreviousCredential is set while a rotation overlap is open (or until
	// the sweep records its end): when the old credential was rotated out
	// and when it stops working. The credential itself is never shown.
	PreviousCredential *identity.PreviousCredential `json:"previous_credential,omitempty"`
	// StaticSecret marks a legacy shared-secret credential for reports.
	StaticSecret bool `json:"static_secret"`
	// LeakedAt is when keybound scan found this identity's current secret in
	// code or history; the secret must be rotated. Shown by GET
	// /clients/{id} only (listing would cost a lookup per client).
	LeakedAt *time.Time `json:"leaked_at,omitempty"`
	// Orphaned marks an identity whose owner has departed (keybound owner
	// depart): it needs a new owner (keybound client transfer).
	Orphaned bool `json:"orphaned"`
}

func viewOf(c *identity.Client) ClientView {
	return ClientView{
		ClientID:            c.ID,
		ClientIDIssuedAt:    c.CreatedAt.Unix(),
		Name:                c.Name,
		Owner:               c.Owner,
		Purpose:             c.Purpose,
		Environment:         c.Environment,
		Vendor:              c.Vendor,
		Tags:                c.Tags,
		Status:              c.Status,
		ExpiresAt:           c.ExpiresAt,
		UpdatedAt:           c.UpdatedAt,
		Scope:               strings.Join(c.Scopes, " "),
		Audiences:           c.Audiences,
		GrantTypes:          []string{"client_credentials"},
		AuthMethod:          c.AuthMethod,
		JWKS:                c.JWKS,
		TLSSubjectDN:        c.TLSSubjectDN,
		TLSSANDNS:           c.TLSSANDNS,
		TLSSANURI:           c.TLSSANURI,
		DPoPBound:           c.Binding == identity.BindingDPoP,
		MTLSBound:           c.Binding == identity.BindingMTLS,
		AllowBearer:         c.Binding == identity.BindingBearer,
		AccessTokenLifetime: int64(c.TokenLifetime / time.Second),
		StaticSecret:        c.AuthMethod.IsStaticSecret(),
		PreviousCredential:  c.Previous,
	}
}
