package app

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/replay"
)

// testClock is a hand-moved time source.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// An assertion accepted at the very last moment it is valid (exp plus
// leeway) is recorded, not refused as already used, though the cache reads
// its clock a moment after clientauth's check.
func TestAssertionReplayAcceptsAnAssertionAtItsLastValidMoment(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	until := clk.now() // clientauth: now == exp + leeway, still valid
	clk.add(300 * time.Millisecond)
	ar := assertionReplay{c: replay.New(0, clk.now), full: &replayFullLog{log: slog.New(slog.DiscardHandler)}}
	fresh, err := ar.Claim(context.Background(), "svc", "jti-1", until)
	if err != nil || !fresh {
		t.Fatalf("assertion checked valid at its last moment: Claim = (%v, %v), want (true, nil)", fresh, err)
	}
	fresh, err = ar.Claim(context.Background(), "svc", "jti-1", until)
	if err != nil || fresh {
		t.Errorf("the same assertion again: Claim = (%v, %v), want (false, nil): a replay", fresh, err)
	}
}

// A full assertion cache is an error for clientauth to answer as the
// server's failure, never a replay.
func TestAssertionReplayFullIsAnErrorNotAReplay(t *testing.T) {
	var logs bytes.Buffer
	c := replay.New(64, nil) // one key per shard
	for i := 0; c.Len() < 64; i++ {
		c.Claim("filler-"+strconv.Itoa(i), time.Now().Add(time.Hour))
	}
	ar := assertionReplay{c: c, full: &replayFullLog{log: slog.New(slog.NewJSONHandler(&logs, nil)), cache: "client_assertion"}}
	fresh, err := ar.Claim(context.Background(), "svc", "jti-1", time.Now().Add(time.Minute))
	if fresh || !errors.Is(err, replay.ErrFull) {
		t.Fatalf("Claim on a full cache = (%v, %v), want (false, an error wrapping replay.ErrFull)", fresh, err)
	}
	if !strings.Contains(logs.String(), `"cache":"client_assertion"`) {
		t.Errorf("a full assertion cache was not logged: %q", logs.String())
	}
}

// A full cache is logged at once, then at most once a minute while it
// stays full, with the number of refusals since the last line: not once
// per refused request.
func TestReplayFullLoggedOncePerBurst(t *testing.T) {
	var logs bytes.Buffer
	clk := &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	l := &replayFullLog{log: slog.New(slog.NewJSONHandler(&logs, nil)), cache: "dpop_proof", now: clk.now}
	lines := func() []string { return strings.Split(strings.TrimSpace(logs.String()), "\n") }

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 125 {
				l.note(replay.ErrFull)
			}
		})
	}
	wg.Wait()
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], `"refused":1,`) || !strings.Contains(got[0], "replay cache is full") ||
		!strings.Contains(got[0], `"cache":"dpop_proof"`) || !strings.Contains(got[0], `"level":"ERROR"`) {
		t.Fatalf("after 1000 refusals in one burst: %d lines, the first %q; want one error line for the first refusal", len(got), got[0])
	}

	clk.add(replayFullLogEvery - time.Second)
	l.note(replay.ErrFull)
	if n := len(lines()); n != 1 {
		t.Fatalf("a refusal within the minute logged again: %d lines", n)
	}
	clk.add(time.Second)
	l.note(replay.ErrFull)
	got := lines()
	if len(got) != 2 || !strings.Contains(got[1], `"refused":1001,`) {
		t.Fatalf("a minute on: %d lines, the last %q; want a second line counting the 1001 refusals since the first", len(got), got[len(got)-1])
	}
}
