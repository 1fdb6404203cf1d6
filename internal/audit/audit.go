// Package audit carries gateway decisions from the request path to durable
// sinks: a bounded queue that Record fills without blocking, one batcher
// goroutine that hands batches to every sink in order, and counts of what
// was written and what was dropped.
//
// It must not decide anything about a request (the gateway does) and must
// never block one: when the queue is full the event is dropped, counted and
// warned about, and Record's result tells a fail-closed caller to refuse.
// Drops are never silent.
//
// Every event Record is given ends up counted exactly once, as Written (every
// sink accepted it) or Dropped (refused by Record, given up after retries, or
// left over when Close ran out of time); until then it is Queued or in the
// batcher's hands.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// Log attribute keys.
const (
	attrDropped      = "dropped"
	attrDroppedTotal = "dropped_total"
	attrReason       = "reason"
	attrSink         = "sink"
	attrAttempt      = "attempt"
	attrEvents       = "events"
	attrError        = "error"
)

// Drop reasons, as logged.
const (
	reasonQueueFull    = "queue_full"
	reasonClosed       = "closed"
	reasonSinksFailing = "sinks_failing"
	reasonSinkFailed   = "sink_failed"
	reasonNoSink       = "no_sink"
	reasonCloseTimeout = "close_timeout"
)

// Sink stores batches of events. Write is called by one goroutine at a time,
// with events in the order they were recorded. It must not retain evs after
// it returns: the Writer reuses the slice. An error makes the Writer retry
// the whole batch, so a sink that can fail part-way may see an event twice.
type Sink interface {
	Write(ctx context.Context, evs []store.AuditEvent) error
}

// Config configures New. The zero value is usable: every zero field takes
// its default, and with no Sinks every event is dropped and counted.
type Config struct {
	// QueueSize bounds the events waiting to be written. Default
	// DefaultQueueSize.
	QueueSize int
	// BatchSize is the most events per sink Write. Default DefaultBatchSize.
	BatchSize int
	// FlushEvery is how often a partial batch is written. Default
	// DefaultFlushEvery.
	FlushEvery time.Duration
	// FailClosed makes the Writer refuse events (Record and Accepting report
	// false) while its sinks are failing, and retry a failed batch until it
	// is written instead of dropping it. See Record.
	FailClosed bool
	// Sinks receive every batch, in this order. A nil Sink is a programming
	// error and New panics.
	Sinks []Sink
	// MaxRetries is how many times a failed sink write is retried. Zero means
	// DefaultMaxRetries; a negative value means no retries.
	MaxRetries int
	// RetryBackoff is the wait before the first retry, doubled on each
	// retry. Default DefaultRetryBackoff.
	RetryBackoff time.Duration
	// Log receives drop warnings and sink errors. Default: discard.
	Log *slog.Logger
	// Now stamps events recorded with a zero Time and paces the drop
	// warning. Default time.Now.
	Now func() time.Time
}

// Stats is a snapshot of a Writer's counters.
type Stats struct {
	// Queued is the current queue depth.
	Queued int
	// Dropped counts events that will never reach every sink.
	Dropped uint64
	// Written counts events every sink accepted.
	Written uint64
	// SinkErrors counts failed sink writes, retries included.
	SinkErrors uint64
	// Failing reports a fail-closed Writer refusing events because a batch
	// has exhausted its retries and is not written yet.
	Failing bool
}

// errStopped reports that Close interrupted the batcher.
var errStopped = errors.New("audit: writer stopping")

// Writer queues audit events and writes them to its sinks in batches. It is
// safe for concurrent use. Create it with New, run it with Start and stop it
// with Close; the zero value is not usable.
type Writer struct {
	sinks        []Sink
	batchSize    int
	flushEvery   time.Duration
	failClosed   bool
	maxRetries   int
	retryBackoff time.Duration
	log          *slog.Logger
	now          func() time.Time

	queue *queue

	// mu makes sending and closing mutually exclusive: Record holds it
	// shared while it sends, Close exclusively while it sets closed. Once
	// closed is set, no event can enter the queue behind Close's drain.
	mu     sync.RWMutex
	closed atomic.Bool

	// failing is set, in fail-closed mode only, while a batch that has
	// exhausted its retries is still being retried.
	failing atomic.Bool

	life      sync.Mutex // orders Start against Close
	started   bool
	cancelRun context.CancelFunc // cancels the batcher's sink writes
	// full wakes the batcher when a batch's worth is queued. The batcher
	// does not receive from the queue event by event: that woke it (and
	// the scheduler) once per request, a measurable share of the gateway's
	// CPU and its tail latency at moderate load.
	full          chan struct{}
	fullThreshold int
	stop          chan struct{} // closed by Close: the batcher hands over and returns
	done          chan struct{} // closed when the batcher has returned

	// hand passes the batcher's unsettled batch to Close. If Close gave up
	// waiting (abandoned), the batcher counts it as dropped instead.
	hand      sync.Mutex
	held      batch
	abandoned bool

	dropped    atomic.Uint64
	written    atomic.Uint64
	sinkErrors atomic.Uint64
	warned     atomic.Uint64 // dropped as of the last warning
	lastWarn   atomic.Int64  // Unix nanoseconds of the last warning; 0: never

	// settled, when set (by tests), runs on the batcher after each batch is
	// written or given up.
	settled func()
}

// batch is a run of events and the sinks that have accepted it, so a retry
// goes only to the sinks that failed.
type batch struct {
	evs  []store.AuditEvent
	done []bool
}

func (b *batch) progress() bool {
	for _, d := range b.done {
		if d {
			return true
		}
	}
	return false
}

func (b *batch) reset() {
	clear(b.evs) // drop string references so the GC can free them
	b.evs = b.evs[:0]
	clear(b.done)
}

// New returns a Writer for cfg with defaults filled in. It starts nothing:
// call Start to run the batcher. It panics if cfg.Sinks holds a nil Sink.
func New(cfg Config) *Writer {
	for i, s := range cfg.Sinks {
		if s == nil {
			panic(fmt.Sprintf("audit: New: Sinks[%d] is nil", i))
		}
	}
	w := &Writer{
		sinks:        append([]Sink(nil), cfg.Sinks...),
		batchSize:    cfg.BatchSize,
		flushEvery:   cfg.FlushEvery,
		failClosed:   cfg.FailClosed,
		maxRetries:   cfg.MaxRetries,
		retryBackoff: cfg.RetryBackoff,
		log:          cfg.Log,
		now:          cfg.Now,
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	queueSize := cfg.QueueSize
	if queueSize <= 0 {
		queueSize = DefaultQueueSize
	}
	if w.batchSize <= 0 {
		w.batchSize = DefaultBatchSize
	}
	if w.flushEvery <= 0 {
		w.flushEvery = DefaultFlushEvery
	}
	switch {
	case w.maxRetries == 0:
		w.maxRetries = DefaultMaxRetries
	case w.maxRetries < 0:
		w.maxRetries = 0
	}
	if w.retryBackoff <= 0 {
		w.retryBackoff = DefaultRetryBackoff
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.now == nil {
		w.now = time.Now
	}
	w.queue = newQueue(queueSize)
	w.full = make(chan struct{}, 1)
	w.fullThreshold = max(1, min(w.batchSize, queueSize/2))
	return w
}

func (w *Writer) newBatch() batch {
	return batch{evs: make([]store.AuditEvent, 0, w.batchSize), done: make([]bool, len(w.sinks))}
}

// Start runs the batcher in a new goroutine. ctx is passed to sink writes;
// when it is done the batcher stops, leaving what it held and what is queued
// for Close to write. Start after Start or after Close does nothing. Without
// Start, events stay queued until Close writes them.
func (w *Writer) Start(ctx context.Context) {
	w.life.Lock()
	defer w.life.Unlock()
	if w.started || w.closed.Load() {
		return
	}
	w.started = true
	ctx, w.cancelRun = context.WithCancel(ctx)
	go w.run(ctx)
}

// Record enqueues ev without blocking (it waits only for the instant Close
// takes to mark the Writer closed); a zero ev.Time is set to Now. It
// returns true when the event is queued: it will be written, or counted as
// dropped if the sinks give up on it.
//
// It returns false, and counts the event as dropped, when the queue is full,
// the Writer is closed, or (FailClosed only) the sinks are failing. The
// first drop, and then at most one drop a second, logs a warning with the
// count since the last one.
//
// What false asks of the caller depends on the mode. Fail open (the
// default): nothing; the request proceeds unaudited and the drop is counted.
// FailClosed: the request must be refused, and must not have had effects
// yet. A gateway therefore checks Accepting before it forwards, and records
// after; if Record then still returns false (the queue filled in between),
// the drop is counted and logged like any other.
func (w *Writer) Record(ev store.AuditEvent) bool {
	if ev.Time.IsZero() {
		ev.Time = w.now()
	}
	reason := reasonQueueFull
	w.mu.RLock()
	switch {
	case w.closed.Load():
		reason = reasonClosed
	case w.failClosed && w.failing.Load():
		reason = reasonSinksFailing
	default:
		if n := w.queue.push(ev); n > 0 {
			w.mu.RUnlock()
			if n >= w.fullThreshold {
				select {
				case w.full <- struct{}{}:
				default:
				}
			}
			return true
		}
	}
	w.mu.RUnlock()
	w.drop(1, reason)
	return false
}

// Accepting reports whether Record would queue an event now: the Writer is
// open, the queue has room, and (FailClosed only) the sinks are not failing.
// It is a snapshot; Record may still refuse a moment later.
func (w *Writer) Accepting() bool {
	return !w.closed.Load() && !(w.failClosed && w.failing.Load()) && w.queue.len() < w.queue.limit
}

// Stats returns the current counters. They are read one by one, so under
// load they need not add up at a single instant.
func (w *Writer) Stats() Stats {
	return Stats{
		Queued:     w.queue.len(),
		Dropped:    w.dropped.Load(),
		Written:    w.written.Load(),
		SinkErrors: w.sinkErrors.Load(),
		Failing:    w.failing.Load(),
	}
}

// Close stops accepting events (Record returns false from now on), waits for
// the batcher to hand over, and writes everything still queued to the sinks,
// retrying as usual. ctx bounds all of it: when ctx ends first, Close cancels
// the batcher's sink write, counts every unwritten event as dropped, and
// returns an error wrapping ctx.Err(). A sink that ignores its context can
// keep the batcher running after Close returns; what it then fails to write
// is still counted. Close does not close the sinks. Calls after the first
// return nil at once.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	already := w.closed.Swap(true)
	w.mu.Unlock()
	if already {
		return nil
	}
	w.life.Lock()
	started := w.started
	w.life.Unlock()
	close(w.stop)

	b := w.newBatch()
	if started {
		select {
		case <-w.done:
			w.cancelRun()
			w.hand.Lock()
			b, w.held = w.held, batch{}
			w.hand.Unlock()
		case <-ctx.Done():
			w.cancelRun()
			n := w.abandon()
			return fmt.Errorf("audit: close: %w: %d events not written", ctx.Err(), n)
		}
	}
	return w.drain(ctx, b)
}

// abandon takes back what the batcher will not write once Close has stopped
// waiting for it, counts it as dropped, and returns the count.
func (w *Writer) abandon() int {
	w.hand.Lock()
	w.abandoned = true
	n := len(w.held.evs)
	w.held = batch{}
	w.hand.Unlock()
	n += w.discardQueue()
	if n > 0 {
		w.drop(n, reasonCloseTimeout)
	}
	w.warnDrops("", true)
	return n
}

// discardQueue empties the queue and returns how many events it held.
func (w *Writer) discardQueue() int { return w.queue.discard() }

// drain writes b (what the batcher handed over) and then the whole queue.
// Only Close calls it, after the batcher has returned, so nothing else reads
// the queue and, closed being set, nothing adds to it.
func (w *Writer) drain(ctx context.Context, b batch) error {
	if b.evs == nil {
		b = w.newBatch()
	}
	for {
		// A batch some sinks already accepted goes out as it is; topping it
		// up would give those sinks events they never see.
		if !b.progress() {
			w.fill(&b)
		}
		if len(b.evs) == 0 {
			break
		}
		if err := w.deliver(ctx, &b, nil); err != nil {
			n := len(b.evs) + w.discardQueue()
			w.drop(n, reasonCloseTimeout)
			w.warnDrops(reasonCloseTimeout, true)
			return fmt.Errorf("audit: close: %w: %d events not written", err, n)
		}
		b.reset()
	}
	w.warnDrops("", true)
	return nil
}

// fill moves queued events into b without waiting, up to the batch size.
func (w *Writer) fill(b *batch) {
	b.evs = w.queue.take(b.evs, w.batchSize-len(b.evs))
}

// run is the batcher: it collects events into batches, writing one when it
// is full or when FlushEvery passes, until Close or ctx stops it.
func (w *Writer) run(ctx context.Context) {
	defer close(w.done)
	tick := time.NewTicker(w.flushEvery)
	defer tick.Stop()
	b := w.newBatch()
	for {
		select {
		case <-w.stop:
			w.handOver(b)
			return
		case <-ctx.Done():
			w.handOver(b)
			return
		case <-w.full:
			w.fill(&b)
			if len(b.evs) == 0 {
				continue
			}
		case <-tick.C:
			w.fill(&b)
			// Drops that stopped arriving still get their warning.
			w.warnDrops("", false)
			if len(b.evs) == 0 {
				continue
			}
		}
		if err := w.deliver(ctx, &b, w.stop); err != nil {
			w.handOver(b)
			return
		}
		b.reset()
		if w.settled != nil {
			w.settled()
		}
		if w.queue.len() >= w.fullThreshold {
			// A backlog built up while this batch was written.
			select {
			case w.full <- struct{}{}:
			default:
			}
		}
	}
}

// handOver leaves the batcher's unsettled batch for Close, or counts it as
// dropped when Close has already given up.
func (w *Writer) handOver(b batch) {
	w.hand.Lock()
	defer w.hand.Unlock()
	if !w.abandoned {
		w.held = b
		return
	}
	if n := len(b.evs); n > 0 {
		w.drop(n, reasonCloseTimeout)
		w.warnDrops(reasonCloseTimeout, true)
	}
}

// deliver writes b to every sink that has not accepted it yet, retrying
// failures with doubling backoff. It returns nil once b is settled: written
// to every sink, or (fail open) given up after the retries and counted as
// dropped. Fail closed, it keeps retrying and sets failing meanwhile. It
// returns an error, leaving b unsettled, when ctx ends or stop is closed.
func (w *Writer) deliver(ctx context.Context, b *batch, stop <-chan struct{}) error {
	n := len(b.evs)
	if len(w.sinks) == 0 {
		w.drop(n, reasonNoSink)
		return nil
	}
	backoff := w.retryBackoff
	for attempt := 1; ; attempt++ {
		ok := true
		for i, s := range w.sinks {
			if b.done[i] {
				continue
			}
			if err := s.Write(ctx, b.evs); err != nil {
				if ctx.Err() != nil {
					// Shutting down, not a sink fault.
					return ctx.Err()
				}
				ok = false
				w.sinkErrors.Add(1)
				w.log.Warn("audit sink write failed", attrSink, fmt.Sprintf("%d:%T", i, s),
					attrAttempt, attempt, attrEvents, n, attrError, err)
				continue
			}
			b.done[i] = true
		}
		if ok {
			w.written.Add(uint64(n))
			if w.failing.Swap(false) {
				w.log.Info("audit sinks recovered; accepting events again")
			}
			return nil
		}
		if attempt > w.maxRetries {
			if !w.failClosed {
				w.log.Error("audit batch dropped after retries", attrEvents, n, attrAttempt, attempt)
				w.drop(n, reasonSinkFailed)
				return nil
			}
			if !w.failing.Swap(true) {
				w.log.Error("audit sinks failing; refusing events until a write succeeds", attrEvents, n, attrAttempt, attempt)
			}
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-stop:
			t.Stop()
			return errStopped
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// drop counts n dropped events and warns, rate-limited.
func (w *Writer) drop(n int, reason string) {
	w.dropped.Add(uint64(n))
	w.warnDrops(reason, false)
}

// warnDrops logs the drops since the last warning, at most once per
// dropWarnEvery unless force is set. reason is the latest drop's, or ""
// for a catch-up line covering earlier drops. Concurrent callers race for one
// warning through the compare-and-swaps; losers leave their drops to the
// next warning, so every drop is reported, just not on its own line.
func (w *Writer) warnDrops(reason string, force bool) {
	total, last := w.dropped.Load(), w.warned.Load()
	if total <= last {
		return
	}
	now := w.now().UnixNano()
	prev := w.lastWarn.Load()
	if !force && prev != 0 && now-prev < int64(dropWarnEvery) {
		return
	}
	if !w.lastWarn.CompareAndSwap(prev, now) || !w.warned.CompareAndSwap(last, total) {
		return
	}
	if reason == "" {
		w.log.Warn("audit events dropped", attrDropped, total-last, attrDroppedTotal, total)
		return
	}
	w.log.Warn("audit events dropped", attrDropped, total-last, attrDroppedTotal, total, attrReason, reason)
}
