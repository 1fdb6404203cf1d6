package web

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// LogBuffer batches log lines into fewer write system calls. The server
// writes two or three lines per request (access line, token issued, audit
// warnings); written straight to stderr each is a write(2), about 5 % of the
// token endpoint's CPU under load. LogBuffer holds lines for at most its
// flush interval or until 64 KiB accumulate, whichever is first.
//
// The cost is that a process killed without Close loses at most one
// interval of log lines. The audit trail does not go through the log (it
// has its own sinks), so nothing that must be durable is held here.
type LogBuffer struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// LogBufferSize is the batch size; a line longer than this is written
// through at once.
const LogBufferSize = 64 << 10

// NewLogBuffer buffers writes to w and flushes them every interval.
func NewLogBuffer(w io.Writer, interval time.Duration) *LogBuffer {
	b := &LogBuffer{w: bufio.NewWriterSize(w, LogBufferSize), stop: make(chan struct{}), done: make(chan struct{})}
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
			_ = b.Flush()
		}
	}
}

// Write buffers p. slog handlers call it once per complete line, so lines
// are never split between flushes.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Write(p)
}

// Flush writes out what is buffered.
func (b *LogBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}

// Close stops the flusher and writes out what is left. Writes after Close
// are still accepted and buffered; call Flush to force them out.
func (b *LogBuffer) Close() error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	return b.Flush()
}
