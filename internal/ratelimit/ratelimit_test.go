package ratelimit

import (
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// clock is a settable time source; tests advance it instead of sleeping.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestBurstThenRefusal(t *testing.T) {
	tests := []struct {
		rate  float64
		burst int
		retry time.Duration
	}{
		{1, 3, time.Second},
		{10, 5, 100 * time.Millisecond},
		{1.0 / 60, 1, time.Minute},
		{0.01, 2, 100 * time.Second},
		{3, 1, 333333334 * time.Nanosecond}, // rounded up, never down
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%g/s burst %d", tt.rate, tt.burst), func(t *testing.T) {
			c := newClock()
			l := New(100, c.now)
			for i := range tt.burst {
				if ok, ra := l.Allow("k", tt.rate, tt.burst); !ok || ra != 0 {
					t.Fatalf("call %d refused (%v) within the burst", i, ra)
				}
			}
			ok, ra := l.Allow("k", tt.rate, tt.burst)
			if ok {
				t.Fatal("call beyond the burst allowed")
			}
			if ra != tt.retry {
				t.Errorf("retryAfter = %v, want %v", ra, tt.retry)
			}
			// Just before retryAfter: still refused, and a refusal took nothing.
			c.advance(ra - time.Nanosecond)
			if ok, _ := l.Allow("k", tt.rate, tt.burst); ok {
				t.Error("allowed before retryAfter elapsed")
			}
			c.advance(time.Nanosecond)
			if ok, _ := l.Allow("k", tt.rate, tt.burst); !ok {
				t.Error("refused once retryAfter elapsed")
			}
		})
	}
}

func TestRefill(t *testing.T) {
	c := newClock()
	l := New(100, c.now)
	const rate, burst = 2, 4
	for range burst {
		l.Allow("k", rate, burst)
	}
	c.advance(1500 * time.Millisecond) // three tokens
	got := 0
	for range 10 {
		if ok, _ := l.Allow("k", rate, burst); ok {
			got++
		}
	}
	if got != 3 {
		t.Errorf("after 1.5s at 2/s: %d allowed, want 3", got)
	}
	c.advance(time.Hour) // refill caps at burst
	got = 0
	for range 10 {
		if ok, _ := l.Allow("k", rate, burst); ok {
			got++
		}
	}
	if got != burst {
		t.Errorf("after an hour: %d allowed, want %d", got, burst)
	}
}

func TestClockGoingBackRefillsNothing(t *testing.T) {
	c := newClock()
	l := New(100, c.now)
	l.Allow("k", 1, 1)
	c.advance(-time.Hour)
	if ok, _ := l.Allow("k", 1, 1); ok {
		t.Error("a clock step back refilled the bucket")
	}
	c.advance(time.Hour + time.Second)
	if ok, _ := l.Allow("k", 1, 1); !ok {
		t.Error("bucket never refilled after the clock recovered")
	}
}

func TestRateChange(t *testing.T) {
	c := newClock()
	l := New(100, c.now)
	for range 10 {
		l.Allow("k", 1, 10)
	}
	// A reload lowers the burst: the tokens are capped, not reset.
	c.advance(time.Hour)
	got := 0
	for range 10 {
		if ok, _ := l.Allow("k", 1, 3); ok {
			got++
		}
	}
	if got != 3 {
		t.Errorf("after burst lowered to 3: %d allowed", got)
	}
}

func TestIndependentKeys(t *testing.T) {
	c := newClock()
	l := New(100, c.now)
	if ok, _ := l.Allow("a", 1, 1); !ok {
		t.Fatal("a refused")
	}
	if ok, _ := l.Allow("a", 1, 1); ok {
		t.Fatal("a allowed twice")
	}
	if ok, _ := l.Allow("b", 1, 1); !ok {
		t.Error("b refused because a is exhausted")
	}
}

func TestInvalidParametersFailClosed(t *testing.T) {
	l := New(10, nil)
	for _, tt := range []struct {
		rate  float64
		burst int
	}{{0, 1}, {-1, 1}, {math.NaN(), 1}, {math.Inf(1), 1}, {1, 0}, {1, -5}} {
		if ok, ra := l.Allow("k", tt.rate, tt.burst); ok || ra != 0 {
			t.Errorf("Allow(rate %v, burst %d) = %v, %v; want false, 0", tt.rate, tt.burst, ok, ra)
		}
	}
	if l.Len() != 0 {
		t.Error("a refused call stored a bucket")
	}
}

func TestEvictionKeepsTheBound(t *testing.T) {
	for _, maxKeys := range []int{1, 5, 64, 100, 1000} {
		t.Run(fmt.Sprint(maxKeys), func(t *testing.T) {
			c := newClock()
			l := New(maxKeys, c.now)
			for i := range 20 * maxKeys {
				l.Allow(fmt.Sprint("key-", i), 1, 5)
				if n := l.Len(); n > maxKeys {
					t.Fatalf("after %d keys, %d buckets held; bound %d", i+1, n, maxKeys)
				}
			}
			if l.Evictions() == 0 {
				t.Error("no lossy eviction counted although every bucket was mid-burst")
			}
		})
	}
}

func TestEvictionPrefersRefilledBuckets(t *testing.T) {
	c := newClock()
	l := New(2, c.now) // two shards of one bucket each
	// Find two keys that share a shard.
	shardOf := func(k string) int { return int(hashKey(l, k)) }
	a, b := "a", ""
	for i := 0; b == ""; i++ {
		if k := fmt.Sprint("b", i); shardOf(k) == shardOf(a) {
			b = k
		}
	}
	l.Allow(a, 1, 1)
	c.advance(time.Second) // a has refilled: dropping it loses nothing
	l.Allow(b, 1, 1)
	if l.Evictions() != 0 {
		t.Errorf("dropping a refilled bucket counted as lossy: %d", l.Evictions())
	}
	l.Allow(a, 1, 1) // evicts b, which is empty: lossy
	if l.Evictions() != 1 {
		t.Errorf("Evictions = %d, want 1", l.Evictions())
	}
	// b was evicted mid-burst, so it gets a fresh burst (the documented cost).
	if ok, _ := l.Allow(b, 1, 1); !ok {
		t.Error("evicted key did not get a fresh bucket")
	}
}

func TestEvictionScansForRefilled(t *testing.T) {
	c := newClock()
	l := New(3, c.now) // 2 shards: limits 2 and 1
	var keys []string
	for i := 0; len(keys) < 3; i++ {
		if k := fmt.Sprint("k", i); hashKey(l, k) == 0 {
			keys = append(keys, k)
		}
	}
	l.Allow(keys[0], 1000, 1)  // refills in a millisecond
	l.Allow(keys[1], 0.001, 1) // refills in 1000 s
	c.advance(time.Second)
	l.Allow(keys[1], 0.001, 1) // keys[1] now most recent, keys[0] least, and full
	l.Allow(keys[2], 1, 1)
	if l.Evictions() != 0 {
		t.Errorf("a full bucket was available, yet a lossy eviction happened")
	}
	if ok, _ := l.Allow(keys[1], 0.001, 1); ok {
		t.Error("keys[1] lost its state: the refilled keys[0] should have been dropped")
	}
}

func hashKey(l *Limiter, k string) uint64 { return maphash.String(l.seed, k) & l.mask }

func TestConcurrentAllowConservesTokens(t *testing.T) {
	c := newClock()
	l := New(1000, c.now)
	const burst, goroutines, perG = 500, 64, 50
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range perG {
				if ok, _ := l.Allow("shared", 1, burst); ok {
					allowed.Add(1)
				}
				l.Allow(fmt.Sprint("own-", g), 1, 1) // traffic on other keys
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != burst {
		t.Errorf("%d allowed, want exactly the burst %d", got, burst)
	}
}

func TestShardSize(t *testing.T) {
	if sz := unsafe.Sizeof(shard{}); sz%64 != 0 {
		t.Errorf("shard is %d bytes; adjust its padding to a multiple of 64", sz)
	}
}

func BenchmarkAllow(b *testing.B) {
	b.Run("one key", func(b *testing.B) {
		l := New(0, nil)
		b.ReportAllocs()
		for b.Loop() {
			l.Allow("client-1234", 1e9, 1<<20)
		}
	})
	b.Run("10k keys", func(b *testing.B) {
		l := New(0, nil)
		keys := make([]string, 10000)
		for i := range keys {
			keys[i] = fmt.Sprint("client-", i)
			l.Allow(keys[i], 1e9, 1<<20)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Allow(keys[i%len(keys)], 1e9, 1<<20)
			i++
		}
	})
	b.Run("new keys under eviction", func(b *testing.B) {
		l := New(1024, nil)
		keys := make([]string, 1<<16)
		for i := range keys {
			keys[i] = fmt.Sprint("client-", i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Allow(keys[i%len(keys)], 1, 10)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		l := New(0, nil)
		keys := make([]string, 1024)
		for i := range keys {
			keys[i] = fmt.Sprint("client-", i)
		}
		b.ReportAllocs()
		var id atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(id.Add(1)) * 7919
			for pb.Next() {
				l.Allow(keys[i%len(keys)], 1e9, 1<<20)
				i++
			}
		})
	})
}
