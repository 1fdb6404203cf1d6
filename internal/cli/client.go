package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
)

func newClientCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "client", Short: "Register and manage machine identities"}
	cmd.AddCommand(newClientCreateCmd(g), newClientListCmd(g), newClientShowCmd(g),
		newClientStatusCmd(g, "suspend", "Stop an identity from getting or using tokens until resumed"),
		newClientStatusCmd(g, "resume", "Return a suspended identity to active"),
		newClientStatusCmd(g, "revoke", "End an identity for good"),
		newClientRotateCmd(g), newClientDownscopeCmd(g),
		newClientTransferCmd(g)) // owner.go
	return cmd
}

func newClientCreateCmd(g *globals) *cobra.Command {
	var (
		reg                   inventory.Registration
		expiresIn, expiresAt  string
		auth, jwksFile, out   string
		tokenLifetime         time.Duration
		dpopB, mtlsB, bearerB bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Register a machine identity",
		Long: `Register a machine identity with its owner, purpose, environment and expiry.

The binding defaults to --dpop. For client_secret_basic/client_secret_post a
secret is generated and printed once; keybound keeps only a salted hash.`,
		Example: `  keybound client create --name billing-sync --owner team-billing@example.com \
    --purpose "nightly invoice export" --environment prod --expires-in 30d \
    --scope "invoices:read" --jwks-file billing.jwks.json --dpop -o json`,
		Args: cobra.NoArgs,
		RunE: withAdminChecked(g, &out, func() error {
			// The API counts whole seconds; truncating 1500ms to 1s, or 500ms
			// to 0 (the server's default), would quietly set another lifetime.
			if tokenLifetime%time.Second != 0 {
				return usageError{fmt.Errorf("--token-lifetime must be whole seconds, not %s", tokenLifetime)}
			}
			exp, err := expiry(expiresIn, expiresAt, time.Now())
			if err != nil {
				return usageError{err}
			}
			reg.ExpiresAt = exp
			reg.AuthMethod = identity.AuthMethod(auth)
			if jwksFile != "" {
				if reg.JWKS, err = readJWKSFile(jwksFile); err != nil {
					return err
				}
			}
			if !dpopB && !mtlsB && !bearerB {
				dpopB = true
			}
			reg.DPoPBound, reg.MTLSBound, reg.AllowBearer = dpopB, mtlsB, bearerB
			reg.AccessTokenLifetime = int64(tokenLifetime / time.Second)
			return nil
		}, func(cmd *cobra.Command, _ []string, api *adminAPI) error {
			var v adminapi.ClientView
			if err := api.call(cmd.Context(), "POST", "/clients", reg, &v); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, v)
			}
			if err := printClient(g, v); err != nil {
				return err
			}
			if v.ClientSecret != "" {
				fmt.Fprintf(g.stdout, "client_secret  %s\n\nThe secret is shown only now; keybound stores only its hash.\n", v.ClientSecret)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&reg.Name, "name", "", "name of the identity (required)")
	f.StringVar(&reg.Owner, "owner", "", "accountable person or team contact (required)")
	f.StringVar(&reg.Purpose, "purpose", "", "what the identity is for (required)")
	f.StringVar(&reg.Environment, "environment", "", "environment: prod, staging, dev, ... (required)")
	f.StringVar(&reg.Vendor, "vendor", "", "third-party vendor operating the identity, if any")
	f.StringSliceVar(&reg.Tags, "tag", nil, "application or project the identity serves; repeat for more (offboard --tag selects by it)")
	f.StringVar(&expiresIn, "expires-in", "", "lifetime, e.g. 30d or 720h (this or --expires-at is required)")
	f.StringVar(&expiresAt, "expires-at", "", "expiry as RFC 3339 time or YYYY-MM-DD")
	f.StringVar(&reg.Scope, "scope", "", `allowed scopes, space-separated, e.g. "invoices:read invoices:write"`)
	f.StringSliceVar(&reg.Audiences, "audience", nil, "allowed audience (resource URI); repeat for more")
	f.StringVar(&auth, "auth", string(identity.AuthPrivateKeyJWT), "private_key_jwt|tls_client_auth|self_signed_tls_client_auth|client_secret_basic|client_secret_post")
	f.StringVar(&jwksFile, "jwks-file", "", "public JWK Set file (private_key_jwt; self_signed_tls_client_auth with x5c)")
	f.StringVar(&reg.TLSSubjectDN, "tls-subject", "", "expected certificate subject DN (tls_client_auth)")
	f.StringVar(&reg.TLSSANDNS, "tls-san-dns", "", "expected certificate DNS SAN (tls_client_auth)")
	f.StringVar(&reg.TLSSANURI, "tls-san-uri", "", "expected certificate URI SAN, e.g. a SPIFFE ID (tls_client_auth)")
	f.BoolVar(&dpopB, "dpop", false, "tokens bound to a DPoP key (RFC 9449); the default")
	f.BoolVar(&mtlsB, "mtls-bound", false, "tokens bound to the client certificate (RFC 8705)")
	f.BoolVar(&bearerB, "allow-bearer", false, "allow unbound bearer tokens (weak; reported)")
	f.DurationVar(&tokenLifetime, "token-lifetime", 0, "access token lifetime for this client (default: server default)")
	outputFlag(cmd, &out)
	return cmd
}

// readJWKSFile reads a public JWK Set file, bounded.
func readJWKSFile(path string) (json.RawMessage, error) {
	b, err := readBounded(path, identity.MaxJWKSBytes)
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%s is not JSON; it must hold a JSON Web Key Set such as `keybound keygen` writes", path)
	}
	return b, nil
}

// expiry turns --expires-in / --expires-at into a time.
func expiry(in, at string, now time.Time) (time.Time, error) {
	switch {
	case in != "" && at != "":
		return time.Time{}, errors.New("give --expires-in or --expires-at, not both")
	case in != "":
		d, err := parseLifetime(in)
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(d).UTC().Truncate(time.Second), nil
	case at != "":
		if t, err := time.Parse(time.RFC3339, at); err == nil {
			return t, nil
		}
		if t, err := time.Parse("2006-01-02", at); err == nil {
			return t, nil
		}
		return time.Time{}, fmt.Errorf("--expires-at %q is not an RFC 3339 time or a YYYY-MM-DD date", at)
	}
	return time.Time{}, errors.New("every identity must expire: set --expires-in (e.g. 30d) or --expires-at")
}

// parseLifetime accepts Go durations plus a whole number of days ("30d").
func parseLifetime(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return 0, fmt.Errorf("--expires-in %q: use a positive number of days such as 30d, or a duration such as 720h", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--expires-in %q: use a positive number of days such as 30d, or a duration such as 720h", s)
	}
	return d, nil
}

func readBounded(path string, max int) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > int64(max) {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return os.ReadFile(path)
}

func printClient(g *globals, v adminapi.ClientView) error {
	rows := [][]string{
		{"client_id", v.ClientID},
		{"name", v.Name},
		{"owner", v.Owner},
		{"purpose", v.Purpose},
		{"environment", v.Environment},
		{"vendor", v.Vendor},
		{"tags", strings.Join(v.Tags, " ")},
		{"status", string(v.Status)},
		{"expires_at", v.ExpiresAt.Format(time.RFC3339)},
		{"scope", v.Scope},
		{"audiences", strings.Join(v.Audiences, " ")},
		{"auth_method", string(v.AuthMethod)},
		{"binding", binding(v)},
	}
	if v.Orphaned {
		rows = append(rows, []string{"orphaned", "yes: the owner has departed; keybound client transfer " + v.ClientID + " --to NEW-OWNER"})
	}
	if p := v.PreviousCredential; p != nil {
		rows = append(rows, []string{"previous_credential", "rotated " + p.RotatedAt.Format(time.RFC3339) + ", accepted until " + p.RetiresAt.Format(time.RFC3339)})
	}
	return printTable(g.stdout, []string{"FIELD", "VALUE"}, rows)
}

func binding(v adminapi.ClientView) string {
	switch {
	case v.DPoPBound:
		return "dpop"
	case v.MTLSBound:
		return "mtls"
	case v.AllowBearer:
		return "bearer"
	}
	return "?"
}

func newClientListCmd(g *globals) *cobra.Command {
	var owner, env, status, out string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List machine identities",
		Args:  cobra.NoArgs,
		RunE: withAdmin(g, &out, func(cmd *cobra.Command, _ []string, api *adminAPI) error {
			q := url.Values{}
			for k, v := range map[string]string{"owner": owner, "environment": env, "status": status} {
				if v != "" {
					q.Set(k, v)
				}
			}
			q.Set("limit", strconv.Itoa(limit))
			var res struct {
				Clients []adminapi.ClientView `json:"clients"`
			}
			if err := api.call(cmd.Context(), "GET", "/clients?"+q.Encode(), nil, &res); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, res.Clients)
			}
			rows := make([][]string, 0, len(res.Clients))
			for _, c := range res.Clients {
				owner := c.Owner
				if c.Orphaned {
					owner += " (departed: orphaned)"
				}
				rows = append(rows, []string{c.ClientID, c.Name, owner, c.Environment, string(c.Status), string(c.AuthMethod), binding(c), c.ExpiresAt.Format("2006-01-02")})
			}
			return printTable(g.stdout, []string{"CLIENT_ID", "NAME", "OWNER", "ENV", "STATUS", "AUTH", "BINDING", "EXPIRES"}, rows)
		}),
	}
	cmd.Flags().StringVar(&owner, "owner", "", "only this owner")
	cmd.Flags().StringVar(&env, "environment", "", "only this environment")
	cmd.Flags().StringVar(&status, "status", "", "only active, suspended or revoked")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many")
	outputFlag(cmd, &out)
	return cmd
}

func newClientShowCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "show CLIENT_ID",
		Short: "Show one machine identity",
		Args:  cobra.ExactArgs(1),
		RunE: withAdmin(g, &out, func(cmd *cobra.Command, args []string, api *adminAPI) error {
			var v adminapi.ClientView
			if err := api.call(cmd.Context(), "GET", "/clients/"+url.PathEscape(args[0]), nil, &v); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, v)
			}
			return printClient(g, v)
		}),
	}
	outputFlag(cmd, &out)
	return cmd
}

func newClientStatusCmd(g *globals, action, short string) *cobra.Command {
	var reason, out string
	cmd := &cobra.Command{
		Use:   action + " CLIENT_ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: withAdmin(g, &out, func(cmd *cobra.Command, args []string, api *adminAPI) error {
			var v adminapi.ClientView
			if err := api.call(cmd.Context(), "POST", "/clients/"+url.PathEscape(args[0])+"/"+action, map[string]string{"reason": reason}, &v); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, v)
			}
			fmt.Fprintf(g.stdout, "%s is now %s\n", v.ClientID, v.Status)
			return nil
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the admin audit log")
	outputFlag(cmd, &out)
	return cmd
}
