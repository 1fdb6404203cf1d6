// Package config turns a YAML file, environment variables and flags into one
// typed, validated Config. Precedence is defaults < file < environment <
// flags. Decoding is strict: an unknown key is an error that names it.
//
// It only describes settings; it starts nothing and opens no files other
// than the one it is asked to read.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keybound/keybound/internal/route"
	"github.com/keybound/keybound/internal/workload"
)

// Config is every setting keybound reads. Zero values are replaced by
// Default's values before validation.
type Config struct {
	// DataDir holds the SQLite file, the TLS material, the signing keys and
	// the admin identity. Created 0700 on first start.
	DataDir string  `yaml:"data_dir"`
	Log     Log     `yaml:"log"`
	Server  Server  `yaml:"server"`
	Tokens  Tokens  `yaml:"tokens"`
	Keys    Keys    `yaml:"keys"`
	Clients Clients `yaml:"clients"`
	Gateway Gateway `yaml:"gateway"`
	// WorkloadCA issues short-lived X.509 client certificates to workloads.
	WorkloadCA WorkloadCA `yaml:"workload_ca"`
	// Governance: rotation overlap, access reviews and expiry warnings.
	Governance Governance `yaml:"governance"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Server is the HTTPS listener of the token service and admin API.
type Server struct {
	Addr string `yaml:"addr"`
	// Issuer is the issuer identifier (RFC 8414); default https://ADDR.
	Issuer string `yaml:"issuer"`
	// TLS: empty files mean a development CA and server certificate are
	// generated in DATA_DIR/tls on first start.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile holds the CAs trusted for tls_client_auth, added to the
	// generated development CA.
	ClientCAFile string `yaml:"client_ca_file"`
	// MaxBodyBytes bounds every request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxHeaderBytes bounds request headers.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ShutdownTimeout bounds how long in-flight requests may take to finish.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Metrics serves Prometheus metrics at /metrics on this listener.
	Metrics bool `yaml:"metrics"`
}

// Tokens configures access token issuance.
type Tokens struct {
	DefaultLifetime time.Duration `yaml:"default_lifetime"`
	MaxLifetime     time.Duration `yaml:"max_lifetime"`
	// AllowStaticSecrets permits client_secret_basic/post for clients
	// registered with a legacy secret. false forbids them server-wide.
	AllowStaticSecrets bool `yaml:"allow_static_secrets"`
	// AssertionMaxLifetime bounds exp of private_key_jwt assertions.
	AssertionMaxLifetime time.Duration `yaml:"assertion_max_lifetime"`
	DPoP                 DPoP          `yaml:"dpop"`
}

// DPoP configures proof checks (RFC 9449).
type DPoP struct {
	Algorithms []string `yaml:"algorithms"`
	// Window is how old a proof's iat may be.
	Window time.Duration `yaml:"window"`
	// RequireNonce makes the token endpoint, the admin API and the gateway
	// demand a server nonce in every DPoP proof (RFC 9449 section 8).
	RequireNonce bool `yaml:"require_nonce"`
}

// Keys configures the signing key ring.
type Keys struct {
	RotateEvery time.Duration `yaml:"rotate_every"`
	PublishLead time.Duration `yaml:"publish_lead"`
}

// Clients configures registration rules.
type Clients struct {
	// MaxLifetime caps how far ahead a client's expiry may be set.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
}

// Gateway is the enforcing reverse proxy. It runs when Addr is set.
type Gateway struct {
	Addr string `yaml:"addr"`
	// ExternalURL is what clients call (scheme://host[:port]); DPoP htu is
	// checked against it. Empty means the URL the listener sees.
	ExternalURL string `yaml:"external_url"`
	// RequireClientCert refuses TLS connections without a client
	// certificate (mTLS for every caller of this listener).
	RequireClientCert bool `yaml:"require_client_cert"`
	// TrustedProxies (CIDRs) may forward the client certificate in
	// ForwardedCertHeader; the header is stripped from everyone else.
	TrustedProxies      []string `yaml:"trusted_proxies"`
	ForwardedCertHeader string   `yaml:"forwarded_cert_header"`
	// UpstreamTimeout bounds waiting for an upstream's response headers.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	Audit           Audit         `yaml:"audit"`
	Routes          []route.Spec  `yaml:"routes"`

	// Issuer and JWKSURL, set together, make the gateway verify tokens of a
	// token service in another process: Issuer is the exact iss they carry
	// and JWKSURL (https) the JWK Set they are verified with, fetched and
	// cached. Unset, tokens are verified with this process's key ring.
	Issuer  string `yaml:"issuer"`
	JWKSURL string `yaml:"jwks_url"`
	// IssuerCAFile is a PEM bundle of the CAs trusted for JWKSURL's TLS
	// certificate, instead of the system roots.
	IssuerCAFile string `yaml:"issuer_ca_file"`
}

// Audit configures the gateway's audit trail.
type Audit struct {
	// File receives one JSON line per decision ("-" is stdout, "" none), for
	// SIEM shipping. Events always go to the store as well.
	File string `yaml:"file"`
	// QueueSize bounds events waiting to be written.
	QueueSize int `yaml:"queue_size"`
	// FailClosed refuses traffic rather than lose audit events.
	FailClosed bool `yaml:"fail_closed"`
}

// WorkloadCA configures the CA that issues workload client certificates,
// each naming its identity spiffe://TRUST_DOMAIN/client/CLIENT_ID.
type WorkloadCA struct {
	// TrustDomain is the SPIFFE trust domain of every issued certificate.
	TrustDomain string `yaml:"trust_domain"`
	// CertLifetime is the lifetime of a certificate when the request names
	// none; MaxCertLifetime caps what a request may ask for.
	CertLifetime    time.Duration `yaml:"cert_lifetime"`
	MaxCertLifetime time.Duration `yaml:"max_cert_lifetime"`
	// JoinTokenLifetime is how long a join token is valid when its creator
	// names no lifetime.
	JoinTokenLifetime time.Duration `yaml:"join_token_lifetime"`
	// CertFile and KeyFile name an operator-supplied issuing CA (the CA
	// certificate first, then its chain up to the root) and its key. Empty:
	// keybound's own root and intermediate in DATA_DIR/tls.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Default returns the settings used when nothing else is given.
func Default() Config {
	return Config{
		DataDir: "./keybound-data",
		Log:     Log{Level: "info", Format: "text"},
		Server: Server{
			Addr:            "127.0.0.1:8443",
			MaxBodyBytes:    64 << 10,
			MaxHeaderBytes:  16 << 10,
			ShutdownTimeout: 15 * time.Second,
			Metrics:         true,
		},
		Tokens: Tokens{
			DefaultLifetime:      5 * time.Minute,
			MaxLifetime:          time.Hour,
			AllowStaticSecrets:   true,
			AssertionMaxLifetime: 5 * time.Minute,
			DPoP: DPoP{
				Algorithms: []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"},
				Window:     60 * time.Second,
			},
		},
		Keys:    Keys{RotateEvery: 30 * 24 * time.Hour, PublishLead: time.Hour},
		Clients: Clients{MaxLifetime: 90 * 24 * time.Hour},
		Gateway: Gateway{
			ForwardedCertHeader: "X-Forwarded-Client-Cert",
			UpstreamTimeout:     30 * time.Second,
			Audit:               Audit{QueueSize: 65536},
		},
		WorkloadCA: WorkloadCA{
			TrustDomain:       "keybound.local",
			CertLifetime:      workload.DefaultLifetime,
			MaxCertLifetime:   workload.DefaultLifetime,
			JoinTokenLifetime: workload.DefaultJoinTokenLifetime,
		},
		Governance: defaultGovernance(),
	}
}

// MaxFileBytes bounds a configuration file; larger is surely a mistake.
const MaxFileBytes = 1 << 20

// LoadFile decodes YAML from path over c. Unknown keys are errors.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if len(b) > MaxFileBytes {
		return fmt.Errorf("config: %s is larger than %d bytes", path, MaxFileBytes)
	}
	return c.LoadYAML(b)
}

// LoadYAML decodes YAML over c. Unknown keys are errors.
func (c *Config) LoadYAML(b []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty document decodes to io.EOF: it leaves c unchanged.
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("config: %v", err)
	}
	// The decoder reads one document; settings after a "---" would be
	// ignored without a word (unknown keys included).
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil || len(doc.Content) > 0 && doc.Content[0].Tag != "!!null" {
			return errors.New("config: the file holds more than one YAML document (a \"---\" line); put every setting in one document")
		}
	}
}

// envVars maps each environment variable to the setting it overrides.
var envVars = map[string]func(c *Config, v string) error{
	"KEYBOUND_DATA_DIR":             func(c *Config, v string) error { c.DataDir = v; return nil },
	"KEYBOUND_ADDR":                 func(c *Config, v string) error { c.Server.Addr = v; return nil },
	"KEYBOUND_ISSUER":               func(c *Config, v string) error { c.Server.Issuer = v; return nil },
	"KEYBOUND_GATEWAY_ADDR":         func(c *Config, v string) error { c.Gateway.Addr = v; return nil },
	"KEYBOUND_LOG_LEVEL":            func(c *Config, v string) error { c.Log.Level = v; return nil },
	"KEYBOUND_LOG_FORMAT":           func(c *Config, v string) error { c.Log.Format = v; return nil },
	"KEYBOUND_ALLOW_STATIC_SECRETS": func(c *Config, v string) error { return parseBool(&c.Tokens.AllowStaticSecrets, v) },
	"KEYBOUND_TOKEN_LIFETIME":       func(c *Config, v string) error { return parseDur(&c.Tokens.DefaultLifetime, v) },
}

// EnvNames lists the environment variables LoadEnv reads, for docs and help.
func EnvNames() []string {
	var names []string
	for k := range envVars {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// LoadEnv applies the KEYBOUND_* variables that lookup finds.
func (c *Config) LoadEnv(lookup func(string) (string, bool)) error {
	var errs []error
	for _, name := range EnvNames() {
		if v, ok := lookup(name); ok && v != "" {
			if err := envVars[name](c, v); err != nil {
				errs = append(errs, fmt.Errorf("config: %s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func parseBool(dst *bool, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("want true or false, got %q", v)
	}
	*dst = b
	return nil
}

func parseDur(dst *time.Duration, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want a duration such as 5m, got %q", v)
	}
	*dst = d
	return nil
}

// IssuerURL returns the configured issuer or https://ADDR.
func (c *Config) IssuerURL() string {
	if c.Server.Issuer != "" {
		return strings.TrimSuffix(c.Server.Issuer, "/")
	}
	host, port, err := net.SplitHostPort(c.Server.Addr)
	if err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		host = "localhost"
	}
	if err != nil {
		return "https://" + c.Server.Addr
	}
	return "https://" + net.JoinHostPort(host, port)
}

// Validate returns every problem, each naming its key path.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "must be text or json, not %q", c.Log.Format)
	}
	checkAddr := func(key, addr string) {
		_, port, err := net.SplitHostPort(addr)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
			bad(key, "must be HOST:PORT with a numeric port, not %q", addr)
		}
	}
	checkAddr("server.addr", c.Server.Addr)
	if c.Gateway.Addr != "" {
		checkAddr("gateway.addr", c.Gateway.Addr)
	}
	if u := c.Gateway.ExternalURL; u != "" {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" || (pu.Path != "" && pu.Path != "/") || pu.RawQuery != "" {
			bad("gateway.external_url", "must be scheme://host[:port] with no path or query, not %q", u)
		}
	}
	for i, p := range c.Gateway.TrustedProxies {
		if pp, err := netip.ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("gateway.trusted_proxies[%d]", i), "must be a CIDR such as 10.0.0.0/8, not %q", p)
		} else if pp.Bits() == 0 {
			bad(fmt.Sprintf("gateway.trusted_proxies[%d]", i), "%q would trust every client to forward a client certificate; list only the fronting proxies' addresses", p)
		}
	}
	if c.Gateway.Addr == "" {
		// Without gateway.addr no gateway runs: settings for it would be
		// silently ignored, and a deployment that forgot the address
		// would start with no enforcement and no word about it.
		for _, set := range []struct {
			key string
			on  bool
		}{
			{"gateway.routes", len(c.Gateway.Routes) > 0},
			{"gateway.trusted_proxies", len(c.Gateway.TrustedProxies) > 0},
			{"gateway.require_client_cert", c.Gateway.RequireClientCert},
			{"gateway.external_url", c.Gateway.ExternalURL != ""},
		} {
			if set.on {
				bad("gateway.addr", "must be set: %s has no effect without it (the gateway is not running)", set.key)
				break
			}
		}
	}
	if c.Gateway.UpstreamTimeout <= 0 {
		bad("gateway.upstream_timeout", "must be positive")
	}
	c.validateGatewayIssuer(bad)
	if c.Gateway.Audit.QueueSize < 16 || c.Gateway.Audit.QueueSize > 1<<22 {
		bad("gateway.audit.queue_size", "must be between 16 and %d, not %d", 1<<22, c.Gateway.Audit.QueueSize)
	}
	if len(c.Gateway.Routes) > 0 {
		if _, err := route.Compile(c.Gateway.Routes); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Server.Issuer != "" {
		u, err := url.Parse(c.Server.Issuer)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("server.issuer", "must be an https URL with no query or fragment (RFC 8414 section 2), not %q", c.Server.Issuer)
		}
	}
	if (c.Server.CertFile == "") != (c.Server.KeyFile == "") {
		bad("server.cert_file", "cert_file and key_file must be set together")
	}
	if c.Server.MaxBodyBytes < 1024 || c.Server.MaxBodyBytes > 16<<20 {
		bad("server.max_body_bytes", "must be between 1 KiB and 16 MiB, not %d", c.Server.MaxBodyBytes)
	}
	if c.Server.MaxHeaderBytes < 4096 || c.Server.MaxHeaderBytes > 1<<20 {
		bad("server.max_header_bytes", "must be between 4 KiB and 1 MiB, not %d", c.Server.MaxHeaderBytes)
	}
	if c.Server.ShutdownTimeout <= 0 {
		bad("server.shutdown_timeout", "must be positive")
	}
	if c.Tokens.DefaultLifetime < 10*time.Second || c.Tokens.DefaultLifetime > c.Tokens.MaxLifetime {
		bad("tokens.default_lifetime", "must be at least 10s and at most tokens.max_lifetime (%s), not %s", c.Tokens.MaxLifetime, c.Tokens.DefaultLifetime)
	}
	if c.Tokens.MaxLifetime > 24*time.Hour {
		bad("tokens.max_lifetime", "must be at most 24h: access tokens are meant to be short-lived, not %s", c.Tokens.MaxLifetime)
	}
	if c.Tokens.AssertionMaxLifetime < 30*time.Second || c.Tokens.AssertionMaxLifetime > time.Hour {
		bad("tokens.assertion_max_lifetime", "must be between 30s and 1h, not %s", c.Tokens.AssertionMaxLifetime)
	}
	if c.Tokens.DPoP.Window < 5*time.Second || c.Tokens.DPoP.Window > 10*time.Minute {
		bad("tokens.dpop.window", "must be between 5s and 10m, not %s", c.Tokens.DPoP.Window)
	}
	allowed := []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}
	if len(c.Tokens.DPoP.Algorithms) == 0 {
		bad("tokens.dpop.algorithms", "must list at least one algorithm")
	}
	for i, a := range c.Tokens.DPoP.Algorithms {
		if !slices.Contains(allowed, a) {
			bad(fmt.Sprintf("tokens.dpop.algorithms[%d]", i), "%q is not an asymmetric JWS algorithm keybound supports (%s)", a, strings.Join(allowed, ", "))
		}
	}
	if c.Keys.RotateEvery < time.Hour {
		bad("keys.rotate_every", "must be at least 1h, not %s", c.Keys.RotateEvery)
	}
	// 15m is how long verifiers may cache the JWK Set (keys.JWKSCacheMaxAge):
	// a key must be published at least that long before it signs.
	if c.Keys.PublishLead < 15*time.Minute || c.Keys.PublishLead >= c.Keys.RotateEvery {
		bad("keys.publish_lead", "must be at least 15m (the JWK Set cache age) and less than keys.rotate_every, not %s", c.Keys.PublishLead)
	}
	if c.Clients.MaxLifetime < time.Hour {
		bad("clients.max_lifetime", "must be at least 1h, not %s", c.Clients.MaxLifetime)
	}
	if err := workload.ValidTrustDomain(c.WorkloadCA.TrustDomain); err != nil {
		bad("workload_ca.trust_domain", "%v", err)
	}
	if w := c.WorkloadCA; w.MaxCertLifetime < workload.MinLifetime || w.MaxCertLifetime > workload.MaxLifetimeCap {
		bad("workload_ca.max_cert_lifetime", "must be between %s and %s, not %s", workload.MinLifetime, workload.MaxLifetimeCap, w.MaxCertLifetime)
	} else if w.CertLifetime < workload.MinLifetime || w.CertLifetime > w.MaxCertLifetime {
		bad("workload_ca.cert_lifetime", "must be at least %s and at most workload_ca.max_cert_lifetime (%s), not %s", workload.MinLifetime, w.MaxCertLifetime, w.CertLifetime)
	}
	if d := c.WorkloadCA.JoinTokenLifetime; d < workload.MinJoinTokenLifetime || d > workload.MaxJoinTokenLifetime {
		bad("workload_ca.join_token_lifetime", "must be between %s and %s, not %s", workload.MinJoinTokenLifetime, workload.MaxJoinTokenLifetime, d)
	}
	if (c.WorkloadCA.CertFile == "") != (c.WorkloadCA.KeyFile == "") {
		bad("workload_ca.cert_file", "cert_file and key_file must be set together")
	}
	c.validateGovernance(bad)
	if len(errs) == 0 {
		return nil
	}
	return &ValidationError{Problems: errs}
}

// validateGatewayIssuer checks the settings of a separate token service
// whose tokens the gateway verifies.
func (c *Config) validateGatewayIssuer(bad func(key, format string, args ...any)) {
	g := c.Gateway
	if g.Issuer == "" && g.JWKSURL == "" {
		if g.IssuerCAFile != "" {
			bad("gateway.issuer_ca_file", "is used only with gateway.jwks_url; set gateway.issuer and gateway.jwks_url, or remove it")
		}
		return
	}
	if g.Issuer == "" {
		bad("gateway.issuer", "must be set with gateway.jwks_url: the exact iss of the tokens its keys verify")
	}
	if g.JWKSURL == "" {
		bad("gateway.jwks_url", "must be set with gateway.issuer: the issuer's JWK Set, such as https://issuer.example/oauth2/jwks")
	}
	if g.Addr == "" {
		bad("gateway.jwks_url", "has no effect without gateway.addr (the gateway is not running)")
	}
	if g.Issuer != "" {
		u, err := url.Parse(g.Issuer)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			bad("gateway.issuer", "must be the token service's issuer: an https URL with no query or fragment (RFC 8414 section 2), not %q", g.Issuer)
		}
	}
	if g.JWKSURL != "" {
		u, err := url.Parse(g.JWKSURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
			bad("gateway.jwks_url", "must be an https URL with no user info or fragment, such as https://issuer.example/oauth2/jwks, not %q", g.JWKSURL)
		}
	}
}

// ValidationError lists every invalid setting.
type ValidationError struct{ Problems []error }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Error()
	}
	return "config: invalid settings: " + strings.Join(parts, "; ")
}
