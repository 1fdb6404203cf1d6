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
//		TokenURL:  "https://auth.example.com/oauth2/token",
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
// A CertificateSource enrolls for a short-lived keybound workload certificate
// (with private_key_jwt or a one-time join token; the key is made in memory
// or is any crypto.Signer) and renews it in the background. Its Client pairs
// each certificate with its own connections and tokens, so tls_client_auth
// and certificate-bound tokens keep working across renewals:
//
//	src, err := sdk.NewCertificateSource(ctx, &sdk.CertificateConfig{
//		Issuer: "https://auth.example.com", JoinToken: os.Getenv("KEYBOUND_JOIN_TOKEN"),
//	})
//	if err != nil {
//		return err
//	}
//	defer src.Close()
//	client, err := src.Client(ctx, &sdk.Config{TokenURL: "https://auth.example.com/oauth2/token", Scopes: []string{"invoices:read"}})
//
// The package is the client half only: it never verifies tokens, never stores
// anything on disk, never sends a private key anywhere, and imports no server
// code.
package sdk
