// Package keys is the token-signing key ring: it creates signing keys,
// publishes each one before it signs, rotates on a schedule, retires the old
// key and keeps it in the JWK Set until every token it signed has expired.
//
// It must not issue or verify tokens (accesstoken does) or serve HTTP
// (authserver serves the JWKS it builds). Remote (remote.go) is the other
// side: it fetches and caches another issuer's JWK Set for a gateway that
// verifies tokens it did not sign.
//
// A key's life, all driven by Tick against an injected clock:
//
//	created ──(published in JWKS)──▶ ActivatesAt: signs ──▶ RetiredAt: a successor
//	activated, stops signing ──▶ RemoveAt = RetiredAt + MaxTokenLifetime + ClockSkew:
//	leaves the JWKS.
//
// Several nodes may share one Storage: Tick reloads from it, so a key one
// node publishes is published and activated by all. Two nodes that rotate at
// the same moment publish two keys; the later one wins and the earlier one
// retires at once, which is harmless.
package keys

import (
	"cmp"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// Storage persists the ring's keys. store.Store satisfies it.
// PutSigningKey inserts or replaces the key with the same KID.
type Storage interface {
	PutSigningKey(ctx context.Context, k store.SigningKey) error
	ListSigningKeys(ctx context.Context) ([]store.SigningKey, error)
}

// ErrNoKey is returned by Current when no key may sign: the ring was not
// opened, or every stored key is retired and the successor is still being
// published. Issuance must fail rather than sign with something else.
var ErrNoKey = errors.New("keys: no signing key is active; open the ring and let Tick activate one")

// Ring is the key ring. Build it with Open; the zero value has no key and
// fails closed. It is safe for concurrent use: Current, PublicKey and JWKS
// read an immutable snapshot through an atomic pointer and never block;
// Rotate and Tick are serialised and swap in a new snapshot only once every
// change is stored.
type Ring struct {
	st  Storage
	cfg Config

	mu   sync.Mutex // serialises Rotate and Tick
	snap atomic.Pointer[snapshot]
}

// snapshot is one immutable state of the ring.
type snapshot struct {
	recs      []store.SigningKey     // every stored key, in schedule order
	current   *SigningKey            // nil: fail closed
	published map[string]*SigningKey // keys in the JWKS, by kid
	kidList   string                 // published kids in order, to spot changes
	jwks      []byte
}

// Open loads the stored keys and applies the schedule as Tick does. With no
// key stored at all it creates one that signs at once: on a first start no
// verifier can have cached an older set, so there is nobody to warn.
func Open(ctx context.Context, st Storage, cfg Config) (*Ring, error) {
	if st == nil {
		return nil, errors.New("keys: Open needs a Storage")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Ring{st: st, cfg: cfg}
	if err := r.Tick(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Current returns the key that signs now, or ErrNoKey.
func (r *Ring) Current() (*SigningKey, error) {
	s := r.snap.Load()
	if s == nil || s.current == nil {
		return nil, ErrNoKey
	}
	return s.current, nil
}

// PublicKey returns the public key and algorithm of a published key (pending,
// current or retired but not yet removed), for verifying tokens locally.
func (r *Ring) PublicKey(kid string) (crypto.PublicKey, string, bool) {
	s := r.snap.Load()
	if s == nil {
		return nil, "", false
	}
	k, ok := s.published[kid]
	if !ok {
		return nil, "", false
	}
	return &k.priv.PublicKey, k.alg, true
}

// JWKS returns the public JWK Set (RFC 7517 section 5) of every published
// key. The JSON is built once per change of the published set; each call
// returns a copy the caller may keep. An unopened ring returns an empty set.
func (r *Ring) JWKS() []byte {
	s := r.snap.Load()
	if s == nil {
		return []byte(`{"keys":[]}`)
	}
	return slices.Clone(s.jwks)
}

// Rotate creates a key and publishes it now; it starts signing PublishLead
// later, when Tick activates it and retires its predecessor. It returns the
// new key id. Use it for scheduled or precautionary rotation; it does not
// shorten the publication lead.
func (r *Ring) Rotate(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.advance(ctx, true)
}

// Tick reloads the keys from storage and applies the schedule at the current
// time: it activates the newest key whose ActivatesAt has come, retires the
// keys it replaces, drops keys past RemoveAt from the JWKS and publishes a
// successor once the current key is older than RotateEvery. The app calls it
// periodically, well within ClockSkew (every minute is plenty). On error the
// ring keeps its previous state.
func (r *Ring) Tick(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.advance(ctx, false)
	return err
}

// advance is Tick, and Rotate when rotate is set. The caller holds r.mu.
func (r *Ring) advance(ctx context.Context, rotate bool) (string, error) {
	if r.st == nil {
		return "", errors.New("keys: ring was not built with Open")
	}
	recs, err := r.st.ListSigningKeys(ctx)
	if err != nil {
		return "", fmt.Errorf("keys: loading signing keys: %w", err)
	}
	recs = slices.Clone(recs)
	sortRecords(recs)
	now := r.cfg.Now()
	prev := r.snap.Load()
	prevKID := ""
	if prev != nil && prev.current != nil {
		prevKID = prev.current.kid
	}

	changed, cur := r.schedule(recs, now, prevKID)

	// Decide whether to create a key, and whether it may sign at once.
	var created *SigningKey
	var createdRec store.SigningKey
	if create, immediate := r.needKey(recs, cur, now, rotate); create {
		k, der, err := newES256()
		if err != nil {
			return "", err
		}
		createdRec = store.SigningKey{KID: k.kid, Algorithm: k.alg, PrivatePKCS8: der, CreatedAt: now, ActivatesAt: now.Add(r.cfg.PublishLead)}
		if immediate {
			createdRec.ActivatesAt = now
		}
		created = k
		recs = append(recs, createdRec)
		sortRecords(recs)
		changed[createdRec.KID] = true
		if immediate {
			more, c := r.schedule(recs, now, prevKID)
			for kid := range more {
				changed[kid] = true
			}
			cur = c
		}
	}

	// Build the whole new state before storing anything: a stored key that
	// cannot be parsed fails the tick and leaves the ring as it was.
	next, err := r.build(recs, cur, now, prev, created)
	if err != nil {
		return "", err
	}
	for i := range recs {
		if changed[recs[i].KID] {
			if err := r.st.PutSigningKey(ctx, recs[i]); err != nil {
				return "", fmt.Errorf("keys: storing key %s: %w", recs[i].KID, err)
			}
		}
	}
	r.snap.Store(next)
	if created != nil {
		return created.kid, nil
	}
	return "", nil
}

// schedule picks the key that signs at now and retires the ones it replaces.
// It changes recs in place and reports which records changed and the index
// of the current key (-1 when none).
//
// The signing key is the newest unretired key whose ActivatesAt has come.
// Every other such key stopped signing on this node now, so its RetiredAt is
// now. The key this node signed with until now may already carry an earlier
// RetiredAt written by another node that ticked first; it is moved to now,
// because this node's tokens signed since then must stay verifiable too.
func (r *Ring) schedule(recs []store.SigningKey, now time.Time, prevKID string) (map[string]bool, int) {
	changed := make(map[string]bool)
	cur := -1
	for i := range recs {
		if active(recs[i], now) {
			cur = i // records are sorted: the last active one is the newest
		}
	}
	for i := range recs {
		rec := &recs[i]
		if i == cur {
			continue
		}
		if active(*rec, now) || (rec.KID == prevKID && rec.RetiredAt.Before(now)) {
			rec.RetiredAt = now
			rec.RemoveAt = now.Add(r.cfg.MaxTokenLifetime + r.cfg.ClockSkew)
			changed[rec.KID] = true
		}
	}
	return changed, cur
}

// needKey reports whether a key must be created and whether it may sign at
// once. Once a successor is pending no other is made automatically.
func (r *Ring) needKey(recs []store.SigningKey, cur int, now time.Time, rotate bool) (create, immediate bool) {
	if rotate {
		return true, false
	}
	for _, rec := range recs {
		if rec.RetiredAt.IsZero() && rec.ActivatesAt.After(now) {
			return false, false // a successor is already being published
		}
	}
	if cur >= 0 {
		return now.Sub(recs[cur].ActivatesAt) >= r.cfg.RotateEvery, false
	}
	// No key signs and none is pending. If nothing is published either (first
	// start), no verifier can be caught out: sign at once. Otherwise publish
	// first and fail closed until the key activates.
	for _, rec := range recs {
		if published(rec, now) {
			return true, false
		}
	}
	return true, true
}

// build parses the published keys and assembles the next snapshot, reusing
// parsed keys and the JWKS JSON of prev where nothing changed.
func (r *Ring) build(recs []store.SigningKey, cur int, now time.Time, prev *snapshot, created *SigningKey) (*snapshot, error) {
	s := &snapshot{recs: recs, published: make(map[string]*SigningKey)}
	var kids []string
	for i, rec := range recs {
		if !published(rec, now) && i != cur {
			continue // removed: its private key is never parsed again
		}
		var k *SigningKey
		switch {
		case created != nil && created.kid == rec.KID:
			k = created
		case prev != nil && prev.published[rec.KID] != nil && sameKey(prev, rec):
			k = prev.published[rec.KID]
		default:
			var err error
			if k, err = parseStored(rec.KID, rec.Algorithm, rec.PrivatePKCS8); err != nil {
				return nil, err
			}
		}
		s.published[rec.KID] = k
		kids = append(kids, rec.KID)
		if i == cur {
			s.current = k
		}
	}
	s.kidList = strings.Join(kids, ",")
	if prev != nil && prev.kidList == s.kidList && prev.jwks != nil {
		s.jwks = prev.jwks
		return s, nil
	}
	jwks, err := marshalJWKS(recs, s.published)
	if err != nil {
		return nil, err
	}
	s.jwks = jwks
	return s, nil
}

// sameKey reports whether prev parsed exactly the bytes rec now holds.
func sameKey(prev *snapshot, rec store.SigningKey) bool {
	for _, p := range prev.recs {
		if p.KID == rec.KID {
			return p.Algorithm == rec.Algorithm && string(p.PrivatePKCS8) == string(rec.PrivatePKCS8)
		}
	}
	return false
}

// jwk is the public JWK of one key (RFC 7517, RFC 7518 section 6.2).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// marshalJWKS writes the published keys in schedule order. Only public
// members are ever copied into a jwk.
func marshalJWKS(recs []store.SigningKey, pub map[string]*SigningKey) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, rec := range recs {
		k, ok := pub[rec.KID]
		if !ok {
			continue
		}
		x, y, err := ecCoordinates(&k.priv.PublicKey)
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, jwk{Kty: "EC", Crv: "P-256", X: x, Y: y, Use: "sig", Alg: k.alg, Kid: k.kid})
	}
	return json.Marshal(set)
}

// active reports whether rec may sign at now.
func active(rec store.SigningKey, now time.Time) bool {
	return rec.RetiredAt.IsZero() && !rec.ActivatesAt.After(now)
}

// published reports whether rec belongs in the JWKS at now.
func published(rec store.SigningKey, now time.Time) bool {
	return rec.RemoveAt.IsZero() || rec.RemoveAt.After(now)
}

// sortRecords orders keys by activation, then creation, then kid, so the
// newest active key is the last active one and JWKS output is stable.
func sortRecords(recs []store.SigningKey) {
	slices.SortFunc(recs, func(a, b store.SigningKey) int {
		return cmp.Or(a.ActivatesAt.Compare(b.ActivatesAt), a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.KID, b.KID))
	})
}
