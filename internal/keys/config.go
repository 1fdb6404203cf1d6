package keys

import (
	"errors"
	"fmt"
	"time"
)

// Defaults, each with the reason for its size.
const (
	// JWKSCacheMaxAge is the longest a verifier should cache keybound's JWK
	// Set; the JWKS endpoint should send it as Cache-Control max-age. A new
	// key is published at least this long before it signs.
	JWKSCacheMaxAge = 15 * time.Minute
	// DefaultPublishLead is four times JWKSCacheMaxAge: room for verifiers
	// that ignore max-age and refresh on a fixed timer (an hour is a common
	// library default). Scheduled rotation pays this delay, nobody waits on it.
	DefaultPublishLead = time.Hour
	// DefaultMaxTokenLifetime matches the longest access token lifetime a
	// deployment is expected to configure; the app passes its real maximum.
	DefaultMaxTokenLifetime = time.Hour
	// DefaultClockSkew covers verifiers' exp leeway and the lag between nodes'
	// ticks when a retired key leaves the JWKS.
	DefaultClockSkew = 5 * time.Minute
	// DefaultRotateEvery bounds how many tokens one key signs and how long a
	// leaked key stays useful.
	DefaultRotateEvery = 30 * 24 * time.Hour
)

// Config is what the ring reads. The zero value is usable: every zero field
// takes its default.
type Config struct {
	// PublishLead is how long a new key is in the JWKS before it signs, so
	// verifiers that cache the set learn it before they meet a token it
	// signed. At least JWKSCacheMaxAge. Default DefaultPublishLead.
	PublishLead time.Duration
	// MaxTokenLifetime is the longest lifetime of any token the ring's keys
	// sign. A retired key stays published until every token it signed has
	// expired: RemoveAt = RetiredAt + MaxTokenLifetime + ClockSkew.
	// Default DefaultMaxTokenLifetime.
	MaxTokenLifetime time.Duration
	// ClockSkew is added to MaxTokenLifetime before a retired key leaves the
	// JWKS. It must be at least the exp leeway verifiers apply. Default
	// DefaultClockSkew.
	ClockSkew time.Duration
	// RotateEvery is the automatic schedule: Tick publishes a successor when
	// the current key has been signing this long. Default DefaultRotateEvery.
	RotateEvery time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// withDefaults returns c with every zero field defaulted, or every problem
// with the configuration.
func (c Config) withDefaults() (Config, error) {
	if c.PublishLead == 0 {
		c.PublishLead = DefaultPublishLead
	}
	if c.MaxTokenLifetime == 0 {
		c.MaxTokenLifetime = DefaultMaxTokenLifetime
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.RotateEvery == 0 {
		c.RotateEvery = DefaultRotateEvery
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	var errs []error
	if c.PublishLead < JWKSCacheMaxAge {
		errs = append(errs, fmt.Errorf("keys: PublishLead %v is shorter than JWKSCacheMaxAge %v; verifiers could meet a key before they can have fetched it", c.PublishLead, JWKSCacheMaxAge))
	}
	if c.MaxTokenLifetime < 0 {
		errs = append(errs, fmt.Errorf("keys: MaxTokenLifetime %v is negative", c.MaxTokenLifetime))
	}
	if c.ClockSkew < 0 {
		errs = append(errs, fmt.Errorf("keys: ClockSkew %v is negative", c.ClockSkew))
	}
	if c.RotateEvery <= c.PublishLead {
		errs = append(errs, fmt.Errorf("keys: RotateEvery %v must be longer than PublishLead %v", c.RotateEvery, c.PublishLead))
	}
	return c, errors.Join(errs...)
}
