// Command mtls-client calls an API through the keybound gateway as a
// registered machine identity that holds a workload certificate: it
// authenticates to the token service with that certificate (tls_client_auth,
// RFC 8705), gets a certificate-bound access token, and presents the same
// certificate to the gateway, which checks the token's cnf["x5t#S256"]
// against it. See examples/README.md.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/keybound/keybound/sdk"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mtls-client:", err)
		os.Exit(1)
	}
}

// run parses args, calls the API once and copies the response body to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("mtls-client", flag.ContinueOnError)
	tokenURL := fs.String("token-url", os.Getenv("KEYBOUND_TOKEN_URL"), "token endpoint, e.g. https://auth.example.com/oauth2/token (env KEYBOUND_TOKEN_URL)")
	clientID := fs.String("client-id", os.Getenv("KEYBOUND_CLIENT_ID"), "registered client id (env KEYBOUND_CLIENT_ID)")
	certFile := fs.String("cert", os.Getenv("KEYBOUND_CERT"), "workload certificate chain, PEM (env KEYBOUND_CERT)")
	joinToken := fs.String("join-token", os.Getenv("KEYBOUND_JOIN_TOKEN"), "instead of -cert/-key: enroll with this one-time join token and renew in the background (env KEYBOUND_JOIN_TOKEN)")
	keyFile := fs.String("key", os.Getenv("KEYBOUND_CERT_KEY"), "private key of -cert, PEM (env KEYBOUND_CERT_KEY)")
	caFile := fs.String("cacert", os.Getenv("KEYBOUND_CACERT"), "CA certificate to trust, PEM (env KEYBOUND_CACERT; default: system roots)")
	scope := fs.String("scope", "", "space-separated scopes to request")
	apiURL := fs.String("url", "", "API URL to GET through the gateway")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tokenURL == "" || *clientID == "" || *apiURL == "" || (*joinToken == "" && (*certFile == "" || *keyFile == "")) {
		return errors.New("-token-url, -client-id, -url and either -join-token or -cert and -key are required")
	}

	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		tlsConf.RootCAs = x509.NewCertPool()
		if !tlsConf.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s holds no PEM certificate", *caFile)
		}
	}

	if *joinToken == "" {
		// The certificate is read once; after `keybound cert renew` a
		// long-running service would restart, or use -join-token below.
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("workload certificate: %w", err)
		}
		tlsConf.Certificates = []tls.Certificate{pair}
	}

	cfg := &sdk.Config{
		TokenURL: *tokenURL,
		ClientID: *clientID,
		// No Key: the sdk authenticates with the TLS client certificate of
		// HTTPClient, and the token is bound to that certificate.
		Scopes:     strings.Fields(*scope),
		HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}},
	}
	var client *http.Client
	if *joinToken == "" {
		// The client's transport is HTTPClient's, so the gateway sees the
		// same certificate the token is bound to.
		client = cfg.Client(ctx)
	} else {
		// Enroll a key made in memory and renew it in the background; the
		// client swaps certificate, connections and token together.
		// keybound's token endpoint is ISSUER/oauth2/token.
		src, err := sdk.NewCertificateSource(ctx, &sdk.CertificateConfig{
			Issuer: strings.TrimSuffix(*tokenURL, "/oauth2/token"), ClientID: *clientID, JoinToken: *joinToken, HTTPClient: cfg.HTTPClient})
		if err != nil {
			return err
		}
		defer src.Close()
		if client, err = src.Client(ctx, cfg); err != nil {
			return err
		}
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *apiURL, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %s: %s", *apiURL, resp.Status, strings.TrimSpace(string(b)))
	}
	_, err = io.Copy(out, resp.Body)
	return err
}
