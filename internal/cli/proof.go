package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/sdk"
)

func newProofCmd(g *globals) *cobra.Command {
	var keyFile, method, target, token, nonce string
	cmd := &cobra.Command{
		Use:   "dpop-proof",
		Short: "Print a DPoP proof (RFC 9449) for one request, for use with curl",
		Example: `  curl -H "Authorization: DPoP $TOKEN" \
    -H "DPoP: $(keybound dpop-proof --key dpop.key --method GET --url https://api.example.com/invoices/1 --token $TOKEN)" ...`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if keyFile == "" || target == "" {
				return usageError{errors.New("--key and --url are required")}
			}
			k, err := sdk.LoadPrivateKey(keyFile)
			if err != nil {
				return err
			}
			s, err := dpop.NewSigner(k)
			if err != nil {
				return err
			}
			p, err := s.Proof(strings.ToUpper(method), target, dpop.ProofOptions{AccessToken: token, Nonce: nonce, Now: time.Now()})
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, p)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "DPoP private key (PEM or JWK)")
	cmd.Flags().StringVar(&method, "method", "POST", "HTTP method of the request (htm)")
	cmd.Flags().StringVar(&target, "url", "", "URL of the request (htu)")
	cmd.Flags().StringVar(&token, "token", "", "access token the request carries (sets ath)")
	cmd.Flags().StringVar(&nonce, "nonce", "", "server-provided DPoP nonce")
	return cmd
}

func newAssertionCmd(g *globals) *cobra.Command {
	var keyFile, kid, clientID, aud string
	cmd := &cobra.Command{
		Use:   "assertion",
		Short: "Print a private_key_jwt client assertion (RFC 7523), valid for 60 seconds, for use with curl",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if keyFile == "" || clientID == "" || aud == "" {
				return usageError{errors.New("--key, --client-id and --aud are required")}
			}
			k, err := sdk.LoadPrivateKey(keyFile)
			if err != nil {
				return err
			}
			a, err := sdk.ClientAssertion(k, kid, clientID, aud, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, a)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "client private key (PEM or JWK)")
	cmd.Flags().StringVar(&kid, "kid", "", "key id in the registered JWK Set")
	cmd.Flags().StringVar(&clientID, "client-id", "", "registered client id (iss and sub)")
	cmd.Flags().StringVar(&aud, "aud", "", "audience: the token endpoint URL or the issuer")
	return cmd
}
