package cli

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/sdk"
)

func newKeygenCmd(g *globals) *cobra.Command {
	var keyOut, jwksOut string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Generate a P-256 key pair for a client: private key (PEM, 0600) and public JWK Set to register",
		Example: `  keybound keygen --key billing.key --jwks billing.jwks.json
  keybound client create ... --jwks-file billing.jwks.json`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if keyOut == "" {
				return usageError{errors.New("--key FILE is required")}
			}
			key, err := sdk.GenerateKey()
			if err != nil {
				return err
			}
			kid, err := dpop.Thumbprint(key.Public())
			if err != nil {
				return err
			}
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return err
			}
			// O_EXCL: never overwrite an existing private key by accident.
			f, err := os.OpenFile(keyOut, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("write private key: %w", err)
			}
			if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if jwksOut != "" {
				set, err := sdk.PublicJWKS(key, kid)
				if err != nil {
					return err
				}
				if err := os.WriteFile(jwksOut, append(set, '\n'), 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.stdout, "private key %s (kid %s)\n", keyOut, kid)
			if jwksOut != "" {
				fmt.Fprintf(g.stdout, "public JWK Set %s: register it with --jwks-file\n", jwksOut)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyOut, "key", "", "where to write the private key (PEM, mode 0600; never overwritten)")
	cmd.Flags().StringVar(&jwksOut, "jwks", "", "where to write the public JWK Set")
	return cmd
}
