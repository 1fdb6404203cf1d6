package authserver

import (
	"encoding/json"
	"net/http"
)

// metadata is RFC 8414 section 2, with RFC 9449 section 5.1 and RFC 8705
// section 3.3 members. mtls_endpoint_aliases is absent on purpose: mTLS
// is served on the same listener as everything else.
type metadata struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethods          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	IntrospectionEndpointAuthMethods  []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethods     []string `json:"revocation_endpoint_auth_methods_supported"`
	DPoPSigningAlgs                   []string `json:"dpop_signing_alg_values_supported"`
	TLSClientCertificateBoundTokens   bool     `json:"tls_client_certificate_bound_access_tokens"`
	AuthorizationResponseIssParameter bool     `json:"authorization_response_iss_parameter_supported"`
}

func (s *Server) handleMetadata(w http.ResponseWriter, _ *http.Request) {
	methods := s.authMethodsSupported()
	md := metadata{
		Issuer:                           s.Settings.Issuer,
		TokenEndpoint:                    s.Settings.Issuer + PathToken,
		JWKSURI:                          s.Settings.Issuer + PathJWKS,
		IntrospectionEndpoint:            s.Settings.Issuer + PathIntrospect,
		RevocationEndpoint:               s.Settings.Issuer + PathRevoke,
		ResponseTypesSupported:           []string{},
		GrantTypesSupported:              []string{"client_credentials"},
		TokenEndpointAuthMethods:         methods,
		TokenEndpointAuthSigningAlgs:     s.Settings.AssertionAlgorithms,
		IntrospectionEndpointAuthMethods: methods,
		RevocationEndpointAuthMethods:    methods,
		DPoPSigningAlgs:                  s.Settings.DPoPAlgorithms,
		TLSClientCertificateBoundTokens:  true,
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_ = json.NewEncoder(w).Encode(md)
}

func (s *Server) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short caching: verifiers must see a newly published key well before
	// the key ring's publish lead runs out.
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(s.Keys.JWKS())
}
