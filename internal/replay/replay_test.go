package replay

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// clock is a hand-moved time source.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time               { return time.Unix(0, c.t.Load()) }
func (c *clock) add(d time.Duration)          { c.t.Add(int64(d)) }
func (c *clock) in(d time.Duration) time.Time { return c.now().Add(d) }

func TestClaim(t *testing.T) {
	type step struct {
		advance time.Duration // move the clock first
		key     string
		ttl     time.Duration // exp = now + ttl
		want    bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first claim ok", []step{{0, "a", time.Minute, true}}},
		{"replay refused", []step{{0, "a", time.Minute, true}, {time.Second, "a", time.Minute, false}}},
		{"distinct keys ok", []step{{0, "a", time.Minute, true}, {0, "b", time.Minute, true}}},
		{"replay at exact expiry refused", []step{{0, "a", time.Minute, true}, {time.Minute, "a", time.Minute, false}}},
		{"reuse after expiry ok", []step{{0, "a", time.Minute, true}, {time.Minute + time.Nanosecond, "a", time.Minute, true}}},
		{"reuse after expiry is held again", []step{{0, "a", time.Minute, true}, {2 * time.Minute, "a", time.Minute, true}, {time.Second, "a", time.Minute, false}}},
		{"exp already past refused", []step{{0, "a", -time.Second, false}, {0, "a", time.Minute, true}}},
		{"exp equal to now ok", []step{{0, "a", 0, true}, {0, "a", time.Minute, false}}},
		{"empty key is a key", []step{{0, "", time.Minute, true}, {0, "", time.Minute, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			c := New(100, clk.now)
			for i, s := range tt.steps {
				clk.add(s.advance)
				if got := c.Claim(s.key, clk.in(s.ttl)); got != s.want {
					t.Fatalf("step %d: Claim(%q) = %v, want %v", i, s.key, got, s.want)
				}
			}
		})
	}
}

func TestFullCacheFailsClosed(t *testing.T) {
	const max = 640 // 10 per shard
	clk := newClock()
	c := New(max, clk.now)
	won := 0
	for i := range 20000 {
		if c.Claim("k"+strconv.Itoa(i), clk.in(time.Minute)) {
			won++
		}
	}
	if won != max {
		t.Fatalf("claims won = %d, want exactly %d (every shard full)", won, max)
	}
	if n := c.Len(); n != max {
		t.Fatalf("Len = %d, want %d", n, max)
	}
	if c.Claim("fresh", clk.in(time.Minute)) {
		t.Fatal("Claim on a full cache = true, want false (fail closed)")
	}
	if c.Claim("k0", clk.in(time.Minute)) {
		t.Fatal("replay on a full cache = true, want false")
	}

	// Once every entry has expired, new keys fit again and the full shard
	// sweeps its stale entries rather than growing.
	clk.add(time.Minute + time.Nanosecond)
	if !c.Claim("fresh", clk.in(time.Minute)) {
		t.Fatal("Claim after expiry = false, want true")
	}
	if n := c.Len(); n > max {
		t.Fatalf("Len = %d after expiry, want <= %d", n, max)
	}
	for i := range 20000 {
		c.Claim("x"+strconv.Itoa(i), clk.in(time.Minute))
	}
	if n := c.Len(); n != max {
		t.Fatalf("Len = %d after refill, want %d (bounded)", n, max)
	}
}

func TestConcurrentClaimsOneWinner(t *testing.T) {
	clk := newClock()
	c := New(0, clk.now)
	const goroutines = 64
	for round := range 50 {
		key := "jti-" + strconv.Itoa(round)
		var wins atomic.Int32
		var start, done sync.WaitGroup
		start.Add(1)
		for range goroutines {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				if c.Claim(key, clk.in(time.Minute)) {
					wins.Add(1)
				}
			}()
		}
		start.Done()
		done.Wait()
		if w := wins.Load(); w != 1 {
			t.Fatalf("round %d: %d goroutines won the same key, want exactly 1", round, w)
		}
	}
}

func TestNewDefaults(t *testing.T) {
	c := New(0, nil)
	if got, want := c.shards[0].limit, DefaultMaxEntries/numShards; got != want {
		t.Errorf("per-shard limit = %d, want %d", got, want)
	}
	if !c.Claim("a", time.Now().Add(time.Minute)) || c.Claim("a", time.Now().Add(time.Minute)) {
		t.Error("nil clock: want first claim true, replay false")
	}
	if sz := unsafe.Sizeof(shard{}); sz%64 != 0 {
		t.Errorf("shard size = %d, want a multiple of 64 (false-sharing padding)", sz)
	}
}

func BenchmarkClaim(b *testing.B) {
	const nkeys = 1 << 20
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I:" + strconv.Itoa(i)
	}
	c := New(nkeys, nil)
	exp := time.Now().Add(time.Hour)
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			c.Claim(keys[i&(nkeys-1)], exp)
		}
	})
}
