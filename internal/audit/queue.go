package audit

import (
	"sync"
	"sync/atomic"

	"github.com/keybound/keybound/internal/store"
)

// queue is the bounded FIFO between Record and the batcher. Its memory
// follows the backlog instead of the bound: a buffered channel of the
// default 65,536 events is an 18 MiB block of pointer-holding values,
// allocated up front and scanned by the garbage collector in every cycle
// even while it is empty. At a few thousand requests a second that scan
// was most of each cycle's mark work, and the cycles showed in the
// gateway's tail latency. Here the backing array grows with the backlog
// and is given back once the batcher empties it.
type queue struct {
	mu    sync.Mutex
	evs   []store.AuditEvent // evs[head:] are queued, oldest first
	head  int
	limit int
	// depth mirrors len(evs)-head for readers that take no lock
	// (Accepting, Stats).
	depth atomic.Int64
}

// keepCap is the largest backing array an empty queue keeps: a few
// batches, enough for steady traffic without reallocating, small enough
// that its scan costs the collector nothing worth measuring.
const keepCap = 4 * DefaultBatchSize

func newQueue(limit int) *queue { return &queue{limit: limit} }

// push appends ev and returns the new depth, or 0 if the queue is full.
func (q *queue) push(ev store.AuditEvent) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.evs) - q.head
	if n >= q.limit {
		return 0
	}
	if len(q.evs) == cap(q.evs) && (q.head >= n || cap(q.evs) >= q.limit) {
		// At least half the array is taken events, or the array is as
		// large as the bound allows: slide the queued ones to the front
		// instead of growing (amortised, since it needs a head at least
		// as long as what it moves; at the bound a new array of the same
		// size would copy as much and leave the old one, up to 18 MiB,
		// to the collector once per batch while a backlog drains).
		copy(q.evs, q.evs[q.head:])
		clear(q.evs[n:])
		q.evs, q.head = q.evs[:n], 0
	}
	if len(q.evs) == cap(q.evs) {
		// Double (append grows large slices by a quarter, which costs a
		// backlog five copies of every event instead of two), never past
		// the bound, and leave the taken slots behind.
		grown := make([]store.AuditEvent, n, max(64, min(2*cap(q.evs), q.limit)))
		copy(grown, q.evs[q.head:])
		q.evs, q.head = grown, 0
	}
	q.evs = append(q.evs, ev)
	q.depth.Store(int64(n + 1))
	return n + 1
}

// take moves up to max queued events onto dst, oldest first.
func (q *queue) take(dst []store.AuditEvent, max int) []store.AuditEvent {
	if max <= 0 {
		return dst
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	k := min(max, len(q.evs)-q.head)
	taken := q.evs[q.head : q.head+k]
	dst = append(dst, taken...)
	clear(taken) // the strings belong to dst now; don't keep them alive
	q.head += k
	q.settle()
	return dst
}

// discard empties the queue and returns how many events it held.
func (q *queue) discard() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.evs) - q.head
	clear(q.evs[q.head:])
	q.head = len(q.evs)
	q.settle()
	return n
}

// settle resets an emptied queue, giving back an array grown by a backlog,
// and updates depth. q.mu is held.
func (q *queue) settle() {
	if q.head == len(q.evs) {
		q.evs, q.head = q.evs[:0], 0
		if cap(q.evs) > keepCap {
			q.evs = nil
		}
	}
	q.depth.Store(int64(len(q.evs) - q.head))
}

// len is the current depth.
func (q *queue) len() int { return int(q.depth.Load()) }
