package cli

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
)

func newClientRotateCmd(g *globals) *cobra.Command {
	var (
		req      adminapi.RotateRequest
		jwksFile string
		overlap  string
		out      string
	)
	cmd := &cobra.Command{
		Use:   "rotate CLIENT_ID",
		Short: "Replace an identity's credential, keeping the old one working for an overlap window",
		Long: `Replace an identity's credential with a new one. The old credential keeps
working until the overlap ends (--overlap, default the server's
governance.rotation_overlap), then stops everywhere and is retired.

  private_key_jwt and self_signed_tls_client_auth: --jwks-file with the new public keys
  tls_client_auth: the new certificate's --tls-subject, --tls-san-dns or --tls-san-uri
  client_secret_basic/post: nothing; a new secret is printed once

Only one rotation may be open: end it early with --retire-previous once every
caller uses the new credential (or at once if the old one leaked).`,
		Example: `  keybound client rotate kb-abc --jwks-file billing-2.jwks.json --overlap 48h
  keybound client rotate kb-legacy            # prints the new secret once
  keybound client rotate kb-abc --retire-previous`,
		Args: cobra.ExactArgs(1),
		RunE: withAdminChecked(g, &out, func() error {
			if overlap != "" {
				if req.RetirePrevious {
					return usageError{errors.New("--overlap and --retire-previous do not go together")}
				}
				d, err := parseLifetime(overlap)
				if err != nil {
					return usageError{fmt.Errorf("--overlap: %w", err)}
				}
				if d < time.Second {
					return usageError{errors.New("--overlap must be at least 1s")}
				}
				req.OverlapSeconds = int64(d / time.Second)
			}
			if jwksFile != "" {
				b, err := readJWKSFile(jwksFile)
				if err != nil {
					return err
				}
				req.JWKS = b
			}
			return nil
		}, func(cmd *cobra.Command, args []string, api *adminAPI) error {
			var v adminapi.ClientView
			if err := api.call(cmd.Context(), "POST", "/clients/"+url.PathEscape(args[0])+"/rotate", req, &v); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, v)
			}
			if req.RetirePrevious {
				fmt.Fprintf(g.stdout, "%s: the previous credential is retired and no longer works\n", v.ClientID)
				return nil
			}
			if p := v.PreviousCredential; p != nil {
				fmt.Fprintf(g.stdout, "%s: rotated; the previous credential keeps working until %s\n", v.ClientID, p.RetiresAt.Format(time.RFC3339))
			}
			if v.ClientSecret != "" {
				fmt.Fprintf(g.stdout, "client_secret  %s\n\nThe new secret is shown only now; keybound stores only its hash.\n", v.ClientSecret)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&jwksFile, "jwks-file", "", "the new public JWK Set (private_key_jwt; self_signed_tls_client_auth with x5c)")
	f.StringVar(&req.TLSSubjectDN, "tls-subject", "", "the new certificate's subject DN (tls_client_auth)")
	f.StringVar(&req.TLSSANDNS, "tls-san-dns", "", "the new certificate's DNS SAN (tls_client_auth)")
	f.StringVar(&req.TLSSANURI, "tls-san-uri", "", "the new certificate's URI SAN (tls_client_auth)")
	f.StringVar(&overlap, "overlap", "", "how long the old credential keeps working, e.g. 24h or 7d (default: server setting)")
	f.BoolVar(&req.RetirePrevious, "retire-previous", false, "end the open overlap now: the old credential stops working")
	outputFlag(cmd, &out)
	return cmd
}

func newClientDownscopeCmd(g *globals) *cobra.Command {
	var (
		req    adminapi.DownscopeRequest
		remove string
		out    string
	)
	cmd := &cobra.Command{
		Use:   "downscope CLIENT_ID",
		Short: "Remove granted scopes, showing the difference first",
		Long: `Remove scopes from an identity's grant. Without --yes it only shows the
difference; run it again with --yes to apply it. --unused removes every granted
scope the gateway's audit trail shows unused in the last 90 days.

Removed scopes stop working at once: the gateway refuses a token whose scope
the identity no longer holds, even before the token expires.`,
		Example: `  keybound client downscope kb-abc --unused
  keybound client downscope kb-abc --remove "invoices:write" --yes`,
		Args: cobra.ExactArgs(1),
		RunE: withAdminChecked(g, &out, func() error {
			if remove != "" {
				s, err := identity.ParseScope(remove)
				if err != nil {
					return usageError{fmt.Errorf("--remove: %s", strings.TrimPrefix(err.Error(), "identity: "))}
				}
				req.Remove = s
			}
			if len(req.Remove) == 0 && !req.Unused {
				return usageError{errors.New("name the scopes to remove with --remove, or use --unused")}
			}
			return nil
		}, func(cmd *cobra.Command, args []string, api *adminAPI) error {
			var d inventory.Downscoped
			if err := api.call(cmd.Context(), "POST", "/clients/"+url.PathEscape(args[0])+"/downscope", req, &d); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, d)
			}
			if len(d.Removed) == 0 {
				fmt.Fprintf(g.stdout, "%s: nothing to remove; scopes stay %q\n", d.ClientID, strings.Join(d.Before, " "))
				return nil
			}
			fmt.Fprintf(g.stdout, "%s scopes:\n", d.ClientID)
			for _, s := range d.Before {
				mark := " "
				if slices.Contains(d.Removed, s) {
					mark = "-"
				}
				fmt.Fprintf(g.stdout, "  %s %s\n", mark, s)
			}
			if d.Applied {
				fmt.Fprintf(g.stdout, "removed %d scope(s); the identity now holds %q\n", len(d.Removed), strings.Join(d.After, " "))
			} else {
				fmt.Fprintf(g.stdout, "dry run: nothing changed; run again with --yes to remove %d scope(s)\n", len(d.Removed))
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&remove, "remove", "", `scopes to remove, space-separated, e.g. "invoices:write"`)
	f.BoolVar(&req.Unused, "unused", false, "remove every granted scope unused in the last 90 days")
	f.BoolVar(&req.Apply, "yes", false, "apply the change (without it, only the difference is shown)")
	outputFlag(cmd, &out)
	return cmd
}
