package cli

import (
	"testing"

	"github.com/keybound/keybound/internal/app"
)

// TestLocalServer: the data directory's CA is the default only for the data
// directory's own server; a server the user names gets the system roots
// (an empty CA file) unless --cacert names one.
func TestLocalServer(t *testing.T) {
	t.Parallel()
	d := &app.AdminDescriptor{Issuer: "https://127.0.0.1:8443", TokenEndpoint: "https://127.0.0.1:8443/oauth2/token", CAFile: "/data/tls/ca.pem"}
	cases := []struct {
		name            string
		d               *app.AdminDescriptor
		own             func(*app.AdminDescriptor) string
		url, ca         string
		wantURL, wantCA string
	}{
		{"no flags: the local server and its CA", d, issuerOf, "", "", d.Issuer, d.CAFile},
		{"the local issuer named", d, issuerOf, "https://127.0.0.1:8443/", "", "https://127.0.0.1:8443/", d.CAFile},
		{"the local issuer, other case", d, issuerOf, "HTTPS://127.0.0.1:8443", "", "HTTPS://127.0.0.1:8443", d.CAFile},
		{"another issuer: system roots", d, issuerOf, "https://auth.prod.example.com", "", "https://auth.prod.example.com", ""},
		{"another port: system roots", d, issuerOf, "https://127.0.0.1:9443", "", "https://127.0.0.1:9443", ""},
		{"another issuer with --cacert", d, issuerOf, "https://auth.prod.example.com", "/etc/prod-ca.pem", "https://auth.prod.example.com", "/etc/prod-ca.pem"},
		{"local issuer with --cacert", d, issuerOf, "", "/etc/other.pem", d.Issuer, "/etc/other.pem"},
		{"local token endpoint", d, tokenEndpointOf, "", "", d.TokenEndpoint, d.CAFile},
		{"local token endpoint named", d, tokenEndpointOf, d.TokenEndpoint, "", d.TokenEndpoint, d.CAFile},
		{"the local issuer is not its token endpoint", d, tokenEndpointOf, d.Issuer + "/other", "", d.Issuer + "/other", ""},
		{"another token endpoint", d, tokenEndpointOf, "https://auth.prod.example.com/oauth2/token", "", "https://auth.prod.example.com/oauth2/token", ""},
		{"no data directory", nil, issuerOf, "https://auth.prod.example.com", "", "https://auth.prod.example.com", ""},
		{"no data directory, no flags", nil, issuerOf, "", "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gotURL, gotCA := localServer(tc.d, tc.url, tc.ca, tc.own)
			if gotURL != tc.wantURL || gotCA != tc.wantCA {
				t.Errorf("localServer(%q, %q) = %q, %q; want %q, %q", tc.url, tc.ca, gotURL, gotCA, tc.wantURL, tc.wantCA)
			}
		})
	}
}
