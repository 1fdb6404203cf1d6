package clientauth

import (
	"context"
	"fmt"

	"github.com/keybound/keybound/internal/identity"
)

// clientSecret authenticates a legacy shared secret sent as Basic
// credentials (client_secret_basic) or in the form (client_secret_post),
// RFC 6749 section 2.3.1.
//
// The two are not interchangeable: a client registered for one must use that
// one (RFC 7591 section 2 registers a single token_endpoint_auth_method), so
// an inventory of which clients send secrets in bodies stays true.
func (a *Authenticator) clientSecret(ctx context.Context, method identity.AuthMethod, formID, id, secret string) (*Result, error) {
	if !a.AllowStaticSecrets {
		return nil, invalidClient("static client secrets are disabled on this server; authenticate with private_key_jwt or a TLS client certificate", ErrSecretsOff)
	}
	if id == "" {
		return nil, invalidClient(fmt.Sprintf("%s needs a client id", method), nil)
	}
	if err := checkFormID(formID, id); err != nil {
		return nil, err
	}
	c, err := a.lookup(ctx, id, method)
	if err != nil {
		return nil, err
	}
	if err := c.VerifySecret(secret, a.now()); err != nil {
		return nil, invalidClient("the client secret is wrong", fmt.Errorf("%w: %w", ErrBadCredential, err))
	}
	if err := a.usable(c); err != nil {
		return nil, err
	}
	return &Result{Client: c, Method: method}, nil
}
