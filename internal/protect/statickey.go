package protect

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// Static API keys are the migration path for callers that cannot yet get a
// token: a route must opt in, and every use is marked so reports count it.
// They are legacy client secrets presented as they are, so the same
// registration (client_secret_basic/post) and the same stored salted hash
// serve both the token endpoint and the gateway.

// MaxStaticKeyBytes bounds a presented static key; keybound's are 47 bytes,
// imported legacy keys may be longer.
const MaxStaticKeyBytes = 512

// maxStaticKeyIDs bounds the digest-to-client-id cache.
const maxStaticKeyIDs = 100_000

// BindingStaticKey is Caller.Binding for a request authenticated by a
// static API key: no token, no proof of possession.
const BindingStaticKey = "static_key"

// AuthMethodStaticKey is the Claims.AuthMethod given to static-key callers.
const AuthMethodStaticKey = "static_key"

// ErrStaticKey is wrapped by every static-key refusal; the error text says
// what to fix and never contains the key.
var ErrStaticKey = errors.New("static API key refused")

// SecretLookup finds a client by its secret's lookup digest.
type SecretLookup interface {
	GetClientBySecretLookup(ctx context.Context, lookup []byte) (*identity.Client, error)
}

// StaticKeys authenticates static API keys. The digest-to-client mapping is
// cached (a secret's digest always names the same client); the client itself
// is read through Clients on every request, so suspension, revocation,
// expiry and secret rotation win within that lookup's TTL.
type StaticKeys struct {
	Lookup  SecretLookup
	Clients ClientLookup
	// Allowed reports the server-wide switch for static secrets
	// (tokens.allow_static_secrets); nil means allowed.
	Allowed func() bool
	Now     func() time.Time

	mu  sync.RWMutex
	ids map[[32]byte]string
}

// Check authenticates key and returns the caller: the client's registered
// scopes and audiences stand in for a token's, Binding is static_key and
// Claims.StaticSecret is set so audit and the sensitivity floor see it.
func (s *StaticKeys) Check(ctx context.Context, key string) (*Caller, error) {
	if key == "" || len(key) > MaxStaticKeyBytes {
		return nil, staticErr("the API key is empty or longer than 512 bytes")
	}
	if s.Allowed != nil && !s.Allowed() {
		return nil, staticErr("static secrets are disabled on this server; get an access token with private_key_jwt or mTLS instead")
	}
	var digest [32]byte
	copy(digest[:], identity.SecretLookup(key))
	id, err := s.clientID(ctx, digest)
	if err != nil {
		return nil, err
	}
	c, err := s.Clients.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		s.forget(digest)
		return nil, staticErr("the API key is not registered")
	}
	if err != nil {
		return nil, staticErr("the API key could not be checked right now; retry later")
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if !c.AuthMethod.IsStaticSecret() || c.VerifySecret(key, now()) != nil {
		// The digest named a client whose secret has since changed, or
		// whose rotation overlap has ended.
		s.forget(digest)
		return nil, staticErr("the API key is not registered")
	}
	if err := c.Usable(now()); err != nil {
		return nil, &staticKeyError{desc: "the API key's client cannot be used: " + strings.TrimPrefix(err.Error(), "identity: "),
			client: &UnusableClient{ClientID: c.ID, Owner: c.Owner, Err: err}}
	}
	return &Caller{
		Claims: &accesstoken.Claims{
			ClientID:     c.ID,
			Scope:        c.Scopes,
			Audience:     c.Audiences,
			AuthMethod:   AuthMethodStaticKey,
			StaticSecret: true,
		},
		Client:  c,
		Binding: BindingStaticKey,
	}, nil
}

func (s *StaticKeys) clientID(ctx context.Context, digest [32]byte) (string, error) {
	s.mu.RLock()
	id, ok := s.ids[digest]
	s.mu.RUnlock()
	if ok {
		return id, nil
	}
	c, err := s.Lookup.GetClientBySecretLookup(ctx, digest[:])
	if errors.Is(err, store.ErrNotFound) {
		return "", staticErr("the API key is not registered")
	}
	if err != nil {
		return "", staticErr("the API key could not be checked right now; retry later")
	}
	s.mu.Lock()
	if s.ids == nil || len(s.ids) >= maxStaticKeyIDs {
		s.ids = make(map[[32]byte]string)
	}
	s.ids[digest] = c.ID
	s.mu.Unlock()
	return c.ID, nil
}

func (s *StaticKeys) forget(digest [32]byte) {
	s.mu.Lock()
	delete(s.ids, digest)
	s.mu.Unlock()
}

type staticKeyError struct {
	desc string
	// client is set when the key named a registered client that cannot
	// be used (suspended, revoked, expired).
	client *UnusableClient
}

func (e *staticKeyError) Error() string { return e.desc }
func (e *staticKeyError) Unwrap() []error {
	if e.client != nil {
		return []error{ErrStaticKey, e.client}
	}
	return []error{ErrStaticKey}
}

func staticErr(desc string) error { return &staticKeyError{desc: desc} }
