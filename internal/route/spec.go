package route

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Spec is one route as configured. The config package embeds it; Compile
// validates it. The zero Spec is invalid (no name, path, upstream or
// sensitivity).
type Spec struct {
	// Name identifies the route in logs, audit events and metrics.
	Name string `yaml:"name"`
	// Host, when set, restricts the route to requests for that exact host
	// (compared case-insensitively, port ignored). "" matches any host.
	Host string `yaml:"host"`
	// Path is the pattern: "/"-separated literal segments and {name}
	// parameters, optionally ending in a {name...} catch-all.
	Path string `yaml:"path"`
	// Methods lists the accepted HTTP methods; empty accepts any.
	Methods []string `yaml:"methods"`
	// Upstream is the absolute http(s) URL requests are proxied to.
	Upstream string `yaml:"upstream"`
	// Scopes are the scopes a token must hold (see ScopeSpec).
	Scopes ScopeSpec `yaml:"scopes"`
	// Audiences are the token audiences the route accepts.
	Audiences []string `yaml:"audiences"`
	// Sensitivity is public, internal, confidential or restricted; required.
	Sensitivity string `yaml:"sensitivity"`
	// RateLimit is the per-identity limit; nil means none of its own.
	RateLimit *RateSpec `yaml:"rate_limit"`
	// AllowStaticKeys lets clients registered with a legacy static secret
	// call the route by presenting the secret itself in StaticKeyHeader: the
	// migration path for callers that cannot get a token yet. Only public
	// and internal routes may, unless AllowWeakerAssurance is set.
	AllowStaticKeys bool `yaml:"allow_static_keys"`
	// StaticKeyHeader is the request header carrying the key; default
	// X-API-Key. The gateway removes it before proxying.
	StaticKeyHeader string `yaml:"static_key_header"`
	// AllowWeakerAssurance is the explicit, logged override of the
	// sensitivity floor.
	AllowWeakerAssurance bool `yaml:"allow_weaker_assurance"`
	// Environment, when set, names the environment the upstream belongs to
	// (prod, staging, ...): one word, like an identity's environment. Usage
	// reports compare it with the environment of each identity the route
	// serves. It changes no decision.
	Environment string `yaml:"environment"`
}

// ScopeSpec is the scopes a route requires. In YAML it is either a list,
// which applies to every method:
//
//	scopes: [orders:read]
//
// or a map from method to list, where "*" covers methods without their own
// entry:
//
//	scopes:
//	  GET: [orders:read]
//	  "*": [orders:write]
//
// With the map form, every method the route accepts must be covered by its
// own entry or by "*"; Compile rejects a route where one is not, so no method
// is ever left requiring nothing by omission.
type ScopeSpec struct {
	// All applies to every method.
	All []string
	// ByMethod maps an upper-case method (or "*") to the scopes it requires
	// in addition to All.
	ByMethod map[string][]string
}

// UnmarshalYAML implements yaml.Unmarshaler for the list and map forms.
func (s *ScopeSpec) UnmarshalYAML(value *yaml.Node) error {
	n := value
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.SequenceNode:
		var all []string
		if err := n.Decode(&all); err != nil {
			return err
		}
		*s = ScopeSpec{All: all}
		return nil
	case yaml.MappingNode:
		var by map[string][]string
		if err := n.Decode(&by); err != nil {
			return err
		}
		*s = ScopeSpec{ByMethod: by}
		return nil
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*s = ScopeSpec{}
			return nil
		}
	}
	return fmt.Errorf("line %d: scopes must be a list of scopes or a map from method to a list of scopes", n.Line)
}

// RateSpec is a per-identity rate limit as configured:
//
//	rate_limit: {per_identity: "100/s", burst: 200}
//
// PerIdentity is "N/s", "N/m" or "N/h" with N a positive integer. Burst is
// the bucket size; 0 means N.
type RateSpec struct {
	PerIdentity string `yaml:"per_identity"`
	Burst       int    `yaml:"burst"`
}
