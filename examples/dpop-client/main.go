// Command dpop-client calls an API through the keybound gateway as a
// registered machine identity: it authenticates to the token service with
// private_key_jwt (RFC 7523), gets a DPoP-bound access token (RFC 9449), and
// sends every request with a fresh DPoP proof. The sdk does all of that; this
// program only configures it. See examples/README.md.
package main

import (
	"context"
	"crypto"
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
		fmt.Fprintln(os.Stderr, "dpop-client:", err)
		os.Exit(1)
	}
}

// run parses args, calls the API once and copies the response body to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dpop-client", flag.ContinueOnError)
	tokenURL := fs.String("token-url", os.Getenv("KEYBOUND_TOKEN_URL"), "token endpoint, e.g. https://auth.example.com/oauth2/token (env KEYBOUND_TOKEN_URL)")
	clientID := fs.String("client-id", os.Getenv("KEYBOUND_CLIENT_ID"), "registered client id (env KEYBOUND_CLIENT_ID)")
	keyFile := fs.String("key", os.Getenv("KEYBOUND_KEY"), "private_key_jwt key, PEM or JWK (env KEYBOUND_KEY)")
	dpopKeyFile := fs.String("dpop-key", "", "DPoP key, PEM or JWK (default: a fresh in-memory key)")
	caFile := fs.String("cacert", os.Getenv("KEYBOUND_CACERT"), "CA certificate to trust, PEM (env KEYBOUND_CACERT; default: system roots)")
	scope := fs.String("scope", "", "space-separated scopes to request")
	apiURL := fs.String("url", "", "API URL to GET through the gateway")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tokenURL == "" || *clientID == "" || *keyFile == "" || *apiURL == "" {
		return errors.New("-token-url, -client-id, -key and -url are required")
	}

	key, err := sdk.LoadPrivateKey(*keyFile)
	if err != nil {
		return err
	}
	var dpopKey crypto.Signer
	if *dpopKeyFile != "" {
		if dpopKey, err = sdk.LoadPrivateKey(*dpopKeyFile); err != nil {
			return err
		}
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

	cfg := &sdk.Config{
		TokenURL:   *tokenURL,
		ClientID:   *clientID,
		Key:        key, // signs the client assertion at the token endpoint
		Scopes:     strings.Fields(*scope),
		DPoP:       true,    // ask for a DPoP-bound token; a Bearer answer is refused
		DPoPKey:    dpopKey, // nil: the sdk makes a key that lives as long as the process
		HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}},
	}
	// One client per process: it caches the token and refreshes it before it
	// expires, and adds a fresh proof (with ath and the server's nonce) to
	// every request.
	client := cfg.Client(ctx)

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
