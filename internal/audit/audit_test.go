package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
)

var epoch = time.Date(2031, time.March, 14, 15, 9, 26, 535897932, time.UTC)

// waitLimit bounds every wait on a channel: a hang fails the test instead of
// timing out the whole run. It is never slept through on success.
const waitLimit = 10 * time.Second

func ev(i int) store.AuditEvent {
	return store.AuditEvent{
		Time: epoch.Add(time.Duration(i)), RequestID: fmt.Sprintf("r%d", i), ClientID: "c1", Route: "invoices",
		Method: "GET", Decision: "allow", Reason: "ok", Status: 200,
	}
}

func reqIDs(evs []store.AuditEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.RequestID
	}
	return out
}

func seq(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("r%d", i))
	}
	return out
}

// recSink records every batch it accepts. fail, when set, decides each
// call's outcome (call counts from 1) and may block.
type recSink struct {
	fail func(ctx context.Context, call int) error

	mu      sync.Mutex
	calls   int
	batches [][]store.AuditEvent
	ch      chan []store.AuditEvent // when set, every accepted batch is sent here too
}

func newRecSink() *recSink { return &recSink{ch: make(chan []store.AuditEvent, 64)} }

func (s *recSink) Write(ctx context.Context, evs []store.AuditEvent) error {
	s.mu.Lock()
	s.calls++
	call := s.calls
	s.mu.Unlock()
	if s.fail != nil {
		if err := s.fail(ctx, call); err != nil {
			return err
		}
	}
	cp := slices.Clone(evs)
	s.mu.Lock()
	s.batches = append(s.batches, cp)
	s.mu.Unlock()
	if s.ch != nil {
		s.ch <- cp
	}
	return nil
}

func (s *recSink) all() []store.AuditEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.AuditEvent
	for _, b := range s.batches {
		out = append(out, b...)
	}
	return out
}

func (s *recSink) sizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, b := range s.batches {
		out = append(out, len(b))
	}
	return out
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatal("timed out waiting")
		panic("unreachable")
	}
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// lines returns the attributes of every record with message msg.
func (h *logRecorder) lines(msg string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, r := range h.recs {
		if r.Message != msg {
			continue
		}
		m := map[string]any{}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
		out = append(out, m)
	}
	return out
}

// clock is a settable fake clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock                   { c := &clock{}; c.ns.Store(epoch.UnixNano()); return c }
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func closeOK(t *testing.T, w *Writer)    { t.Helper(); mustClose(t, w, t.Context()) }
func mustClose(t *testing.T, w *Writer, ctx context.Context) {
	t.Helper()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func checkStats(t *testing.T, w *Writer, want Stats) {
	t.Helper()
	if got := w.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestBatchesArriveInOrder(t *testing.T) {
	sink := newRecSink()
	w := New(Config{BatchSize: 4, FlushEvery: time.Hour, Sinks: []Sink{sink}})
	w.Start(t.Context())
	for i := range 10 {
		if !w.Record(ev(i)) {
			t.Fatalf("Record(%d) refused", i)
		}
	}
	// A full batch goes out at once; FlushEvery (an hour) plays no part.
	if got := reqIDs(recv(t, sink.ch)); !slices.Equal(got, seq(0, 4)) {
		t.Errorf("first batch %v, want %v", got, seq(0, 4))
	}
	if got := reqIDs(recv(t, sink.ch)); !slices.Equal(got, seq(4, 8)) {
		t.Errorf("second batch %v, want %v", got, seq(4, 8))
	}
	closeOK(t, w)
	if got := sink.sizes(); !slices.Equal(got, []int{4, 4, 2}) {
		t.Errorf("batch sizes %v, want [4 4 2]", got)
	}
	if got := reqIDs(sink.all()); !slices.Equal(got, seq(0, 10)) {
		t.Errorf("events %v, want %v", got, seq(0, 10))
	}
	checkStats(t, w, Stats{Written: 10})
}

func TestPartialBatchFlushed(t *testing.T) {
	sink := newRecSink()
	w := New(Config{FlushEvery: time.Millisecond, Sinks: []Sink{sink}})
	w.Start(t.Context())
	defer closeOK(t, w)
	w.Record(ev(1))
	if got := reqIDs(recv(t, sink.ch)); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("flushed batch %v, want [r1]", got)
	}
}

func TestRecordStampsZeroTime(t *testing.T) {
	clk := newClock()
	sink := newRecSink()
	w := New(Config{Sinks: []Sink{sink}, Now: clk.Now})
	e := ev(1)
	e.Time = time.Time{}
	w.Record(e)
	w.Record(ev(2))
	closeOK(t, w)
	got := sink.all()
	if !got[0].Time.Equal(clk.Now()) || !got[1].Time.Equal(ev(2).Time) {
		t.Errorf("times %v, %v; want the clock's %v, then the event's own %v", got[0].Time, got[1].Time, clk.Now(), ev(2).Time)
	}
}

func TestQueueFullDropsCountedAndWarnedOnce(t *testing.T) {
	clk := newClock()
	logs := &logRecorder{}
	sink := newRecSink()
	// Not started: nothing drains the queue until Close.
	w := New(Config{QueueSize: 4, Sinks: []Sink{sink}, Log: slog.New(logs), Now: clk.Now})
	for i := range 4 {
		if !w.Record(ev(i)) {
			t.Fatalf("Record(%d) refused with room in the queue", i)
		}
	}
	if w.Accepting() {
		t.Error("Accepting with a full queue")
	}
	for i := range 1000 {
		if w.Record(ev(100 + i)) {
			t.Fatal("Record accepted an event into a full queue")
		}
	}
	checkStats(t, w, Stats{Queued: 4, Dropped: 1000})
	warns := logs.lines("audit events dropped")
	if len(warns) != 1 {
		t.Fatalf("%d drop warnings for 1000 drops within a second, want 1", len(warns))
	}
	if w := warns[0]; w[attrDropped] != uint64(1) || w[attrReason] != reasonQueueFull {
		t.Errorf("first warning %v, want dropped=1 reason=%s", w, reasonQueueFull)
	}

	clk.Advance(dropWarnEvery)
	w.Record(ev(2000))
	warns = logs.lines("audit events dropped")
	if len(warns) != 2 {
		t.Fatalf("%d drop warnings after a second passed, want 2", len(warns))
	}
	if w := warns[1]; w[attrDropped] != uint64(1000) || w[attrDroppedTotal] != uint64(1001) {
		t.Errorf("second warning %v, want dropped=1000 dropped_total=1001 (every drop since the first warning)", w)
	}

	closeOK(t, w)
	if got := reqIDs(sink.all()); !slices.Equal(got, seq(0, 4)) {
		t.Errorf("written %v, want the four queued events %v", got, seq(0, 4))
	}
	checkStats(t, w, Stats{Written: 4, Dropped: 1001})
}

// TestFailClosed: a fail-closed Writer whose sink exhausts its retries
// refuses events (Accepting and Record false) and keeps retrying the batch
// instead of dropping it; when the sink recovers, the batch is written and
// events are accepted again.
func TestFailClosed(t *testing.T) {
	const maxRetries = 2
	entered, release := make(chan struct{}), make(chan struct{})
	sink := newRecSink()
	sink.fail = func(_ context.Context, call int) error {
		switch {
		case call <= maxRetries+1:
			return errors.New("disk full")
		case call == maxRetries+2: // the first retry past the limit
			close(entered)
			<-release
		}
		return nil
	}
	settled := make(chan struct{}, 8)
	logs := &logRecorder{}
	w := New(Config{FailClosed: true, MaxRetries: maxRetries, RetryBackoff: time.Microsecond, FlushEvery: time.Millisecond,
		BatchSize: 1, Sinks: []Sink{sink}, Log: slog.New(logs)})
	w.settled = func() { settled <- struct{}{} }
	w.Start(t.Context())

	if !w.Record(ev(1)) {
		t.Fatal("Record refused before any failure")
	}
	recv(t, entered)
	if !w.Stats().Failing || w.Accepting() {
		t.Errorf("after %d failed attempts: Failing %t, Accepting %t; want true, false", maxRetries+1, w.Stats().Failing, w.Accepting())
	}
	if w.Record(ev(2)) {
		t.Error("Record accepted an event while the sinks are failing")
	}
	checkStats(t, w, Stats{Dropped: 1, SinkErrors: maxRetries + 1, Failing: true})
	if n := len(logs.lines("audit sinks failing; refusing events until a write succeeds")); n != 1 {
		t.Errorf("%d 'sinks failing' errors logged, want 1", n)
	}

	close(release)
	recv(t, settled)
	if !w.Accepting() || w.Stats().Failing {
		t.Error("not accepting after the sink recovered")
	}
	if !w.Record(ev(3)) {
		t.Error("Record refused after the sink recovered")
	}
	closeOK(t, w)
	if got := reqIDs(sink.all()); !slices.Equal(got, []string{"r1", "r3"}) {
		t.Errorf("written %v, want [r1 r3]: the retried batch is kept, not dropped", got)
	}
	checkStats(t, w, Stats{Written: 2, Dropped: 1, SinkErrors: maxRetries + 1})
}

// TestFailOpenSinkErrorRetriesThenDrops: a failing sink is retried, then the
// batch is counted as dropped; a healthy second sink gets it exactly once.
func TestFailOpenSinkErrorRetriesThenDrops(t *testing.T) {
	const maxRetries = 2
	var broken atomic.Bool
	broken.Store(true)
	bad := newRecSink()
	bad.fail = func(context.Context, int) error {
		if broken.Load() {
			return errors.New("connection refused")
		}
		return nil
	}
	good := newRecSink()
	settled := make(chan struct{}, 8)
	logs := &logRecorder{}
	w := New(Config{MaxRetries: maxRetries, RetryBackoff: time.Microsecond, BatchSize: 3, FlushEvery: time.Hour,
		Sinks: []Sink{bad, good}, Log: slog.New(logs)})
	w.settled = func() { settled <- struct{}{} }
	w.Start(t.Context())
	for i := range 3 {
		w.Record(ev(i))
	}
	recv(t, settled)

	checkStats(t, w, Stats{Dropped: 3, SinkErrors: maxRetries + 1})
	if !w.Accepting() {
		t.Error("a fail-open Writer stopped accepting after a sink failure")
	}
	if bad.calls != maxRetries+1 {
		t.Errorf("failing sink called %d times, want %d (1 + MaxRetries)", bad.calls, maxRetries+1)
	}
	if got := good.sizes(); !slices.Equal(got, []int{3}) {
		t.Errorf("healthy sink got batches %v, want one of 3 (no duplicates from retries)", got)
	}
	if n := len(logs.lines("audit sink write failed")); n != maxRetries+1 {
		t.Errorf("%d sink failures logged, want %d", n, maxRetries+1)
	}
	if n := len(logs.lines("audit batch dropped after retries")); n != 1 {
		t.Errorf("%d batch drops logged, want 1", n)
	}
	warns := logs.lines("audit events dropped")
	if len(warns) != 1 || warns[0][attrDropped] != uint64(3) || warns[0][attrReason] != reasonSinkFailed {
		t.Errorf("drop warnings %v, want one with dropped=3 reason=%s", warns, reasonSinkFailed)
	}

	broken.Store(false)
	for i := 3; i < 6; i++ {
		w.Record(ev(i))
	}
	recv(t, settled)
	closeOK(t, w)
	checkStats(t, w, Stats{Written: 3, Dropped: 3, SinkErrors: maxRetries + 1})
	if got := reqIDs(bad.all()); !slices.Equal(got, seq(3, 6)) {
		t.Errorf("recovered sink got %v, want %v", got, seq(3, 6))
	}
}

func TestCloseDrains(t *testing.T) {
	t.Run("started", func(t *testing.T) {
		sink := newRecSink()
		sink.ch = nil
		w := New(Config{BatchSize: 1000, FlushEvery: time.Hour, Sinks: []Sink{sink}})
		w.Start(t.Context())
		for i := range 500 {
			w.Record(ev(i))
		}
		closeOK(t, w)
		if got := reqIDs(sink.all()); !slices.Equal(got, seq(0, 500)) {
			t.Errorf("Close wrote %d events, want all 500 in order", len(got))
		}
		checkStats(t, w, Stats{Written: 500})
	})
	t.Run("never started", func(t *testing.T) {
		sink := newRecSink()
		sink.ch = nil
		w := New(Config{BatchSize: 256, Sinks: []Sink{sink}})
		for i := range 600 {
			w.Record(ev(i))
		}
		closeOK(t, w)
		if got := sink.sizes(); !slices.Equal(got, []int{256, 256, 88}) {
			t.Errorf("batch sizes %v, want [256 256 88]", got)
		}
		if got := reqIDs(sink.all()); !slices.Equal(got, seq(0, 600)) {
			t.Errorf("Close wrote %d events, want all 600 in order", len(got))
		}
	})
	t.Run("after Start's context ended", func(t *testing.T) {
		sink := newRecSink()
		sink.ch = nil
		w := New(Config{BatchSize: 1000, FlushEvery: time.Hour, Sinks: []Sink{sink}})
		ctx, cancel := context.WithCancel(t.Context())
		w.Start(ctx)
		for i := range 5 {
			w.Record(ev(i))
		}
		cancel()
		recv(t, w.done)
		for i := 5; i < 10; i++ {
			if !w.Record(ev(i)) {
				t.Fatal("Record refused while the batcher is stopped but the Writer open")
			}
		}
		closeOK(t, w)
		if got := reqIDs(sink.all()); !slices.Equal(got, seq(0, 10)) {
			t.Errorf("written %v, want %v", got, seq(0, 10))
		}
	})
	t.Run("record after close", func(t *testing.T) {
		logs := &logRecorder{}
		w := New(Config{Sinks: []Sink{newRecSink()}, Log: slog.New(logs)})
		w.Start(t.Context())
		closeOK(t, w)
		if w.Record(ev(1)) || w.Accepting() {
			t.Error("closed Writer accepts events")
		}
		checkStats(t, w, Stats{Dropped: 1})
		if warns := logs.lines("audit events dropped"); len(warns) != 1 || warns[0][attrReason] != reasonClosed {
			t.Errorf("warnings %v, want one with reason %s", warns, reasonClosed)
		}
		if err := w.Close(t.Context()); err != nil {
			t.Errorf("second Close: %v", err)
		}
		w.Start(t.Context()) // after Close: does nothing
		if w.Record(ev(2)) {
			t.Error("Start after Close reopened the Writer")
		}
	})
}

// TestCloseBoundedByContext: a sink stuck in a write cannot hold Close past
// its context, and every event it did not write is counted as dropped.
func TestCloseBoundedByContext(t *testing.T) {
	entered := make(chan struct{})
	var once sync.Once
	sink := newRecSink()
	sink.fail = func(ctx context.Context, _ int) error {
		once.Do(func() { close(entered) })
		<-ctx.Done() // honours cancellation, as sinks must
		return ctx.Err()
	}
	w := New(Config{BatchSize: 2, FlushEvery: time.Hour, Sinks: []Sink{sink}})
	w.Start(t.Context())
	for i := range 5 {
		w.Record(ev(i))
	}
	recv(t, entered)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := w.Close(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Close: %v, want context.Canceled", err)
	}
	recv(t, w.done)
	if s := w.Stats(); s.Written != 0 || s.Dropped != 5 || s.Queued != 0 {
		t.Errorf("Stats = %+v, want all 5 events dropped and none written or queued", s)
	}
}

func TestNoSinksDropsEverything(t *testing.T) {
	w := New(Config{})
	w.Record(ev(1))
	closeOK(t, w)
	checkStats(t, w, Stats{Dropped: 1})
}

func TestNewPanicsOnNilSink(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New accepted a nil Sink")
		}
	}()
	New(Config{Sinks: []Sink{nil}})
}

func TestConcurrentRecord(t *testing.T) {
	const producers, each = 8, 1000
	sink := newRecSink()
	sink.ch = nil
	w := New(Config{FlushEvery: time.Millisecond, Sinks: []Sink{sink}})
	w.Start(t.Context())
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				e := ev(i)
				e.ClientID = fmt.Sprintf("p%d", p)
				if !w.Record(e) {
					t.Errorf("producer %d: Record(%d) refused", p, i)
					return
				}
				_ = w.Accepting()
				_ = w.Stats()
			}
		})
	}
	wg.Wait()
	closeOK(t, w)
	got := sink.all()
	if len(got) != producers*each {
		t.Fatalf("written %d events, want %d", len(got), producers*each)
	}
	// Each producer's events keep their order.
	next := map[string]int{}
	for _, e := range got {
		if want := fmt.Sprintf("r%d", next[e.ClientID]); e.RequestID != want {
			t.Fatalf("producer %s: got %s, want %s (order lost)", e.ClientID, e.RequestID, want)
		}
		next[e.ClientID]++
	}
	checkStats(t, w, Stats{Written: producers * each})
}

type discardSink struct{}

func (discardSink) Write(context.Context, []store.AuditEvent) error { return nil }

// BenchmarkRecord measures the request path's cost of auditing: Record from
// many goroutines while the batcher drains to a sink that costs nothing.
func BenchmarkRecord(b *testing.B) {
	w := New(Config{Sinks: []Sink{discardSink{}}})
	w.Start(context.Background())
	e := ev(1)
	e.Scopes = []string{"invoices:read"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Record(e)
		}
	})
	b.StopTimer()
	if err := w.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	s := w.Stats()
	b.ReportMetric(float64(s.Dropped)/float64(b.N), "dropped/op")
}

// BenchmarkRecordQueueFull measures the drop path alone: the queue is full,
// so every Record counts a drop and checks whether to warn.
func BenchmarkRecordQueueFull(b *testing.B) {
	w := New(Config{QueueSize: 1, Sinks: []Sink{discardSink{}}})
	w.Record(ev(0))
	e := ev(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if w.Record(e) {
				b.Error("Record accepted into a full queue")
			}
		}
	})
}

// BenchmarkRecordEnqueue measures the accepted path alone, on one goroutine,
// as steady traffic sees it: the batcher's part is played off the clock,
// taking a batch whenever one is queued.
func BenchmarkRecordEnqueue(b *testing.B) {
	w := New(Config{Sinks: []Sink{discardSink{}}})
	e := ev(1)
	var batch []store.AuditEvent
	b.ReportAllocs()
	for b.Loop() {
		if !w.Record(e) {
			b.Fatal("Record refused with room in the queue")
		}
		if w.queue.len() == DefaultBatchSize {
			b.StopTimer()
			batch = w.queue.take(batch[:0], DefaultBatchSize)
			b.StartTimer()
		}
	}
}
