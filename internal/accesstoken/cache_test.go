package accesstoken

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

type countingVerifier struct {
	calls int
	exp   time.Time
}

func (v *countingVerifier) Verify(tok string) (*Claims, error) {
	v.calls++
	if tok == "bad" {
		return nil, ErrSignature
	}
	return &Claims{JTI: tok, Expiry: v.exp}, nil
}

func TestCache(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	inner := &countingVerifier{exp: now.Add(time.Minute)}
	c := NewCache(inner, 64, func() time.Time { return now })

	for i := 0; i < 3; i++ {
		cl, err := c.Verify("t1")
		if err != nil || cl.JTI != "t1" {
			t.Fatal(cl, err)
		}
	}
	if inner.calls != 1 {
		t.Errorf("verified %d times, want once", inner.calls)
	}
	for i := 0; i < 2; i++ {
		if _, err := c.Verify("bad"); !errors.Is(err, ErrSignature) {
			t.Fatalf("err = %v", err)
		}
	}
	if inner.calls != 3 {
		t.Errorf("failures were cached: %d calls", inner.calls)
	}
	if st := c.Stats(); st != (CacheStats{Hits: 2, Misses: 3}) {
		t.Errorf("Stats = %+v, want 2 hits (t1 twice) and 3 misses (t1 once, bad twice)", st)
	}
	// At expiry the entry is not used.
	now = now.Add(time.Minute)
	inner.exp = now.Add(time.Minute)
	if _, err := c.Verify("t1"); err != nil || inner.calls != 4 {
		t.Errorf("expired entry served from cache (calls %d, err %v)", inner.calls, err)
	}
	// The bound holds under many distinct tokens.
	for i := 0; i < 10_000; i++ {
		_, _ = c.Verify(fmt.Sprint("tok", i))
	}
	n := 0
	for i := range c.shards {
		n += len(c.shards[i].m)
	}
	if n > 64 {
		t.Errorf("cache holds %d entries, bound is 64", n)
	}
}

// BenchmarkCacheHit is the gateway's steady state: a token seen before,
// served from the cache.
func BenchmarkCacheHit(b *testing.B) {
	r, c, tok := boundToken(b)
	cache := NewCache(testVerifier(r), 1024, func() time.Time { return c.IssuedAt })
	if _, err := cache.Verify(tok); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cache.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
