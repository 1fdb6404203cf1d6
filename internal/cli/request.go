package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/sdk"
)

// Bounds of `keybound request`.
const (
	// maxRequestBodyBytes bounds -d @FILE: the body is held in memory so that
	// a DPoP nonce retry can send it again.
	maxRequestBodyBytes = 16 << 20
	// maxResponseBodyBytes bounds what -o json and an error status read; -o
	// raw streams a successful body without limit.
	maxResponseBodyBytes = 16 << 20
	// maxProblemDetail bounds the part of an error body quoted on stderr.
	maxProblemDetail = 300
)

// credentialHeaders are set by the command from the token and proof; a -H
// naming one would replace or confuse them.
var credentialHeaders = []string{"Authorization", "DPoP"}

func newRequestCmd(g *globals) *cobra.Command {
	var (
		clientID, keyFile, kid, dpopKey, certFile, certKey, tokenURL, caFile, data, out string
		scopes, resources, headers                                                      []string
		timeout                                                                         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "request METHOD URL",
		Short: "Call an API as a registered identity with a bound token and a fresh proof, like curl",
		Long: `request gets an access token as a registered identity and calls URL with it,
the way a workload using the Go SDK would: with --key (private_key_jwt) the
token is DPoP-bound to --dpop-key, or to a key generated for this command, and
every request carries a fresh DPoP proof; with --cert and --cert-key (mTLS,
tls_client_auth) the token is bound to the certificate, which is presented to
the API too. A use_dpop_nonce challenge is answered once with the server's
nonce. The token and keys are never printed.

-d sends a body (-d @FILE reads it from FILE); its Content-Type is
application/json when the body is JSON and application/octet-stream otherwise,
unless -H sets one. -o raw prints the response body; -o json prints the status,
headers and body as one JSON object. A response status of 400 or more exits 1
after printing the response, with the problem's detail on stderr.`,
		Example: `  keybound request GET https://api.example.com/invoices/42 --client-id "$ID" --key svc.key --scope invoices:read
  keybound request POST https://api.example.com/invoices/42 --client-id "$WID" --cert worker.pem --cert-key worker.key \
    -H 'X-Request-Id: 1' -d @invoice.json -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out != "json" && out != "raw" {
				return usageError{fmt.Errorf("--output must be json or raw, not %q", out)}
			}
			method := strings.ToUpper(args[0])
			if method == "" || strings.ContainsFunc(method, func(r rune) bool { return r < 'A' || r > 'Z' }) {
				return usageError{fmt.Errorf("METHOD must be an HTTP method such as GET or POST, not %q", args[0])}
			}
			target, err := url.Parse(args[1])
			if err != nil || (target.Scheme != "https" && target.Scheme != "http") || target.Host == "" {
				return usageError{fmt.Errorf("URL must be an absolute http(s) URL, not %q", args[1])}
			}
			if clientID == "" {
				return usageError{errors.New("--client-id is required")}
			}
			if keyFile == "" && certFile == "" {
				return usageError{errors.New("give --key (private_key_jwt) or --cert and --cert-key (mTLS)")}
			}
			if (certFile == "") != (certKey == "") {
				return usageError{errors.New("--cert and --cert-key go together")}
			}
			if kid != "" && keyFile == "" {
				return usageError{errors.New("--kid names the key of --key in the registered JWK Set; it needs --key")}
			}
			hdr, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			body, err := requestBody(data)
			if err != nil {
				return err
			}
			tokenURL, caFile = localServer(g.descriptor(), tokenURL, caFile, tokenEndpointOf)
			if tokenURL == "" {
				return usageError{errors.New("--token-url is required when the data directory has no server descriptor")}
			}

			tlsConf, err := clientTLS(caFile, certFile, certKey)
			if err != nil {
				return err
			}
			cfg := &sdk.Config{
				TokenURL:  tokenURL,
				ClientID:  clientID,
				KeyID:     kid,
				Scopes:    scopes,
				Resources: resources,
				// private_key_jwt callers prove possession with DPoP; an mTLS
				// caller's token is bound to its certificate, unless it asks
				// for DPoP as well with --dpop-key.
				DPoP:       certFile == "" || dpopKey != "",
				HTTPClient: &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}},
			}
			if keyFile != "" {
				if cfg.Key, err = sdk.LoadPrivateKey(keyFile); err != nil {
					return err
				}
			}
			if dpopKey != "" {
				if cfg.DPoPKey, err = sdk.LoadPrivateKey(dpopKey); err != nil {
					return err
				}
			}

			var rd io.Reader
			if body != nil {
				rd = bytes.NewReader(body) // sets GetBody, so a nonce retry can resend it
			}
			req, err := http.NewRequestWithContext(cmd.Context(), method, target.String(), rd)
			if err != nil {
				return usageError{err}
			}
			req.Header = hdr
			if body != nil && req.Header.Get("Content-Type") == "" {
				if json.Valid(body) {
					req.Header.Set("Content-Type", "application/json")
				} else {
					req.Header.Set("Content-Type", "application/octet-stream")
				}
			}
			resp, err := cfg.Client(cmd.Context()).Do(req)
			if err != nil {
				// sdk errors start "keybound: "; Main says the name once.
				return fmt.Errorf("%s %s: %s", method, redactURL(target), strings.TrimPrefix(unwrapURLError(err).Error(), "keybound: "))
			}
			defer resp.Body.Close()
			return printResponse(g.stdout, resp, out, method, redactURL(target))
		},
	}
	f := cmd.Flags()
	f.StringVar(&clientID, "client-id", "", "registered client id")
	f.StringVar(&keyFile, "key", "", "client private key for private_key_jwt (PEM or JWK)")
	f.StringVar(&kid, "kid", "", "key id of --key in the registered JWK Set")
	f.StringVar(&dpopKey, "dpop-key", "", "DPoP private key (PEM or JWK); default with --key: a key generated for this command")
	f.StringVar(&certFile, "cert", "", "client certificate for mTLS (PEM); the token is bound to it")
	f.StringVar(&certKey, "cert-key", "", "private key of --cert (PEM)")
	f.StringVar(&tokenURL, "token-url", "", "token endpoint (default: the data directory's server)")
	f.StringVar(&caFile, "cacert", "", "CA certificate to trust for the token endpoint and the API (default: the data directory's CA with its own token endpoint, else the system roots)")
	f.StringSliceVar(&scopes, "scope", nil, "scope to request; repeat for more")
	f.StringSliceVar(&resources, "resource", nil, "resource (audience) to request, RFC 8707; repeat for more")
	f.StringArrayVarP(&headers, "header", "H", nil, "request header 'Name: value'; repeat for more")
	f.StringVarP(&data, "data", "d", "", "request body, or @FILE to read it from FILE")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "time limit for the token request and for the call")
	f.StringVarP(&out, "output", "o", "raw", "raw prints the response body; json prints status, headers and body")
	return cmd
}

// parseHeaders turns -H values into a header, refusing the credential
// headers the command sets itself.
func parseHeaders(values []string) (http.Header, error) {
	h := http.Header{}
	for _, v := range values {
		name, value, ok := strings.Cut(v, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
			return nil, usageError{fmt.Errorf("-H must be 'Name: value', not %q", v)}
		}
		for _, c := range credentialHeaders {
			if strings.EqualFold(name, c) {
				return nil, usageError{fmt.Errorf("-H %s is not allowed: request sets it from the bound token and proof", c)}
			}
		}
		h.Add(name, strings.TrimSpace(value))
	}
	return h, nil
}

// requestBody is -d: nil when not given, the file's content for @FILE.
func requestBody(data string) ([]byte, error) {
	if data == "" {
		return nil, nil
	}
	name, ok := strings.CutPrefix(data, "@")
	if !ok {
		return []byte(data), nil
	}
	if name == "" {
		return nil, usageError{errors.New("-d @FILE needs a file name")}
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("-d: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRequestBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("-d: %w", err)
	}
	if len(b) > maxRequestBodyBytes {
		return nil, fmt.Errorf("-d: %s is larger than %d bytes", name, maxRequestBodyBytes)
	}
	return b, nil
}

// printResponse writes resp in the chosen format and turns a status of 400
// or more into an error that quotes the problem's detail.
func printResponse(w io.Writer, resp *http.Response, format, method, target string) error {
	failed := resp.StatusCode >= 400
	if format == "raw" && !failed {
		if _, err := io.Copy(w, resp.Body); err != nil {
			return fmt.Errorf("%s %s: reading the response: %w", method, target, err)
		}
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBodyBytes+1))
	if err != nil {
		return fmt.Errorf("%s %s: reading the response: %w", method, target, err)
	}
	if len(body) > maxResponseBodyBytes {
		return fmt.Errorf("%s %s: response body is larger than %d bytes; use -o raw", method, target, maxResponseBodyBytes)
	}
	if format == "raw" {
		_, _ = w.Write(body)
		if len(body) > 0 && body[len(body)-1] != '\n' {
			_, _ = io.WriteString(w, "\n")
		}
	} else {
		res := map[string]any{"status": resp.StatusCode, "headers": resp.Header}
		switch {
		case len(body) > 0 && json.Valid(body):
			res["body"] = json.RawMessage(body)
		case utf8.Valid(body):
			res["body"] = string(body)
		default:
			res["body_base64"] = body
		}
		if err := printJSON(w, res); err != nil {
			return err
		}
	}
	if failed {
		return fmt.Errorf("%s %s: %s%s", method, target, resp.Status, problemSummary(body))
	}
	return nil
}

// problemSummary is ": title: detail" of an RFC 9457 problem body, or a
// short quote of any other body.
func problemSummary(body []byte) string {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	var s string
	if json.Unmarshal(body, &p) == nil && (p.Title != "" || p.Detail != "") {
		s = strings.Trim(p.Title+": "+p.Detail, ": ")
	} else if utf8.Valid(body) {
		s = strings.TrimSpace(string(body))
	}
	if s == "" {
		return ""
	}
	if len(s) > maxProblemDetail {
		s = strings.ToValidUTF8(s[:maxProblemDetail], "") + "…"
	}
	return ": " + s
}

// redactURL drops user info and the query, which may carry secrets, from
// error messages.
func redactURL(u *url.URL) string {
	v := *u
	v.User = nil
	v.RawQuery = ""
	v.ForceQuery = false
	v.Fragment = ""
	return v.String()
}

// unwrapURLError drops *url.Error's own "Method URL:" prefix, which repeats
// the full URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
