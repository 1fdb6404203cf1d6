package cli

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/workload"
	"github.com/keybound/keybound/internal/workloadapi"
	"github.com/keybound/keybound/sdk"
)

func newCertCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Workload certificates: issue, enroll, renew, revoke, list; one-time join tokens",
		Long: `keybound's workload CA issues short-lived X.509 client certificates, each
naming one registered identity as spiffe://TRUST_DOMAIN/client/CLIENT_ID, so
tls_client_auth and certificate-bound tokens work with them directly. The
private key never leaves the workload: keybound signs a CSR.

Operators (admin identity): issue, revoke, list, join-token.
Workloads: enroll (join token or private_key_jwt), renew (current certificate).`,
	}
	cmd.AddCommand(newCertIssueCmd(g), newCertEnrollCmd(g), newCertRenewCmd(g), newCertRevokeCmd(g), newCertListCmd(g), newCertJoinTokenCmd(g))
	return cmd
}

func newCertIssueCmd(g *globals) *cobra.Command {
	var clientID, csrFile, outFile, out string
	var lifetime time.Duration
	var req adminapi.IssueRequest // built from the flags before connecting
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate for an identity from a CSR (as the admin identity)",
		Example: `  openssl req -new -key svc.key -subj "/" -out svc.csr
  keybound cert issue --client kb-... --csr svc.csr --out svc.pem`,
		Args: cobra.NoArgs,
		RunE: withAdminChecked(g, &out, func() error {
			if clientID == "" || csrFile == "" || outFile == "" {
				return usageError{errors.New("--client, --csr and --out are required")}
			}
			secs, err := lifetimeSeconds(lifetime)
			if err != nil {
				return err
			}
			csr, err := readBounded(csrFile, workload.MaxCSRBytes)
			if err != nil {
				return err
			}
			req = adminapi.IssueRequest{ClientID: clientID, CSR: string(csr), Lifetime: secs}
			return nil
		}, func(cmd *cobra.Command, _ []string, api *adminAPI) error {
			var v adminapi.CertView
			if err := api.call(cmd.Context(), "POST", "/certificates", req, &v); err != nil {
				return err
			}
			if err := writeFileAtomic(outFile, []byte(v.CertificateChain), 0o644); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, v)
			}
			return printCert(g, v.Serial, v.ClientID, v.SPIFFEID, v.NotAfter, outFile)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&clientID, "client", "", "client id of the identity (required)")
	f.StringVar(&csrFile, "csr", "", "PKCS#10 CSR in PEM, made where the key lives (required)")
	f.StringVar(&outFile, "out", "", "where to write the certificate chain, PEM (required)")
	f.DurationVar(&lifetime, "lifetime", 0, "certificate lifetime, e.g. 1h (default: the server's)")
	outputFlag(cmd, &out)
	return cmd
}

func newCertEnrollCmd(g *globals) *cobra.Command {
	var issuer, caFile, keyFile, kid, clientID, joinToken, joinTokenFile, csrFile, outFile, out string
	var lifetime time.Duration
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Get a certificate for this workload's key with a join token or private_key_jwt",
		Long: `enroll makes a CSR for --key and has keybound certify it, proving the
workload's right to the identity with a one-time join token or, with
--client-id, a private_key_jwt assertion signed by --key.

The join token comes from --join-token-file (a file, or - for stdin), from
the environment variable ` + joinTokenEnv + ` when neither join token flag nor
--client-id is given, or from --join-token. Prefer the first two: a command
line argument is visible to every user of the machine in the process list
and stays in the shell's history.`,
		Example: `  keybound keygen --key svc.key
  keybound cert enroll --key svc.key --join-token-file join.token --out svc.pem
  printf '%s\n' "$JOIN_TOKEN" | keybound cert enroll --key svc.key --join-token-file - --out svc.pem
  ` + joinTokenEnv + `="$JOIN_TOKEN" keybound cert enroll --key svc.key --out svc.pem
  keybound cert enroll --key svc.key --client-id kb-... --out svc.pem   # key registered for private_key_jwt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if keyFile == "" || outFile == "" {
				return usageError{errors.New("--key and --out are required")}
			}
			if kid != "" && clientID == "" {
				return usageError{errors.New("--kid goes with --client-id: it names the key that signs the assertion, and a join token needs none")}
			}
			if err := joinTokenSource(cmd, clientID, joinTokenFile, &joinToken); err != nil {
				return err
			}
			if (joinToken == "") == (clientID == "") {
				return usageError{errors.New("give exactly one of a join token (--join-token-file, " + joinTokenEnv + " or --join-token) or --client-id (private_key_jwt with --key)")}
			}
			secs, err := lifetimeSeconds(lifetime)
			if err != nil {
				return err
			}
			key, err := sdk.LoadPrivateKey(keyFile)
			if err != nil {
				return err
			}
			csr, err := csrFor(key, csrFile)
			if err != nil {
				return err
			}
			hc, issuer, err := workloadHTTP(g, issuer, caFile, nil)
			if err != nil {
				return err
			}
			req := workloadapi.EnrollRequest{CSR: string(csr), Lifetime: secs, JoinToken: joinToken}
			if clientID != "" {
				a, err := sdk.ClientAssertion(key, kid, clientID, issuer+workloadapi.PathEnroll, time.Now())
				if err != nil {
					return err
				}
				req.ClientID, req.ClientAssertionType, req.ClientAssertion = clientID, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", a
			}
			var v workloadapi.Certificate
			if err := (&adminAPI{hc: hc, base: issuer}).call(cmd.Context(), "POST", workloadapi.PathEnroll, req, &v); err != nil {
				return err
			}
			return finishWorkloadCert(g, v, outFile, out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "", "the workload's private key (PEM or JWK); certified, and signs the assertion with --client-id (required)")
	f.StringVar(&outFile, "out", "", "where to write the certificate chain, PEM (required)")
	f.StringVar(&joinTokenFile, "join-token-file", "", "read the one-time join token (from keybound cert join-token) from `FILE`; - reads stdin")
	f.StringVar(&joinToken, "join-token", "", "the one-time join token itself; visible in the process list, so prefer --join-token-file or "+joinTokenEnv)
	f.StringVar(&clientID, "client-id", "", "enroll with private_key_jwt as this client, signing with --key")
	f.StringVar(&kid, "kid", "", "key id of --key in the registered JWK Set, with --client-id (default: its thumbprint)")
	f.StringVar(&csrFile, "csr", "", "send this CSR instead of making one from --key")
	f.DurationVar(&lifetime, "lifetime", 0, "certificate lifetime, e.g. 1h (default: the server's)")
	f.StringVar(&issuer, "issuer", "", "issuer URL (default: the data directory's server)")
	f.StringVar(&caFile, "cacert", "", "CA certificate of the server (default: the data directory's CA for its own server, else the system roots)")
	outputFlag(cmd, &out)
	return cmd
}

// joinTokenEnv holds the join token when no flag names one: unlike a
// command line argument, a process's environment is readable only by its
// own user.
const joinTokenEnv = "KEYBOUND_JOIN_TOKEN"

// joinTokenSlack is room for the line ending a file or `echo` adds after the
// token.
const joinTokenSlack = 2

// joinTokenSource sets *token from the one source the user gave: the
// --join-token flag (already in *token), --join-token-file, or, when neither
// flag nor --client-id is given, the environment. Two flags are refused
// rather than one silently winning.
func joinTokenSource(cmd *cobra.Command, clientID, file string, token *string) error {
	flag, fromFile := cmd.Flags().Changed("join-token"), cmd.Flags().Changed("join-token-file")
	switch {
	case flag && fromFile:
		return usageError{errors.New("give the join token once: --join-token or --join-token-file, not both")}
	case fromFile:
		t, err := readJoinToken(cmd, file)
		if err != nil {
			return err
		}
		*token = t
	case !flag && clientID == "":
		*token = strings.TrimSpace(os.Getenv(joinTokenEnv))
	}
	return nil
}

// readJoinToken reads a join token from file ("-": stdin), bounded by the
// largest token the server accepts, so that a wrong file name (a log, a
// device) is refused instead of read whole.
func readJoinToken(cmd *cobra.Command, file string) (string, error) {
	if file == "" {
		return "", usageError{errors.New("--join-token-file needs a file name, or - for stdin")}
	}
	name, r := file, io.Reader(cmd.InOrStdin())
	if file == "-" {
		name = "stdin"
	} else {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("--join-token-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	const max = workload.MaxJoinTokenBytes + joinTokenSlack
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return "", fmt.Errorf("--join-token-file: reading %s: %w", name, err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case len(b) > max || len(tok) > workload.MaxJoinTokenBytes:
		return "", fmt.Errorf("--join-token-file: %s holds more than a join token (at most %d bytes)", name, workload.MaxJoinTokenBytes)
	case tok == "":
		return "", fmt.Errorf("--join-token-file: %s is empty", name)
	}
	return tok, nil
}

func newCertRenewCmd(g *globals) *cobra.Command {
	var issuer, caFile, certFile, keyFile, csrFile, outFile, out string
	var lifetime time.Duration
	cmd := &cobra.Command{
		Use:     "renew",
		Short:   "Renew a workload certificate before it expires, presenting the current one over mTLS",
		Example: `  keybound cert renew --cert svc.pem --key svc.key --out svc.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if certFile == "" || keyFile == "" || outFile == "" {
				return usageError{errors.New("--cert, --key and --out are required")}
			}
			secs, err := lifetimeSeconds(lifetime)
			if err != nil {
				return err
			}
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return fmt.Errorf("current certificate: %w", err)
			}
			signer, ok := pair.PrivateKey.(crypto.Signer)
			if !ok {
				return errors.New("the key of --cert cannot sign")
			}
			csr, err := csrFor(signer, csrFile)
			if err != nil {
				return err
			}
			hc, issuer, err := workloadHTTP(g, issuer, caFile, []tls.Certificate{pair})
			if err != nil {
				return err
			}
			var v workloadapi.Certificate
			if err := (&adminAPI{hc: hc, base: issuer}).call(cmd.Context(), "POST", workloadapi.PathRenew, workloadapi.RenewRequest{CSR: string(csr), Lifetime: secs}, &v); err != nil {
				return err
			}
			return finishWorkloadCert(g, v, outFile, out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&certFile, "cert", "", "the current certificate chain, PEM (required)")
	f.StringVar(&keyFile, "key", "", "its private key, PEM (required)")
	f.StringVar(&outFile, "out", "", "where to write the new chain, PEM; may be --cert (required)")
	f.StringVar(&csrFile, "csr", "", "send this CSR (e.g. for a new key) instead of one for --key")
	f.DurationVar(&lifetime, "lifetime", 0, "certificate lifetime, e.g. 1h (default: the server's)")
	f.StringVar(&issuer, "issuer", "", "issuer URL (default: the data directory's server)")
	f.StringVar(&caFile, "cacert", "", "CA certificate of the server (default: the data directory's CA for its own server, else the system roots)")
	outputFlag(cmd, &out)
	return cmd
}

func newCertRevokeCmd(g *globals) *cobra.Command {
	var reason, comment, out string
	cmd := &cobra.Command{
		Use:   "revoke SERIAL",
		Short: "Revoke a workload certificate: refused at the token service and the gateway at once, and listed in the CRL",
		Args:  cobra.ExactArgs(1),
		RunE: withAdminChecked(g, &out, func() error {
			if _, err := workload.ParseReason(reason); err != nil {
				return usageError{fmt.Errorf("--reason must be one of %s, not %q; put free text in --comment", strings.Join(workload.ReasonNames, ", "), reason)}
			}
			return nil
		}, func(cmd *cobra.Command, args []string, api *adminAPI) error {
			var v adminapi.CertView
			body := adminapi.RevokeRequest{ReasonCode: reason, Reason: comment}
			if err := api.call(cmd.Context(), "POST", "/certificates/"+url.PathEscape(args[0])+"/revoke", body, &v); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, v)
			}
			fmt.Fprintf(g.stdout, "certificate %s of %s is now %s\n", v.Serial, v.ClientID, v.Status)
			return nil
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "RFC 5280 reason carried in the CRL: "+strings.Join(workload.ReasonNames, ", "))
	cmd.Flags().StringVar(&comment, "comment", "", "free text for the inventory and the admin audit log")
	outputFlag(cmd, &out)
	return cmd
}

func newCertListCmd(g *globals) *cobra.Command {
	var clientID, out string
	var live bool
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List issued workload certificates, newest first",
		Args:  cobra.NoArgs,
		RunE: withAdmin(g, &out, func(cmd *cobra.Command, _ []string, api *adminAPI) error {
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if clientID != "" {
				q.Set("client_id", clientID)
			}
			if live {
				q.Set("live", "true")
			}
			var res struct {
				Certificates []adminapi.CertView `json:"certificates"`
			}
			if err := api.call(cmd.Context(), "GET", "/certificates?"+q.Encode(), nil, &res); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, res.Certificates)
			}
			rows := make([][]string, 0, len(res.Certificates))
			for _, c := range res.Certificates {
				rows = append(rows, []string{c.Serial, c.ClientID, c.Status, c.Via, c.NotAfter.Format(time.RFC3339)})
			}
			return printTable(g.stdout, []string{"SERIAL", "CLIENT_ID", "STATUS", "VIA", "NOT_AFTER"}, rows)
		}),
	}
	cmd.Flags().StringVar(&clientID, "client", "", "only this identity's certificates")
	cmd.Flags().BoolVar(&live, "live", false, "only certificates neither revoked nor expired")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many")
	outputFlag(cmd, &out)
	return cmd
}

func newCertJoinTokenCmd(g *globals) *cobra.Command {
	var clientID, out string
	var lifetime time.Duration
	cmd := &cobra.Command{
		Use:   "join-token",
		Short: "Create a one-time join token that lets a workload enroll as an identity",
		Example: `  keybound cert join-token --client kb-... --lifetime 15m
  # hand the token to the workload, which reads it from a file or stdin:
  keybound cert enroll --key svc.key --join-token-file join.token --out svc.pem`,
		Args: cobra.NoArgs,
		RunE: withAdminChecked(g, &out, func() error {
			if clientID == "" {
				return usageError{errors.New("--client is required")}
			}
			if lifetime < 0 || lifetime > workload.MaxJoinTokenLifetime || lifetime%time.Second != 0 {
				return usageError{fmt.Errorf("--lifetime must be whole seconds up to %s", workload.MaxJoinTokenLifetime)}
			}
			return nil
		}, func(cmd *cobra.Command, _ []string, api *adminAPI) error {
			var v adminapi.JoinTokenView
			if err := api.call(cmd.Context(), "POST", "/join-tokens", adminapi.JoinTokenRequest{ClientID: clientID, Lifetime: int64(lifetime / time.Second)}, &v); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, v)
			}
			fmt.Fprintln(g.stdout, v.JoinToken)
			fmt.Fprintf(g.stderr, "one-time join token for %s, valid until %s; it is shown only now\n", v.ClientID, v.ExpiresAt.Format(time.RFC3339))
			return nil
		}),
	}
	cmd.Flags().StringVar(&clientID, "client", "", "client id of the identity the token enrolls as (required)")
	cmd.Flags().DurationVar(&lifetime, "lifetime", 0, "how long the token may wait to be used (default: the server's, at most 24h)")
	cmd.Flags().StringVarP(&out, "output", "o", "table", "json prints id, client and expiry too; table prints the token only")
	return cmd
}

// lifetimeSeconds checks a --lifetime flag.
func lifetimeSeconds(d time.Duration) (int64, error) {
	if d < 0 || d > workload.MaxLifetimeCap || d%time.Second != 0 {
		return 0, usageError{fmt.Errorf("--lifetime must be whole seconds up to %s", workload.MaxLifetimeCap)}
	}
	return int64(d / time.Second), nil
}

// csrFor reads csrFile, or makes a CSR for key with no names: keybound
// fills in the identity.
func csrFor(key crypto.Signer, csrFile string) ([]byte, error) {
	if csrFile != "" {
		return readBounded(csrFile, workload.MaxCSRBytes)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("make a CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// workloadHTTP is a plain HTTPS client for the workload endpoints, trusting
// the server's CA (see localServer) and presenting certs, with the issuer to
// call.
func workloadHTTP(g *globals, issuer, caFile string, certs []tls.Certificate) (*http.Client, string, error) {
	issuer, caFile = localServer(g.descriptor(), issuer, caFile, issuerOf)
	if issuer == "" {
		return nil, "", usageError{errors.New("--issuer is required when the data directory has no server descriptor")}
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs}
	if caFile != "" {
		pool, err := app.CAPool(caFile)
		if err != nil {
			return nil, "", err
		}
		tlsConf.RootCAs = pool
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	return hc, strings.TrimSuffix(issuer, "/"), nil
}

func finishWorkloadCert(g *globals, v workloadapi.Certificate, outFile, out string) error {
	if err := writeFileAtomic(outFile, []byte(v.CertificateChain), 0o644); err != nil {
		return err
	}
	if out == "json" {
		return printJSON(g.stdout, v)
	}
	return printCert(g, v.Serial, v.ClientID, v.SPIFFEID, v.NotAfter, outFile)
}

func printCert(g *globals, serial, clientID, spiffeID string, notAfter time.Time, file string) error {
	return printTable(g.stdout, []string{"FIELD", "VALUE"}, [][]string{
		{"serial", serial},
		{"client_id", clientID},
		{"spiffe_id", spiffeID},
		{"not_after", notAfter.Format(time.RFC3339)},
		{"written_to", file},
	})
}

// writeFileAtomic replaces path with b, so a renewal never leaves a half
// written certificate for a running workload to read.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
