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
			return nil, fmt.Errorf("the admin identity could not get a token: %s: %s", se.Code, se.Description)
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
