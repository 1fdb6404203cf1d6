package config

import (
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// Governance configures the lifecycle rules keybound enforces on its own:
// credential rotation, access reviews and expiry warnings. A background
// sweep applies them every SweepInterval.
type Governance struct {
	// SweepInterval is how often the sweep retires rotated credentials whose
	// overlap ended, suspends identities whose review is overdue past the
	// grace period (when enabled) and sends expiry warnings.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// RotationOverlap is how long the old credential keeps working after
	// `keybound client rotate` when the rotation names no overlap;
	// MaxRotationOverlap caps what a rotation may ask for.
	RotationOverlap    time.Duration `yaml:"rotation_overlap"`
	MaxRotationOverlap time.Duration `yaml:"max_rotation_overlap"`
	// RequireKnownOwners refuses an owner that is not in the owner
	// directory (`keybound owner add`) when an identity is created,
	// imported or transferred. Departed owners are refused either way.
	RequireKnownOwners bool    `yaml:"require_known_owners"`
	Reviews            Reviews `yaml:"reviews"`
	Notify             Notify  `yaml:"notify"`
}

// Reviews configures access reviews: how often each identity must be
// re-attested by its owner.
type Reviews struct {
	// Intervals maps an environment (prod, staging, ...) to how often its
	// identities are reviewed; the key "default" applies to every other
	// environment. In a file, the intervals listed replace the built-in
	// ones (ReviewIntervals.UnmarshalYAML).
	Intervals ReviewIntervals `yaml:"intervals"`
	// Grace is how long a review may be overdue before AutoSuspend acts.
	Grace time.Duration `yaml:"grace"`
	// AutoSuspend suspends an identity whose review is overdue by more than
	// Grace.
	AutoSuspend bool `yaml:"auto_suspend"`
}

// ReviewIntervals maps an environment to its review interval, with the
// key "default" for environments not named.
type ReviewIntervals map[string]time.Duration

// DefaultReviewInterval is the "default" review interval when the
// configuration names none: 180 days.
const DefaultReviewInterval = 180 * 24 * time.Hour

// UnmarshalYAML makes the intervals a file lists replace the built-in ones
// rather than merge into them (yaml.v3 decodes a map into the one already
// there, so `intervals: {default: 720h}` would otherwise leave the
// built-in prod entry in force, and no file could remove an entry). A file
// that names no "default" keeps DefaultReviewInterval for the environments
// it leaves out. An entry without a value is refused rather than read as
// removing the environment: `prod:` with its duration forgotten would then
// put prod on the default schedule without a word. An environment on the
// default schedule is one the file leaves out.
func (r *ReviewIntervals) UnmarshalYAML(n *yaml.Node) error {
	var listed map[string]*time.Duration
	if err := n.Decode(&listed); err != nil {
		return err
	}
	out := make(ReviewIntervals, len(listed)+1)
	for _, env := range slices.Sorted(maps.Keys(listed)) {
		d := listed[env]
		if d == nil {
			return fmt.Errorf("line %d: governance.reviews.intervals.%s has no interval; give a duration such as 2160h, or leave %s out to review it every \"default\" interval", keyLine(n, env), env, env)
		}
		out[env] = *d
	}
	if _, ok := out["default"]; !ok {
		out["default"] = DefaultReviewInterval
	}
	*r = out
	return nil
}

// keyLine returns the line of key in the mapping n, or n's own line.
func keyLine(n *yaml.Node, key string) int {
	for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}

// Notify configures expiry warnings.
type Notify struct {
	// LeadTimes are how long before an expiry a warning is sent; one warning
	// per lead time and expiry.
	LeadTimes []time.Duration `yaml:"lead_times"`
	// Log writes each warning to the server log.
	Log     bool    `yaml:"log"`
	Webhook Webhook `yaml:"webhook"`
}

// Webhook delivers warnings as signed JSON POSTs. It is off while URL is
// empty.
type Webhook struct {
	URL string `yaml:"url"`
	// SecretFile holds the HMAC key the body is signed with. Empty: a key
	// generated in DATA_DIR on first start.
	SecretFile string `yaml:"secret_file"`
	// CAFile is a PEM bundle trusted for URL's TLS certificate instead of
	// the system roots.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds one delivery attempt; MaxAttempts bounds the attempts
	// of one warning, with exponential backoff between them.
	Timeout     time.Duration `yaml:"timeout"`
	MaxAttempts int           `yaml:"max_attempts"`
}

// Limits of the governance settings.
const (
	MinSweepInterval   = time.Second
	MaxRotationOverlap = 90 * 24 * time.Hour
	MaxLeadTimes       = 8
	MaxWebhookAttempts = 20
)

func defaultGovernance() Governance {
	return Governance{
		SweepInterval:      time.Minute,
		RotationOverlap:    24 * time.Hour,
		MaxRotationOverlap: 30 * 24 * time.Hour,
		Reviews: Reviews{
			Intervals: ReviewIntervals{"prod": 90 * 24 * time.Hour, "default": DefaultReviewInterval},
			Grace:     14 * 24 * time.Hour,
		},
		Notify: Notify{
			LeadTimes: []time.Duration{14 * 24 * time.Hour, 3 * 24 * time.Hour, 24 * time.Hour},
			Log:       true,
			Webhook:   Webhook{Timeout: 10 * time.Second, MaxAttempts: 8},
		},
	}
}

func (c *Config) validateGovernance(bad func(key, format string, args ...any)) {
	g := c.Governance
	if g.SweepInterval < MinSweepInterval || g.SweepInterval > time.Hour {
		bad("governance.sweep_interval", "must be between %s and 1h, not %s", MinSweepInterval, g.SweepInterval)
	}
	if g.MaxRotationOverlap <= 0 || g.MaxRotationOverlap > MaxRotationOverlap {
		bad("governance.max_rotation_overlap", "must be positive and at most %s, not %s", MaxRotationOverlap, g.MaxRotationOverlap)
	}
	if g.RotationOverlap <= 0 || g.RotationOverlap > g.MaxRotationOverlap {
		bad("governance.rotation_overlap", "must be positive and at most governance.max_rotation_overlap (%s), not %s", g.MaxRotationOverlap, g.RotationOverlap)
	}
	if _, ok := g.Reviews.Intervals["default"]; !ok {
		bad("governance.reviews.intervals", "must have a \"default\" entry for environments not named")
	}
	for _, env := range slices.Sorted(maps.Keys(g.Reviews.Intervals)) { // problems in a stable order
		if d := g.Reviews.Intervals[env]; d < time.Hour {
			bad("governance.reviews.intervals."+env, "must be at least 1h, not %s", d)
		}
	}
	if g.Reviews.Grace < 0 {
		bad("governance.reviews.grace", "must not be negative")
	}
	if len(g.Notify.LeadTimes) > MaxLeadTimes {
		bad("governance.notify.lead_times", "at most %d lead times, not %d", MaxLeadTimes, len(g.Notify.LeadTimes))
	}
	for i, d := range g.Notify.LeadTimes {
		if d < time.Minute {
			bad(fmt.Sprintf("governance.notify.lead_times[%d]", i), "must be at least 1m, not %s", d)
		}
		if slices.Index(g.Notify.LeadTimes, d) != i {
			bad(fmt.Sprintf("governance.notify.lead_times[%d]", i), "%s is listed twice", d)
		}
	}
	w := g.Notify.Webhook
	if w.URL != "" {
		u, err := url.Parse(w.URL)
		switch {
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			// Not echoed: webhook URLs often carry a token in their path.
			bad("governance.notify.webhook.url", "must be an https URL such as https://hooks.example.com/keybound")
		case u.Scheme == "http" && !isLoopback(u.Hostname()):
			// The body names identities and their owners, and the signature
			// only proves origin: in the clear it would be readable on the way.
			bad("governance.notify.webhook.url", "must be https; http is accepted only for a loopback host, not %q", u.Host)
		}
	}
	if w.Timeout <= 0 || w.Timeout > time.Minute {
		bad("governance.notify.webhook.timeout", "must be positive and at most 1m, not %s", w.Timeout)
	}
	if w.MaxAttempts < 1 || w.MaxAttempts > MaxWebhookAttempts {
		bad("governance.notify.webhook.max_attempts", "must be between 1 and %d, not %d", MaxWebhookAttempts, w.MaxAttempts)
	}
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
