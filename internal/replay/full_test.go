package replay

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

// A full cache must say so: a caller that read it as a replay would tell an
// honest client its fresh id was already used.
func TestTryClaimTellsFullFromReplay(t *testing.T) {
	clk := newClock()
	c := New(numShards, clk.now) // one key per shard
	won := 0
	for i := 0; won < numShards; i++ {
		ok, err := c.TryClaim("k"+strconv.Itoa(i), clk.in(time.Minute))
		switch {
		case ok:
			won++
		case !errors.Is(err, ErrFull):
			t.Fatalf("fresh key %d refused with %v, want ErrFull or success", i, err)
		}
	}

	ok, err := c.TryClaim("fresh", clk.in(time.Minute))
	if ok || !errors.Is(err, ErrFull) {
		t.Errorf("fresh key on a full cache: (%v, %v), want (false, ErrFull)", ok, err)
	}
	// A key already held is a replay, full cache or not.
	ok, err = c.TryClaim("k0", clk.in(time.Minute))
	if ok || err != nil {
		t.Errorf("replayed key on a full cache: (%v, %v), want (false, nil)", ok, err)
	}
	if c.Claim("fresh", clk.in(time.Minute)) {
		t.Error("Claim on a full cache = true, want false (fail closed)")
	}

	// Room again once the keys expire.
	clk.add(time.Minute + time.Nanosecond)
	if ok, err := c.TryClaim("fresh", clk.in(time.Minute)); !ok || err != nil {
		t.Errorf("after expiry: (%v, %v), want (true, nil)", ok, err)
	}
}

func TestTryClaimReplayAndPastExpiry(t *testing.T) {
	clk := newClock()
	c := New(100, clk.now)
	if ok, err := c.TryClaim("a", clk.in(time.Minute)); !ok || err != nil {
		t.Fatalf("first use: (%v, %v), want (true, nil)", ok, err)
	}
	if ok, err := c.TryClaim("a", clk.in(time.Minute)); ok || err != nil {
		t.Errorf("replay: (%v, %v), want (false, nil)", ok, err)
	}
	if ok, err := c.TryClaim("b", clk.in(-time.Nanosecond)); ok || err != nil {
		t.Errorf("exp already past: (%v, %v), want (false, nil)", ok, err)
	}
}

// A caller that checked a credential valid up to and including until, and
// holds its key until until+Margin, is not refused when the cache's clock
// has moved on a little since that check.
func TestMarginCoversTheCacheReadingItsClockLater(t *testing.T) {
	clk := newClock()
	c := New(100, clk.now)
	until := clk.now() // the caller accepted at exactly its last valid moment
	clk.add(Margin / 2)
	if c.Claim("late", until) {
		t.Fatal("without the margin the key is accepted; the test does not show the race")
	}
	if ok, err := c.TryClaim("late-with-margin", until.Add(Margin)); !ok || err != nil {
		t.Errorf("with the margin: (%v, %v), want (true, nil)", ok, err)
	}
}

// Seen tells a held key without claiming anything.
func TestSeen(t *testing.T) {
	clk := newClock()
	c := New(100, clk.now)
	if c.Seen("a") {
		t.Fatal("an unknown key is seen")
	}
	if c.Len() != 0 {
		t.Fatal("Seen claimed the key")
	}
	c.Claim("a", clk.in(time.Minute))
	if !c.Seen("a") || c.Seen("b") {
		t.Errorf("Seen(a) = %v, Seen(b) = %v; want true, false", c.Seen("a"), c.Seen("b"))
	}
	clk.add(time.Minute + time.Nanosecond)
	if c.Seen("a") {
		t.Error("a key whose claim ended is still seen")
	}
}
