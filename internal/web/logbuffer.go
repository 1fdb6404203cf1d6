package web

import (
	"io"
	"sync"
	"time"
)

// LogBuffer batches log lines into fewer write system calls. The server
// writes two or three lines per request (access line, token issued, audit
// warnings); written straight to stderr each is a write(2), about 5 % of the
// token endpoint's CPU under load. LogBuffer holds lines for at most its
// flush interval, or until 64 KiB accumulate, whichever is first.
//
// A request that logs never waits for the output: the write(2) happens on
// the flusher, outside the lock that Write takes. When the output stalls (a
// log file behind a journal commit that another process's fsync forced, a
// full pipe to a slow collector), lines collect in memory until
// LogBufferMax; only past that does Write block, so a stuck output slows
// logging down rather than losing lines or growing without bound. (With
// the batch being written, that is at most twice LogBufferMax.) A batch
// the output refuses is dropped: Flush returns the error, and slog, which
// is what writes here, has nowhere to report it. (The
// earlier bufio.Writer version wrote under the lock, from whichever request
// filled the buffer: one slow write(2) held up every request that logged,
// which showed in the gateway's tail latency.)
//
// The cost is that a process killed without Close loses at most one
// interval of log lines. The audit trail does not go through the log (it
// has its own sinks), so nothing that must be durable is held here.
type LogBuffer struct {
	mu      sync.Mutex
	room    *sync.Cond // signalled when a flush takes the pending lines
	pending []byte     // whole lines not yet handed to out
	spare   []byte     // the previous batch's array, reused by the next
	closed  bool       // Close has stopped the flusher

	out     io.Writer
	writeMu sync.Mutex // one write to out at a time, in line order

	kick     chan struct{} // wakes the flusher early: LogBufferSize pending
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

const (
	// LogBufferSize is how much pending output wakes the flusher before
	// its interval is up.
	LogBufferSize = 64 << 10
	// LogBufferMax bounds the pending output while the output is stalled;
	// Write blocks beyond it. 4 MiB is over a second of access lines at
	// 10,000 requests a second.
	LogBufferMax = 4 << 20
)

// NewLogBuffer buffers writes to w and flushes them every interval.
func NewLogBuffer(w io.Writer, interval time.Duration) *LogBuffer {
	b := &LogBuffer{out: w, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	b.room = sync.NewCond(&b.mu)
	go b.loop(interval)
	return b
}

func (b *LogBuffer) loop(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		case <-b.kick:
		}
		_ = b.Flush()
	}
}

// Write buffers p. slog handlers call it once per complete line, so lines
// are never split between flushes. It blocks only while LogBufferMax is
// pending, until a flush takes it.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.pending) > 0 && len(b.pending)+len(p) > LogBufferMax {
		if b.closed {
			// No flusher any more: make the room here.
			b.mu.Unlock()
			_ = b.Flush()
			b.mu.Lock()
			continue
		}
		b.wake()
		b.room.Wait()
	}
	b.pending = append(b.pending, p...)
	full := len(b.pending) >= LogBufferSize
	b.mu.Unlock()
	if full {
		b.wake()
	}
	return len(p), nil
}

// wake asks the flusher for a flush now, without waiting for it.
func (b *LogBuffer) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Flush writes out what is pending and returns the output's error, if any.
func (b *LogBuffer) Flush() error {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	b.mu.Lock()
	batch := b.pending
	b.pending, b.spare = b.spare[:0], nil
	b.room.Broadcast()
	b.mu.Unlock()
	if len(batch) == 0 {
		b.keep(batch)
		return nil
	}
	_, err := b.out.Write(batch)
	b.keep(batch)
	return err
}

// keep offers a written batch's array for reuse, unless a backlog grew it
// past LogBufferSize: that memory goes back once the backlog is gone.
func (b *LogBuffer) keep(batch []byte) {
	if cap(batch) > 2*LogBufferSize {
		return
	}
	b.mu.Lock()
	if b.spare == nil {
		b.spare = batch[:0]
	}
	b.mu.Unlock()
}

// Close stops the flusher and writes out what is left. Writes after Close
// are still accepted and buffered; call Flush to force them out.
func (b *LogBuffer) Close() error {
	b.stopOnce.Do(func() { close(b.stop) })
	<-b.done
	b.mu.Lock()
	b.closed = true
	b.room.Broadcast() // writers waiting for the flusher flush themselves
	b.mu.Unlock()
	return b.Flush()
}
