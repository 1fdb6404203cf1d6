package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/route"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.IssuerURL(); got != "https://127.0.0.1:8443" {
		t.Errorf("issuer = %q", got)
	}
}

func TestLoadYAML(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "empty file keeps defaults", yaml: "", check: func(t *testing.T, c Config) {
			if c.Server.Addr != "127.0.0.1:8443" {
				t.Errorf("addr = %q", c.Server.Addr)
			}
		}},
		{name: "overrides", yaml: "server:\n  addr: 127.0.0.1:9443\ntokens:\n  default_lifetime: 2m\n", check: func(t *testing.T, c Config) {
			if c.Server.Addr != "127.0.0.1:9443" || c.Tokens.DefaultLifetime != 2*time.Minute {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "unknown key", yaml: "server:\n  adress: x\n", wantErr: "field adress not found"},
		{name: "wrong type", yaml: "tokens:\n  default_lifetime: [1]\n", wantErr: "cannot unmarshal"},
		{name: "a second document would be ignored", yaml: "server:\n  addr: 127.0.0.1:9443\n---\ntokens: {allow_static_secrets: false}\n", wantErr: "more than one YAML document"},
		{name: "a second document with an unknown key", yaml: "server: {}\n---\nbogus: 1\n", wantErr: "more than one YAML document"},
		{name: "leading and trailing document markers", yaml: "---\nserver:\n  addr: 127.0.0.1:9443\n---\n", check: func(t *testing.T, c Config) {
			if c.Server.Addr != "127.0.0.1:9443" {
				t.Errorf("addr = %q", c.Server.Addr)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := c.LoadYAML([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestValidateNamesEveryBadKey(t *testing.T) {
	c := Default()
	c.Log.Level = "loud"
	c.Server.Addr = "nope"
	c.Gateway.Addr = "127.0.0.1:http"
	c.Server.Issuer = "http://example.com"
	c.Tokens.DefaultLifetime = 2 * time.Hour
	c.Tokens.DPoP.Algorithms = []string{"ES256", "HS256", "none"}
	err := c.Validate()
	if err == nil {
		t.Fatal("want error")
	}
	for _, key := range []string{"log.level", "server.addr", "gateway.addr", "server.issuer", "tokens.default_lifetime", "tokens.dpop.algorithms[1]", "tokens.dpop.algorithms[2]"} {
		if !strings.Contains(err.Error(), key+":") {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "k.yaml")
	if err := os.WriteFile(f, []byte("data_dir: /from/file\nserver:\n  addr: 127.0.0.1:1111\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := c.LoadFile(f); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KEYBOUND_ADDR": "127.0.0.1:2222", "KEYBOUND_ALLOW_STATIC_SECRETS": "false"}
	if err := c.LoadEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/from/file" || c.Server.Addr != "127.0.0.1:2222" || c.Tokens.AllowStaticSecrets {
		t.Errorf("got %+v", c)
	}
	err := c.LoadEnv(func(k string) (string, bool) {
		if k == "KEYBOUND_TOKEN_LIFETIME" {
			return "soon", true
		}
		return "", false
	})
	if err == nil || !strings.Contains(err.Error(), "KEYBOUND_TOKEN_LIFETIME") {
		t.Errorf("err = %v", err)
	}
}

func FuzzLoadYAML(f *testing.F) {
	f.Add([]byte("server:\n  addr: 127.0.0.1:1\n"))
	f.Add([]byte("tokens: {dpop: {algorithms: [ES256]}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Default()
		if err := c.LoadYAML(b); err != nil {
			return
		}
		_ = c.Validate()
	})
}

func TestGatewayRoutes(t *testing.T) {
	yaml := `
gateway:
  addr: 127.0.0.1:9443
  external_url: https://api.example.com
  trusted_proxies: [10.0.0.0/8]
  routes:
    - name: invoices
      path: /invoices/{id}
      methods: [GET, POST]
      upstream: http://127.0.0.1:9000
      scopes: {GET: [invoices:read], POST: [invoices:write]}
      sensitivity: confidential
      rate_limit: {per_identity: 100/s, burst: 200}
`
	c := Default()
	if err := c.LoadYAML([]byte(yaml)); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Gateway.Routes) != 1 || c.Gateway.Routes[0].Scopes.ByMethod["POST"][0] != "invoices:write" {
		t.Errorf("routes = %+v", c.Gateway.Routes)
	}

	bad := Default()
	if err := bad.LoadYAML([]byte(`
gateway:
  external_url: https://api.example.com/v1
  trusted_proxies: [10.0.0.0]
  routes:
    - name: x
      path: /x
      upstream: ftp://nope
      sensitivity: secret
`)); err != nil {
		t.Fatal(err)
	}
	err := bad.Validate()
	for _, key := range []string{"gateway.external_url", "gateway.trusted_proxies[0]", "gateway.routes[0]"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	unknown := Default()
	if err := unknown.LoadYAML([]byte("gateway:\n  routes:\n    - name: x\n      pathh: /x\n")); err == nil || !strings.Contains(err.Error(), "pathh") {
		t.Errorf("unknown route key accepted: %v", err)
	}
}

func TestGatewaySeparateIssuer(t *testing.T) {
	c := Default()
	if err := c.LoadYAML([]byte(`
gateway:
  addr: 127.0.0.1:9443
  issuer: https://auth.example.com
  jwks_url: https://auth.example.com/oauth2/jwks
  issuer_ca_file: /etc/keybound/issuer-ca.pem
`)); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Gateway.Issuer != "https://auth.example.com" || c.Gateway.JWKSURL != "https://auth.example.com/oauth2/jwks" || c.Gateway.IssuerCAFile != "/etc/keybound/issuer-ca.pem" {
		t.Errorf("gateway = %+v", c.Gateway)
	}

	tests := []struct {
		name                   string
		addr, iss, jwks, cafil string
		wantKeys               []string // each must be named; nil means valid
	}{
		{"unset", "127.0.0.1:9443", "", "", "", nil},
		{"both set", "127.0.0.1:9443", "https://auth.example.com", "https://auth.example.com/oauth2/jwks", "", nil},
		{"jwks_url with a query", "127.0.0.1:9443", "https://auth.example.com", "https://auth.example.com/jwks?tenant=a", "", nil},
		{"issuer alone", "127.0.0.1:9443", "https://auth.example.com", "", "", []string{"gateway.jwks_url"}},
		{"jwks_url alone", "127.0.0.1:9443", "", "https://auth.example.com/oauth2/jwks", "", []string{"gateway.issuer"}},
		{"plain http jwks_url", "127.0.0.1:9443", "https://auth.example.com", "http://auth.example.com/oauth2/jwks", "", []string{"gateway.jwks_url"}},
		{"jwks_url with user info", "127.0.0.1:9443", "https://auth.example.com", "https://u:p@auth.example.com/jwks", "", []string{"gateway.jwks_url"}},
		{"jwks_url with fragment", "127.0.0.1:9443", "https://auth.example.com", "https://auth.example.com/jwks#x", "", []string{"gateway.jwks_url"}},
		{"jwks_url without host", "127.0.0.1:9443", "https://auth.example.com", "https:///jwks", "", []string{"gateway.jwks_url"}},
		{"http issuer", "127.0.0.1:9443", "http://auth.example.com", "https://auth.example.com/jwks", "", []string{"gateway.issuer"}},
		{"issuer with query", "127.0.0.1:9443", "https://auth.example.com?a=b", "https://auth.example.com/jwks", "", []string{"gateway.issuer"}},
		{"issuer not a URL", "127.0.0.1:9443", "auth.example.com", "https://auth.example.com/jwks", "", []string{"gateway.issuer"}},
		{"no gateway", "", "https://auth.example.com", "https://auth.example.com/jwks", "", []string{"gateway.jwks_url"}},
		{"ca file without jwks_url", "127.0.0.1:9443", "", "", "/ca.pem", []string{"gateway.issuer_ca_file"}},
		{"ca file with jwks_url", "127.0.0.1:9443", "https://auth.example.com", "https://auth.example.com/jwks", "/ca.pem", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Gateway.Addr, c.Gateway.Issuer, c.Gateway.JWKSURL, c.Gateway.IssuerCAFile = tt.addr, tt.iss, tt.jwks, tt.cafil
			err := c.Validate()
			if tt.wantKeys == nil {
				if err != nil {
					t.Fatalf("valid settings refused: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			if len(ve.Problems) != len(tt.wantKeys) {
				t.Errorf("%d problems, want %d: %v", len(ve.Problems), len(tt.wantKeys), err)
			}
			for _, key := range tt.wantKeys {
				if !strings.Contains(err.Error(), key+":") {
					t.Errorf("error does not name %s: %v", key, err)
				}
			}
		})
	}
}

// TestGatewaySettingsNeedAddr: gateway settings without gateway.addr would
// be ignored (no gateway runs), so Validate names gateway.addr; a
// trusted-proxy range of everyone is refused.
func TestGatewaySettingsNeedAddr(t *testing.T) {
	tests := []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"routes", func(c *Config) {
			c.Gateway.Routes = []route.Spec{{Name: "r", Path: "/r", Upstream: "http://127.0.0.1:9000", Sensitivity: "internal"}}
		}, "gateway.addr: must be set: gateway.routes"},
		{"trusted proxies", func(c *Config) { c.Gateway.TrustedProxies = []string{"10.0.0.0/8"} }, "gateway.addr: must be set: gateway.trusted_proxies"},
		{"client certificates", func(c *Config) { c.Gateway.RequireClientCert = true }, "gateway.addr: must be set: gateway.require_client_cert"},
		{"external URL", func(c *Config) { c.Gateway.ExternalURL = "https://api.example.com" }, "gateway.addr: must be set: gateway.external_url"},
		{"everyone a trusted proxy", func(c *Config) {
			c.Gateway.Addr, c.Gateway.TrustedProxies = "127.0.0.1:9443", []string{"0.0.0.0/0"}
		}, "gateway.trusted_proxies[0]: \"0.0.0.0/0\" would trust every client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.set(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
