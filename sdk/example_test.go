package sdk_test

import (
	"context"
	"fmt"
	"io"
	"log"

	"github.com/keybound/keybound/sdk"
)

// Example calls an API with DPoP-bound tokens from a private_key_jwt client.
func Example() {
	ctx := context.Background()
	key, err := sdk.LoadPrivateKey("/etc/billing/key.pem")
	if err != nil {
		log.Fatal(err)
	}
	cfg := &sdk.Config{
		TokenURL:  "https://auth.example.com/oauth2/token",
		ClientID:  "svc-billing",
		Key:       key,
		Scopes:    []string{"invoices:read"},
		Resources: []string{"https://api.example.com/"},
		DPoP:      true,
	}
	resp, err := cfg.Client(ctx).Get("https://api.example.com/invoices/42")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, len(body))
}

// ExamplePublicJWKS makes a key and prints the JWK set to register for it.
func ExamplePublicJWKS() {
	key, err := sdk.GenerateKey()
	if err != nil {
		log.Fatal(err)
	}
	jwks, err := sdk.PublicJWKS(key, "billing-2026-03")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(jwks))
}
