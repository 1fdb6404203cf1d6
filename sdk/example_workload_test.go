package sdk_test

import (
	"context"
	"log"
	"os"

	"github.com/keybound/keybound/sdk"
)

// ExampleNewCertificateSource enrolls with a one-time join token, keeps the
// workload certificate renewed, and calls an API through the gateway with
// mTLS-bound tokens (the identity is a tls_client_auth client).
func ExampleNewCertificateSource() {
	ctx := context.Background()
	src, err := sdk.NewCertificateSource(ctx, &sdk.CertificateConfig{
		Issuer:    "https://auth.example.com",
		JoinToken: os.Getenv("KEYBOUND_JOIN_TOKEN"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	client, err := src.Client(ctx, &sdk.Config{
		TokenURL: "https://auth.example.com/oauth2/token",
		Scopes:   []string{"invoices:read"},
	})
	if err != nil {
		log.Fatal(err)
	}
	resp, err := client.Get("https://api.example.com/invoices/42")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	if err := src.Err(); err != nil {
		log.Print(err) // renewal stopped, e.g. the certificate was revoked
	}
}
