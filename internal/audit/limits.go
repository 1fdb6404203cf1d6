package audit

import "time"

// Bounds and defaults, each with its reason.
const (
	// DefaultQueueSize bounds the events waiting for the batcher. A queued
	// event is a store.AuditEvent value (about 280 bytes plus its strings), so
	// a full queue holds about 18 MiB; the memory is taken only while a
	// backlog lasts (see queue). At 10,000 decisions a second it rides out
	// about six seconds of a stalled sink.
	DefaultQueueSize = 65536

	// DefaultBatchSize is the most events handed to a sink in one Write: one
	// SQLite transaction of 256 rows amortises the commit without holding
	// the single write connection for long.
	DefaultBatchSize = 256

	// DefaultFlushEvery bounds how long a recorded event waits for its batch
	// to fill before it is written anyway.
	DefaultFlushEvery = 200 * time.Millisecond

	// DefaultMaxRetries is how many times a failed sink write is retried
	// before the batch is given up (fail open) or the Writer starts refusing
	// events (fail closed).
	DefaultMaxRetries = 3

	// DefaultRetryBackoff is the wait before the first retry; it doubles on
	// each retry up to maxRetryBackoff. With the defaults a dead sink costs
	// 0.1+0.2+0.4 s per batch, which also bounds its log lines.
	DefaultRetryBackoff = 100 * time.Millisecond

	// maxRetryBackoff caps the doubling: a fail-closed Writer retries a
	// dead sink forever, and should notice its recovery within seconds.
	maxRetryBackoff = 5 * time.Second

	// dropWarnEvery rate-limits the "audit events dropped" warning: a full
	// queue under load drops thousands of events a second, and one line a
	// second with the count says as much without flooding the log.
	dropWarnEvery = time.Second

	// maxRetainedBuffer bounds the JSONL encode buffer kept between
	// batches: a batch of unusually large events should not pin its memory
	// for good. 1 MiB holds a default batch of typical events several times.
	maxRetainedBuffer = 1 << 20
)
