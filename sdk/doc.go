// Package sdk is keybound's Go client for machine identities: it gets OAuth
// 2.0 client_credentials access tokens from a keybound token service and adds
// them to outgoing HTTP requests. It authenticates with private_key_jwt (RFC
// 7523) or a TLS client certificate (RFC 8705), asks for DPoP-bound tokens
// (RFC 9449) on request, and handles DPoP nonces at the token endpoint and at
// resource servers.
//
//	key, err := sdk.LoadPrivateKey("/etc/billing/key.pem")
//	if err != nil {
//		return err
//	}
//	cfg := &sdk.Config{
//		TokenURL:  "https://auth.example.com/oauth/token",
//		ClientID:  "svc-billing",
//		Key:       key,
//		Scopes:    []string{"invoices:read"},
//		Resources: []string{"https://api.example.com/"},
//		DPoP:      true,
//	}
//	resp, err := cfg.Client(ctx).Get("https://api.example.com/invoices/42")
//
// Register the key's public half once with PublicJWKS. A TokenSource caches
// tokens and refreshes them before they expire; use one per process and
// client, not one per request.
//
// The package is the client half only: it never verifies tokens, never stores
// anything on disk, never sends a private key anywhere, and imports no server
// code.
package sdk
