package app

import (
	"context"
	"time"

	"github.com/keybound/keybound/internal/review"
)

// governanceActor is the actor of the admin events the sweep writes: the
// one review's own auto-suspensions carry, so every sweep task's events
// read alike.
const governanceActor = review.Actor

// sweepTask is one governance rule applied on a schedule: retiring rotated
// credentials whose overlap ended, suspending identities whose review is
// overdue, sending expiry warnings. Each task is idempotent, so a sweep
// that runs twice, or on two nodes, changes nothing the second time.
type sweepTask struct {
	name string
	run  func(ctx context.Context, now time.Time) error
}

// addSweep registers a task run every governance.sweep_interval, and once
// when serving starts.
func (a *App) addSweep(name string, run func(ctx context.Context, now time.Time) error) {
	a.sweeps = append(a.sweeps, sweepTask{name: name, run: run})
}

// sweepLoop runs the sweep now and then every governance.sweep_interval
// until ctx ends, one sweep at a time: a sweep that overruns the interval
// delays the next instead of overlapping it.
func (a *App) sweepLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.Governance.SweepInterval)
	defer t.Stop()
	for {
		a.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep runs every task once. A failing task is logged and does not stop
// the others; it is retried on the next sweep.
//
// Each task is given the time it starts, not the sweep's: tasks take real
// time (a webhook delivery up to its timeout), and one that leases work to
// this node for a while must count from when it runs, or another node
// would find the lease already over.
func (a *App) sweep(ctx context.Context) {
	for _, t := range a.sweeps {
		if err := t.run(ctx, time.Now()); err != nil && ctx.Err() == nil {
			a.log.Error("governance sweep task failed", "task", t.name, "error", err)
		}
	}
}
