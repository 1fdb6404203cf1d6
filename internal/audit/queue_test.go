package audit

import (
	"strconv"
	"testing"

	"github.com/keybound/keybound/internal/store"
)

// TestQueueOrderAndBound pushes and takes in uneven steps, so the queue
// slides its events to the front and grows in between, and checks that
// every event comes out once, in order, and that the bound holds.
func TestQueueOrderAndBound(t *testing.T) {
	const limit = 100
	q := newQueue(limit)
	next, want := 0, 0
	steps := []struct{ push, take int }{
		{10, 3}, {50, 7}, {60, 60}, {5, 1}, {200, 0}, {0, 150}, {40, 40}, {0, 1000},
	}
	for i, s := range steps {
		for range s.push {
			depth := q.len()
			n := q.push(store.AuditEvent{RequestID: strconv.Itoa(next)})
			switch {
			case depth >= limit && n != 0:
				t.Fatalf("step %d: push into a full queue (depth %d) accepted", i, depth)
			case depth < limit && n != depth+1:
				t.Fatalf("step %d: push at depth %d returned %d, want %d", i, depth, n, depth+1)
			}
			if n > 0 {
				next++
			}
			if c := cap(q.evs); c > max(64, limit) {
				t.Fatalf("step %d: backing array of %d slots for a bound of %d", i, c, limit)
			}
		}
		got := q.take(nil, s.take)
		for _, ev := range got {
			if ev.RequestID != strconv.Itoa(want) {
				t.Fatalf("step %d: took %s, want %d (FIFO order)", i, ev.RequestID, want)
			}
			want++
		}
		if q.len() != next-want {
			t.Fatalf("step %d: len %d, want %d", i, q.len(), next-want)
		}
	}
	if want != next {
		t.Fatalf("took %d of %d pushed events", want, next)
	}
}

// TestQueueGivesBackBacklogMemory: the array a backlog grew is released
// once the queue is empty, and taken slots don't keep events alive.
func TestQueueGivesBackBacklogMemory(t *testing.T) {
	q := newQueue(1 << 16)
	for i := range 10 * keepCap {
		q.push(store.AuditEvent{RequestID: strconv.Itoa(i)})
	}
	got := q.take(nil, keepCap)
	if len(got) != keepCap || q.len() != 9*keepCap {
		t.Fatalf("took %d, %d left; want %d and %d", len(got), q.len(), keepCap, 9*keepCap)
	}
	for i, ev := range q.evs[:q.head] {
		if ev.RequestID != "" {
			t.Fatalf("taken slot %d still holds event %s", i, ev.RequestID)
		}
	}
	if n := q.discard(); n != 9*keepCap {
		t.Fatalf("discard = %d, want %d", n, 9*keepCap)
	}
	if q.len() != 0 || cap(q.evs) != 0 {
		t.Fatalf("after emptying: len %d cap %d, want 0 and 0", q.len(), cap(q.evs))
	}
	// A small backlog keeps its array for the next one.
	q.push(store.AuditEvent{})
	q.take(nil, 1)
	if cap(q.evs) == 0 || cap(q.evs) > keepCap {
		t.Fatalf("cap %d after a one-event round, want 1..%d", cap(q.evs), keepCap)
	}
}

// TestQueueAtBoundReusesArray: while a backlog sits at the bound and the
// batcher takes a batch at a time, new events slide into the same array
// instead of each batch costing a fresh array of the bound's size.
func TestQueueAtBoundReusesArray(t *testing.T) {
	const limit = 1000
	q := newQueue(limit)
	next := 0
	fill := func() {
		for q.push(store.AuditEvent{RequestID: strconv.Itoa(next)}) > 0 {
			next++
		}
	}
	fill()
	arr := &q.evs[:1][0]
	want := 0
	for round := range 5 {
		for _, ev := range q.take(nil, 100) {
			if ev.RequestID != strconv.Itoa(want) {
				t.Fatalf("round %d: took %s, want %d", round, ev.RequestID, want)
			}
			want++
		}
		fill()
		if q.len() != limit {
			t.Fatalf("round %d: depth %d, want %d", round, q.len(), limit)
		}
		if &q.evs[:1][0] != arr {
			t.Fatalf("round %d: a new backing array at the bound", round)
		}
	}
}
