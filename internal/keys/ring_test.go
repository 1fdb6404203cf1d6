package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// memStorage is a hand-written in-memory Storage.
type memStorage struct {
	mu      sync.Mutex
	keys    map[string]store.SigningKey
	puts    int
	putErr  error
	listErr error
}

func newMemStorage() *memStorage { return &memStorage{keys: map[string]store.SigningKey{}} }

func (m *memStorage) PutSigningKey(_ context.Context, k store.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.putErr != nil {
		return m.putErr
	}
	k.PrivatePKCS8 = slices.Clone(k.PrivatePKCS8)
	m.keys[k.KID] = k
	m.puts++
	return nil
}

func (m *memStorage) ListSigningKeys(context.Context) ([]store.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.listErr != nil {
		return nil, m.listErr
	}
	var out []store.SigningKey
	for _, k := range m.keys {
		k.PrivatePKCS8 = slices.Clone(k.PrivatePKCS8)
		out = append(out, k)
	}
	return out, nil
}

func (m *memStorage) get(kid string) store.SigningKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.keys[kid]
}

func (m *memStorage) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys)
}

// clock is an injected clock that moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testConfig(c *clock) Config {
	return Config{PublishLead: time.Hour, MaxTokenLifetime: 10 * time.Minute, ClockSkew: time.Minute, RotateEvery: 24 * time.Hour, Now: c.Now}
}

func mustOpen(t *testing.T, st Storage, cfg Config) *Ring {
	t.Helper()
	r, err := Open(t.Context(), st, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

func mustCurrent(t *testing.T, r *Ring) *SigningKey {
	t.Helper()
	k, err := r.Current()
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	return k
}

// jwksKIDs parses the ring's JWKS and returns its kids in order.
func jwksKIDs(t *testing.T, r *Ring) []string {
	t.Helper()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(r.JWKS(), &set); err != nil {
		t.Fatalf("JWKS is not JSON: %v", err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k["kid"])
	}
	return kids
}

func TestOpenCreatesFirstKeyActiveAtOnce(t *testing.T) {
	c := newClock()
	st := newMemStorage()
	r := mustOpen(t, st, testConfig(c))

	if st.len() != 1 {
		t.Fatalf("stored %d keys, want 1", st.len())
	}
	k := mustCurrent(t, r)
	rec := st.get(k.KID())
	if !rec.ActivatesAt.Equal(c.Now()) || !rec.CreatedAt.Equal(c.Now()) {
		t.Errorf("first key activates %v, created %v; want both %v", rec.ActivatesAt, rec.CreatedAt, c.Now())
	}
	if rec.Algorithm != AlgES256 || k.Algorithm() != AlgES256 {
		t.Errorf("algorithm = %q/%q, want ES256", rec.Algorithm, k.Algorithm())
	}

	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(r.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1", len(set.Keys))
	}
	got := set.Keys[0]
	pub := k.Public().(*ecdsa.PublicKey)
	b, _ := pub.Bytes()
	want := map[string]any{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": k.KID(),
		"x": base64.RawURLEncoding.EncodeToString(b[1:33]),
		"y": base64.RawURLEncoding.EncodeToString(b[33:]),
	}
	if len(got) != len(want) {
		t.Errorf("JWK members = %v, want exactly %v", got, want)
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("JWK %s = %v, want %v", name, got[name], v)
		}
	}
	// The kid is the RFC 7638 thumbprint of exactly these members.
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + want["x"].(string) + `","y":"` + want["y"].(string) + `"}`))
	if k.KID() != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Errorf("kid %s is not the RFC 7638 thumbprint", k.KID())
	}
}

func TestReopenLoadsSameKey(t *testing.T) {
	c := newClock()
	st := newMemStorage()
	first := mustCurrent(t, mustOpen(t, st, testConfig(c)))
	c.Advance(time.Minute)
	r2 := mustOpen(t, st, testConfig(c))
	if got := mustCurrent(t, r2); got.KID() != first.KID() {
		t.Errorf("reopened ring signs with %s, want %s", got.KID(), first.KID())
	}
	if st.len() != 1 {
		t.Errorf("reopen stored %d keys, want 1", st.len())
	}
}

func TestRotateLifecycle(t *testing.T) {
	c := newClock()
	st := newMemStorage()
	cfg := testConfig(c)
	r := mustOpen(t, st, cfg)
	ctx := t.Context()
	old := mustCurrent(t, r)

	kid, err := r.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kid == "" || kid == old.KID() {
		t.Fatalf("Rotate returned kid %q", kid)
	}

	// Published at once, but not signing yet.
	if got := jwksKIDs(t, r); !slices.Equal(got, []string{old.KID(), kid}) {
		t.Errorf("after Rotate JWKS kids = %v, want [old new]", got)
	}
	if _, alg, ok := r.PublicKey(kid); !ok || alg != AlgES256 {
		t.Errorf("PublicKey(new) = %q, %v", alg, ok)
	}
	if cur := mustCurrent(t, r); cur.KID() != old.KID() {
		t.Errorf("new key signs before its publication lead")
	}
	if rec := st.get(kid); !rec.ActivatesAt.Equal(c.Now().Add(cfg.PublishLead)) {
		t.Errorf("new key activates %v, want now+PublishLead", rec.ActivatesAt)
	}

	c.Advance(cfg.PublishLead - time.Second)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if cur := mustCurrent(t, r); cur.KID() != old.KID() {
		t.Errorf("new key active a second early")
	}

	// Activation: the new key signs, the old one retires but stays published.
	c.Advance(time.Second)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if cur := mustCurrent(t, r); cur.KID() != kid {
		t.Fatalf("after the lead Current = %s, want %s", cur.KID(), kid)
	}
	retired := st.get(old.KID())
	wantRemove := c.Now().Add(cfg.MaxTokenLifetime + cfg.ClockSkew)
	if !retired.RetiredAt.Equal(c.Now()) || !retired.RemoveAt.Equal(wantRemove) {
		t.Errorf("old key RetiredAt=%v RemoveAt=%v, want %v and %v", retired.RetiredAt, retired.RemoveAt, c.Now(), wantRemove)
	}
	if _, _, ok := r.PublicKey(old.KID()); !ok {
		t.Errorf("retired key left PublicKey before RemoveAt")
	}
	if got := jwksKIDs(t, r); !slices.Contains(got, old.KID()) {
		t.Errorf("retired key left the JWKS before RemoveAt: %v", got)
	}

	c.Advance(cfg.MaxTokenLifetime + cfg.ClockSkew - time.Second)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := r.PublicKey(old.KID()); !ok {
		t.Errorf("retired key removed a second early")
	}

	// Removal.
	c.Advance(time.Second)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := r.PublicKey(old.KID()); ok {
		t.Errorf("PublicKey still knows the removed key")
	}
	if got := jwksKIDs(t, r); !slices.Equal(got, []string{kid}) {
		t.Errorf("after RemoveAt JWKS kids = %v, want [%s]", got, kid)
	}
	if st.len() != 2 {
		t.Errorf("storage holds %d keys, want 2 (removal only leaves the JWKS)", st.len())
	}
}

func TestAutomaticRotation(t *testing.T) {
	c := newClock()
	st := newMemStorage()
	cfg := testConfig(c)
	r := mustOpen(t, st, cfg)
	ctx := t.Context()
	old := mustCurrent(t, r)

	c.Advance(cfg.RotateEvery - time.Second)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if st.len() != 1 {
		t.Fatalf("rotated before RotateEvery")
	}

	c.Advance(time.Second)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if st.len() != 2 {
		t.Fatalf("no successor published at RotateEvery; %d keys", st.len())
	}
	kids := jwksKIDs(t, r)
	if len(kids) != 2 || mustCurrent(t, r).KID() != old.KID() {
		t.Fatalf("successor must be published, not signing: JWKS %v", kids)
	}

	// A pending successor is not duplicated by later ticks.
	c.Advance(time.Minute)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if st.len() != 2 {
		t.Errorf("second tick published another key; %d keys", st.len())
	}

	c.Advance(cfg.PublishLead)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if cur := mustCurrent(t, r); cur.KID() == old.KID() || cur.KID() != kids[1] {
		t.Errorf("successor did not activate: current %s", cur.KID())
	}
}

// Two nodes share one storage. A key one node rotates in is published and
// activated by the other, and the node that kept signing with the old key
// longer pushes its RetiredAt forward.
func TestSharedStorageAcrossNodes(t *testing.T) {
	c := newClock()
	st := newMemStorage()
	cfg := testConfig(c)
	ctx := t.Context()
	a := mustOpen(t, st, cfg)
	b := mustOpen(t, st, cfg)
	old := mustCurrent(t, a)
	if mustCurrent(t, b).KID() != old.KID() {
		t.Fatal("nodes disagree on the first key")
	}

	kid, err := a.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := b.PublicKey(kid); ok {
		t.Fatal("node b knows the key before it ticks")
	}
	if err := b.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := b.PublicKey(kid); !ok {
		t.Fatal("node b did not publish the key node a rotated in")
	}

	c.Advance(cfg.PublishLead)
	if err := b.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	retiredByB := st.get(old.KID()).RetiredAt

	c.Advance(30 * time.Second) // node a ticks late, signing with the old key until then
	if err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if mustCurrent(t, a).KID() != kid || mustCurrent(t, b).KID() != kid {
		t.Fatal("nodes did not both move to the new key")
	}
	rec := st.get(old.KID())
	if !rec.RetiredAt.Equal(c.Now()) || !rec.RetiredAt.After(retiredByB) {
		t.Errorf("old key RetiredAt = %v, want node a's later %v", rec.RetiredAt, c.Now())
	}
	if !rec.RemoveAt.Equal(c.Now().Add(cfg.MaxTokenLifetime + cfg.ClockSkew)) {
		t.Errorf("RemoveAt not moved with RetiredAt: %v", rec.RemoveAt)
	}
}

func TestJWKSRebuiltOnlyOnChange(t *testing.T) {
	c := newClock()
	r := mustOpen(t, newMemStorage(), testConfig(c))
	ctx := t.Context()
	before := r.snap.Load().jwks
	c.Advance(time.Minute)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if after := r.snap.Load().jwks; &after[0] != &before[0] {
		t.Errorf("JWKS rebuilt although the published set did not change")
	}
	if _, err := r.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if after := r.snap.Load().jwks; bytes.Equal(after, before) {
		t.Errorf("JWKS not rebuilt after Rotate")
	}
	// The caller's copy is its own.
	got := r.JWKS()
	got[0] = 'X'
	if r.JWKS()[0] != '{' {
		t.Errorf("JWKS returned the cached slice")
	}
}

func TestFailsClosed(t *testing.T) {
	var zero Ring
	if _, err := zero.Current(); !errors.Is(err, ErrNoKey) {
		t.Errorf("zero Ring Current err = %v, want ErrNoKey", err)
	}
	if _, _, ok := zero.PublicKey("x"); ok {
		t.Errorf("zero Ring PublicKey ok")
	}
	if string(zero.JWKS()) != `{"keys":[]}` {
		t.Errorf("zero Ring JWKS = %s", zero.JWKS())
	}
	if err := zero.Tick(t.Context()); err == nil {
		t.Errorf("zero Ring Tick succeeded")
	}
	var k SigningKey
	if _, err := k.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); !errors.Is(err, ErrZeroKey) {
		t.Errorf("zero key Sign err = %v", err)
	}
}

// Every stored key retired and no successor: nothing signs until a freshly
// published key has had its lead.
func TestAllRetiredPublishesBeforeSigning(t *testing.T) {
	c := newClock()
	st := newMemStorage()
	cfg := testConfig(c)
	k, der, err := newES256()
	if err != nil {
		t.Fatal(err)
	}
	now := c.Now()
	st.keys[k.kid] = store.SigningKey{KID: k.kid, Algorithm: AlgES256, PrivatePKCS8: der, CreatedAt: now.Add(-time.Hour), ActivatesAt: now.Add(-time.Hour), RetiredAt: now.Add(-time.Minute), RemoveAt: now.Add(time.Hour)}
	r := mustOpen(t, st, cfg)
	if _, err := r.Current(); !errors.Is(err, ErrNoKey) {
		t.Fatalf("Current err = %v, want ErrNoKey", err)
	}
	if st.len() != 2 || len(jwksKIDs(t, r)) != 2 {
		t.Fatalf("no successor published")
	}
	c.Advance(cfg.PublishLead)
	if err := r.Tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	if cur := mustCurrent(t, r); cur.KID() == k.kid {
		t.Errorf("retired key came back")
	}
}

func TestTickKeepsStateOnError(t *testing.T) {
	c := newClock()
	st := newMemStorage()
	cfg := testConfig(c)
	r := mustOpen(t, st, cfg)
	ctx := t.Context()
	old := mustCurrent(t, r)
	kid, err := r.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}

	c.Advance(cfg.PublishLead)
	st.putErr = errors.New("disk full")
	if err := r.Tick(ctx); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Tick err = %v, want the storage error", err)
	}
	if mustCurrent(t, r).KID() != old.KID() {
		t.Errorf("failed tick swapped the key")
	}
	if _, err := r.Rotate(ctx); err == nil {
		t.Errorf("Rotate succeeded although storage fails")
	}

	st.putErr = nil
	st.listErr = errors.New("db down")
	if err := r.Tick(ctx); err == nil {
		t.Errorf("Tick succeeded although List fails")
	}
	st.listErr = nil
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if mustCurrent(t, r).KID() != kid {
		t.Errorf("recovered tick did not activate the new key")
	}
}

func TestOpenRefusesBadStoredKeys(t *testing.T) {
	c := newClock()
	good, der, err := newES256()
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := newES256()
	if err != nil {
		t.Fatal(err)
	}
	now := c.Now()
	tests := []struct {
		name string
		rec  store.SigningKey
		want string
	}{
		{"kid is not the key's thumbprint", store.SigningKey{KID: other.kid, Algorithm: AlgES256, PrivatePKCS8: der, ActivatesAt: now}, "does not match its key id"},
		{"unsupported algorithm", store.SigningKey{KID: good.kid, Algorithm: "RS256", PrivatePKCS8: der, ActivatesAt: now}, "only ES256"},
		{"not PKCS #8", store.SigningKey{KID: good.kid, Algorithm: AlgES256, PrivatePKCS8: []byte("junk"), ActivatesAt: now}, "PKCS #8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newMemStorage()
			st.keys[tt.rec.KID] = tt.rec
			_, err := Open(t.Context(), st, testConfig(c))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open err = %v, want one saying %q", err, tt.want)
			}
			if st.puts != 0 {
				t.Errorf("a refused Open stored %d keys", st.puts)
			}
		})
	}

	// A removed key is never parsed again, so it cannot block the ring.
	st := newMemStorage()
	st.keys["gone"] = store.SigningKey{KID: "gone", Algorithm: AlgES256, PrivatePKCS8: []byte("junk"), ActivatesAt: now.Add(-48 * time.Hour), RetiredAt: now.Add(-47 * time.Hour), RemoveAt: now.Add(-46 * time.Hour)}
	mustOpen(t, st, testConfig(c))
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"lead shorter than JWKS cache", Config{PublishLead: time.Minute}, "PublishLead"},
		{"rotation shorter than lead", Config{PublishLead: time.Hour, RotateEvery: time.Hour}, "RotateEvery"},
		{"negative lifetime", Config{MaxTokenLifetime: -time.Second}, "MaxTokenLifetime"},
		{"negative skew", Config{ClockSkew: -time.Second}, "ClockSkew"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newMemStorage()
			_, err := Open(t.Context(), st, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
			if st.len() != 0 {
				t.Errorf("invalid config still created a key")
			}
		})
	}
	if _, err := Open(t.Context(), newMemStorage(), Config{}); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

func TestSigningKeySigns(t *testing.T) {
	k := mustCurrent(t, mustOpen(t, newMemStorage(), testConfig(newClock())))
	digest := sha256.Sum256([]byte("payload"))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Errorf("signature does not verify")
	}
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA384); err == nil {
		t.Errorf("signed with SHA-384 options")
	}
}

func TestSigningKeyRedacts(t *testing.T) {
	k := mustCurrent(t, mustOpen(t, newMemStorage(), testConfig(newClock())))
	d, err := k.priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{hex.EncodeToString(d), base64.RawURLEncoding.EncodeToString(d), base64.StdEncoding.EncodeToString(d), new(big.Int).SetBytes(d).String()}

	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("key", "key", k)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("key", "key", k)
	jsonOut, err := json.Marshal(struct{ K *SigningKey }{k})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":    fmt.Sprintf("%v", k),
		"%+v":   fmt.Sprintf("%+v", k),
		"%#v":   fmt.Sprintf("%#v", k),
		"%s":    fmt.Sprintf("%s", k),
		"%x":    fmt.Sprintf("%x", k),
		"field": fmt.Sprintf("%+v", struct{ K *SigningKey }{k}),
		"json":  string(jsonOut),
		"slog":  logs.String(),
	}
	for name, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(strings.ToLower(out), strings.ToLower(s)) {
				t.Errorf("%s output leaks the private key: %s", name, out)
			}
		}
	}
	if !strings.Contains(outputs["json"], `"[redacted]"`) || !strings.Contains(outputs["%v"], "[redacted]") || !strings.Contains(outputs["slog"], "[redacted]") {
		t.Errorf("outputs do not say [redacted]: %v", outputs)
	}
	if !strings.Contains(outputs["%v"], k.KID()) {
		t.Errorf("String should name the kid: %s", outputs["%v"])
	}
}

func TestConcurrentReadsDuringRotation(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	r := mustOpen(t, newMemStorage(), cfg)
	ctx := t.Context()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			digest := sha256.Sum256([]byte("x"))
			for {
				select {
				case <-stop:
					return
				default:
				}
				k, err := r.Current()
				if err != nil {
					t.Errorf("Current: %v", err)
					return
				}
				// Every state the ring publishes signs only with a key it
				// publishes. (Current then PublicKey are two reads: the test
				// clock jumps an hour per rotation, longer than a retired
				// key stays published here, so between them the key may
				// rightly have been retired and removed.)
				if s := r.snap.Load(); s.current != nil {
					if _, ok := s.published[s.current.kid]; !ok {
						t.Errorf("current key %s is not published in the same state", s.current.kid)
						return
					}
				}
				if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					t.Errorf("Sign: %v", err)
					return
				}
				_ = r.JWKS()
			}
		})
	}
	for range 20 {
		if _, err := r.Rotate(ctx); err != nil {
			t.Error(err)
		}
		c.Advance(cfg.PublishLead)
		if err := r.Tick(ctx); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}

func BenchmarkCurrent(b *testing.B) {
	r, err := Open(b.Context(), newMemStorage(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Current(); err != nil {
			b.Fatal(err)
		}
	}
}
