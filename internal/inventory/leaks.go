package inventory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// Leaked secrets. A secret scanner (keybound scan) finds secrets in code and
// sends their SHA-256 digests, never the secrets; MatchSecrets looks each up
// in the inventory. A digest that is a registered identity's secret is a
// leak: it is recorded once, as a client.leaked admin event naming the
// secret by its fingerprint and where it was found. That event is the
// durable flag that the identity must rotate its secret: LeakedAt reads it
// back, and it stops applying as soon as the identity's secret changes,
// because it names the old secret's fingerprint.
//
// Why the admin log and not a column on the client? The log is already the
// append-only, durable record of who did what; a leak is such a fact, and
// keeping it there needs no schema change to the clients table, which every
// lifecycle change writes.

// ActionLeaked is the admin event action recording a leaked secret.
const ActionLeaked = "client.leaked"

// MaxSightings bounds the sightings matched in one call.
const MaxSightings = 1000

// Sighting is one place a secret was found, by its digest only.
type Sighting struct {
	// Lookup is the SHA-256 of the secret (identity.SecretLookup).
	Lookup []byte
	// Rule is the detection rule that found it, such as keybound-secret.
	Rule string
	// Location is where: a path and line, such as config/app.env:3.
	Location string
	// Commit is the git commit that added it, when found in history.
	Commit string
}

// SecretMatch is what the inventory knows of one sighting.
type SecretMatch struct {
	// Client is the identity whose secret it is; nil for an unmanaged one.
	Client *identity.Client
	// FlaggedAt is when the leak was first recorded; zero when unmanaged.
	FlaggedAt time.Time
	// Recorded is set when this call recorded the leak.
	Recorded bool
}

// MatchSecrets matches each sighting against the inventory and records
// every newly found leak with an admin event by actor. source says what was
// scanned (a repository path, say); it goes into the event. The result has
// one entry per sighting, in order.
func (s *Service) MatchSecrets(ctx context.Context, actor, source string, sightings []Sighting) ([]SecretMatch, error) {
	if len(sightings) > MaxSightings {
		return nil, fmt.Errorf("inventory: %d sightings; at most %d are matched at once", len(sightings), MaxSightings)
	}
	out := make([]SecretMatch, len(sightings))
	done := map[string]SecretMatch{} // digest -> result, within this call
	for i, sg := range sightings {
		key := string(sg.Lookup)
		if m, ok := done[key]; ok {
			m.Recorded = false
			out[i] = m
			continue
		}
		c, err := s.Store.GetClientBySecretLookup(ctx, sg.Lookup)
		if errors.Is(err, store.ErrNotFound) {
			done[key] = SecretMatch{}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("inventory: match secrets: %w", err)
		}
		m := SecretMatch{Client: c}
		fp := identity.SecretFingerprint(sg.Lookup)
		if m.FlaggedAt, err = s.leakRecorded(ctx, c.ID, fp); err != nil {
			return nil, err
		}
		if m.FlaggedAt.IsZero() {
			now := s.now()
			changes := map[string]string{
				"fingerprint": fp,
				"rule":        clean(sg.Rule),
				"location":    clean(sg.Location),
				"needs":       "secret rotation",
			}
			if sg.Commit != "" {
				changes["commit"] = clean(sg.Commit)
			}
			if source != "" {
				changes["source"] = clean(source)
			}
			ev := store.AdminEvent{Time: now, Actor: actor, Action: ActionLeaked, Target: c.ID, Changes: changes}
			if err := s.Store.AppendAdminEvent(ctx, ev); err != nil {
				return nil, fmt.Errorf("inventory: record leak: %w", err)
			}
			m.FlaggedAt, m.Recorded = now, true
		}
		out[i], done[key] = m, m
	}
	return out, nil
}

// LeakedAt reports when c's current secret was recorded as leaked, or the
// zero time when it was not (or c has no secret). A rotated secret has a
// new fingerprint, so rotation clears the flag.
func (s *Service) LeakedAt(ctx context.Context, c *identity.Client) (time.Time, error) {
	if c.Secret == nil || len(c.Secret.Lookup) == 0 {
		return time.Time{}, nil
	}
	return s.leakRecorded(ctx, c.ID, identity.SecretFingerprint(c.Secret.Lookup))
}

// leakRecorded returns the time of the first client.leaked event of client
// id for the fingerprint, or zero. Two scans racing may both record the
// same leak; the log is append-only, so the duplicate is harmless and the
// earliest event still answers.
func (s *Service) leakRecorded(ctx context.Context, id, fingerprint string) (time.Time, error) {
	evs, err := s.Store.ListAdminEvents(ctx, id, 0)
	if err != nil {
		return time.Time{}, fmt.Errorf("inventory: read admin log: %w", err)
	}
	var first time.Time
	for _, ev := range evs { // newest first: the last match is the earliest
		if ev.Action == ActionLeaked && ev.Changes["fingerprint"] == fingerprint {
			first = ev.Time
		}
	}
	return first, nil
}

// clean bounds a caller-supplied text for the admin log and replaces
// control characters, which a terminal showing the log would interpret.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	return truncate(s, identity.MaxTextLen)
}
