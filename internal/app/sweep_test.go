package app

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestSweepGivesEachTaskItsStartTime: a task that runs after a slow one
// is told the time it starts, not the time the sweep began.
func TestSweepGivesEachTaskItsStartTime(t *testing.T) {
	a := &App{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var slowDone, second time.Time
	a.addSweep("slow", func(context.Context, time.Time) error {
		time.Sleep(50 * time.Millisecond)
		slowDone = time.Now()
		return nil
	})
	a.addSweep("after the slow one", func(_ context.Context, now time.Time) error {
		second = now
		return nil
	})
	a.sweep(t.Context())
	if second.Before(slowDone) {
		t.Errorf("the second task was told %s, before the first one finished at %s", second.Format(time.RFC3339Nano), slowDone.Format(time.RFC3339Nano))
	}
}
