package cli

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/sdk"
)

func newTokenCmd(g *globals) *cobra.Command {
	var (
		issuer, clientID, keyFile, kid, dpopKey, caFile, certFile, certKey, out string
		scopes, resources                                                       []string
		useDPoP                                                                 bool
	)
	cmd := &cobra.Command{
		Use:     "token",
		Short:   "Get an access token as a registered client (private_key_jwt or mTLS; DPoP- or certificate-bound)",
		Example: `  keybound token --client-id kb-... --key billing.key --dpop-key billing-dpop.key --scope invoices:read`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if clientID == "" {
				return usageError{errors.New("--client-id is required")}
			}
			// A flag whose partner is missing would be ignored, and the
			// token asked for in a way the user did not mean.
			if (certFile == "") != (certKey == "") {
				return usageError{errors.New("--cert and --cert-key go together")}
			}
			if kid != "" && keyFile == "" {
				return usageError{errors.New("--kid names the key of --key in the registered JWK Set; it needs --key")}
			}
			if keyFile == "" && certFile == "" {
				return usageError{errors.New("give --key (private_key_jwt) or --cert and --cert-key (mTLS)")}
			}
			issuer, caFile = localServer(g.descriptor(), issuer, caFile, issuerOf)
			if issuer == "" {
				return usageError{errors.New("--issuer is required when the data directory has no server descriptor")}
			}
			tlsConf, err := clientTLS(caFile, certFile, certKey)
			if err != nil {
				return err
			}
			cfg := &sdk.Config{
				TokenURL:   strings.TrimSuffix(issuer, "/") + "/oauth2/token",
				ClientID:   clientID,
				KeyID:      kid,
				Scopes:     scopes,
				Resources:  resources,
				DPoP:       useDPoP || dpopKey != "",
				HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}},
			}
			if keyFile != "" {
				k, err := sdk.LoadPrivateKey(keyFile)
				if err != nil {
					return err
				}
				cfg.Key = k
			}
			if dpopKey != "" {
				k, err := sdk.LoadPrivateKey(dpopKey)
				if err != nil {
					return err
				}
				cfg.DPoPKey = k
			} else if useDPoP {
				fmt.Fprintln(g.stderr, "note: no --dpop-key given; the token is bound to a throw-away key, so it cannot be used after this command")
			}
			tok, err := cfg.TokenSource(cmd.Context()).TokenContext(cmd.Context())
			if err != nil {
				return err
			}
			res := map[string]any{
				"access_token": tok.AccessToken,
				"token_type":   tok.TokenType,
			}
			// A response without expires_in leaves Expiry zero; counting
			// down to year 1 printed a huge negative lifetime.
			if !tok.Expiry.IsZero() {
				res["expires_in"] = int64(time.Until(tok.Expiry).Round(time.Second) / time.Second)
			}
			if sc, ok := tok.Extra("scope").(string); ok {
				res["scope"] = sc
			}
			if cfg.DPoPKey != nil {
				if jkt, err := dpop.Thumbprint(cfg.DPoPKey.Public()); err == nil {
					res["jkt"] = jkt
				}
			}
			if out == "json" {
				return printJSON(g.stdout, res)
			}
			fmt.Fprintln(g.stdout, tok.AccessToken)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&issuer, "issuer", "", "issuer URL (default: the data directory's server)")
	f.StringVar(&clientID, "client-id", "", "registered client id")
	f.StringVar(&keyFile, "key", "", "client private key for private_key_jwt (PEM or JWK)")
	f.StringVar(&kid, "kid", "", "key id of --key in the registered JWK Set")
	f.BoolVar(&useDPoP, "dpop", false, "request a DPoP-bound token")
	f.StringVar(&dpopKey, "dpop-key", "", "DPoP private key (PEM or JWK); implies --dpop")
	f.StringVar(&caFile, "cacert", "", "CA certificate to trust (default: the data directory's CA for its own server, else the system roots)")
	f.StringVar(&certFile, "cert", "", "client certificate for mTLS (PEM)")
	f.StringVar(&certKey, "cert-key", "", "private key of --cert (PEM)")
	f.StringSliceVar(&scopes, "scope", nil, "scope to request; repeat for more")
	f.StringSliceVar(&resources, "resource", nil, "resource (audience) to request, RFC 8707; repeat for more")
	cmd.Flags().StringVarP(&out, "output", "o", "table", "json prints the whole token response; table prints the token only")
	return cmd
}
