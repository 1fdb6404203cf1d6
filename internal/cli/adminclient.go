package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/sdk"
)

// maxResponseBytes bounds what the CLI reads from the admin API.
const maxResponseBytes = 8 << 20

// adminAPI calls the admin API as the data directory's admin identity.
type adminAPI struct {
	hc   *http.Client
	base string
}

func newAdminAPI(ctx context.Context, g *globals) (*adminAPI, error) {
	d, err := app.LoadAdmin(g.dataDir)
	if err != nil {
		return nil, err
	}
	key, err := sdk.LoadPrivateKey(d.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("admin key: %w", err)
	}
	pool, err := app.CAPool(d.CAFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	base := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	cfg := &sdk.Config{
		TokenURL:   d.TokenEndpoint,
		ClientID:   d.ClientID,
		Key:        key,
		KeyID:      d.KeyID,
		Scopes:     []string{adminapi.Scope},
		DPoP:       true,
		HTTPClient: base,
	}
	hc := cfg.Client(ctx)
	hc.Timeout = 30 * time.Second
	return &adminAPI{hc: hc, base: d.Issuer + adminapi.Prefix}, nil
}

// call sends a JSON request and decodes a JSON response into out. Problems
// come back as one readable error.
func (a *adminAPI) call(ctx context.Context, method, path string, in, out any) error {
	pd, err := a.send(ctx, method, path, in, out)
	if err != nil {
		return err
	}
	if pd != nil {
		return errors.New(problemText(pd))
	}
	return nil
}

// send is call for callers that report a problem's fields themselves: a
// refusal comes back as pd, with err nil. An error answer that is not a
// problem comes back as one with only its status and a title naming it.
func (a *adminAPI) send(ctx context.Context, method, path string, in, out any) (*problem.Details, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		var se *sdk.Error
		if errors.As(err, &se) {
			return nil, fmt.Errorf("the admin identity could not get a token: %s", tokenErrorText(se))
		}
		return nil, fmt.Errorf("cannot reach keybound at %s (is `keybound serve` running?): %w", a.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var pd problem.Details
		if json.Unmarshal(b, &pd) != nil || pd.Title == "" {
			return &problem.Details{Status: resp.StatusCode, Title: "admin API answered " + resp.Status}, nil
		}
		return &pd, nil
	}
	if out == nil {
		return nil, nil
	}
	return nil, json.Unmarshal(b, out)
}

// tokenErrorText is a token endpoint's refusal on one line. A proxy's 502
// has no OAuth error body, so the HTTP status is all there is to say.
func tokenErrorText(se *sdk.Error) string {
	msg := se.Code
	if msg == "" {
		msg = strings.TrimSpace(fmt.Sprintf("HTTP %d %s", se.StatusCode, http.StatusText(se.StatusCode)))
	}
	if se.Description != "" {
		msg += ": " + se.Description
	}
	return msg
}

// problemText is a problem on one line: title, detail, then each field
// error in parentheses.
func problemText(pd *problem.Details) string {
	msg := pd.Title
	if pd.Detail != "" {
		msg += ": " + pd.Detail
	}
	var fields []string
	for _, f := range pd.Errors {
		fields = append(fields, f.Field+" "+f.Detail)
	}
	if len(fields) > 0 {
		msg += " (" + strings.Join(fields, "; ") + ")"
	}
	return msg
}

// descriptor is the data directory's server descriptor, or nil when it has
// none: commands that act as a machine client work without one, given the
// server's URL.
func (g *globals) descriptor() *app.AdminDescriptor {
	d, err := app.LoadAdmin(g.dataDir)
	if err != nil {
		return nil
	}
	return d
}

// issuerOf and tokenEndpointOf name the data directory's server, for
// localServer.
func issuerOf(d *app.AdminDescriptor) string        { return d.Issuer }
func tokenEndpointOf(d *app.AdminDescriptor) string { return d.TokenEndpoint }

// localServer picks the server URL and CA file of a command that acts as a
// machine client. An empty serverURL becomes the data directory's own
// server, own(d). The data directory's CA signs only that server's
// certificate, so it is the default CA for that server alone: made the only
// root for a server the user named (a production issuer with a publicly
// trusted certificate) it failed every handshake with "unknown authority".
// Any other server is verified against the system roots unless caFile names
// a CA. d is nil when the data directory has no descriptor.
func localServer(d *app.AdminDescriptor, serverURL, caFile string, own func(*app.AdminDescriptor) string) (string, string) {
	if d == nil {
		return serverURL, caFile
	}
	local := own(d)
	if serverURL == "" {
		serverURL = local
	}
	if caFile == "" && local != "" && sameURL(serverURL, local) {
		caFile = d.CAFile
	}
	return serverURL, caFile
}

// sameURL reports whether a and b name the same endpoint: scheme and host
// compare without case, and a trailing slash does not count.
func sameURL(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	if errA != nil || errB != nil {
		return false
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) &&
		strings.TrimSuffix(ua.Path, "/") == strings.TrimSuffix(ub.Path, "/")
}

// clientTLS is the TLS configuration of a command that acts as a machine
// client: the server's CA (none: the system roots) and, for mTLS, the
// client certificate and key.
func clientTLS(caFile, certFile, certKey string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := app.CAPool(caFile)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, certKey)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{c}
	}
	return conf, nil
}

// withAdmin is the RunE of an admin verb: it checks -o, connects as the
// admin identity of the data directory, and runs run with the connection.
func withAdmin(g *globals, out *string, run func(cmd *cobra.Command, args []string, api *adminAPI) error) func(*cobra.Command, []string) error {
	return withAdminChecked(g, out, nil, run)
}

// withAdminChecked is withAdmin with check run after -o and before
// connecting: it refuses bad flags (as usage errors) and reads the files
// they name, so a mistake is reported without touching the data directory.
// A nil check checks nothing.
func withAdminChecked(g *globals, out *string, check func() error, run func(cmd *cobra.Command, args []string, api *adminAPI) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		api, err := newAdminAPI(cmd.Context(), g)
		if err != nil {
			return err
		}
		return run(cmd, args, api)
	}
}
