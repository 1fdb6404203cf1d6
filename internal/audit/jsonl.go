package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/keybound/keybound/internal/store"
)

// jsonlFileMode is the mode of a new JSONL audit file: it names every client
// and endpoint, so only the service user may read it.
const jsonlFileMode fs.FileMode = 0o600

// ErrInsecureFile is returned by OpenJSONLFile when an existing file can be
// read or written by group or others.
var ErrInsecureFile = errors.New("audit: audit file is accessible to group or others; chmod 600 it")

// JSONLSink writes each event as one JSON object per line (JSON Lines), with
// the snake_case field names of store.AuditEvent's tags and the time in UTC
// RFC 3339 with nanoseconds. JSON escapes every control character, so a
// field can never break a line. It is safe for concurrent use.
//
// A batch is encoded into a buffer and handed to the underlying writer in a
// single Write call, so on a file opened with O_APPEND a batch lands whole
// or not at all unless the disk fills part-way. After such a short write,
// the next batch starts with a newline so the torn line stays one bad line.
// A retried batch may repeat events (at least once).
type JSONLSink struct {
	mu   sync.Mutex
	w    io.Writer
	f    *os.File // set by OpenJSONLFile; Close syncs and closes it
	buf  bytes.Buffer
	enc  *json.Encoder
	torn bool
}

// NewJSONLSink returns a sink writing to w. Close does not close w.
func NewJSONLSink(w io.Writer) *JSONLSink {
	s := &JSONLSink{w: w}
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	return s
}

// OpenJSONLFile opens (creating with mode 0600) the file at path for
// appending and returns a sink writing to it. An existing file that group or
// others can access is refused with ErrInsecureFile, and one that is not a
// regular file is refused too. Batches reach the operating system when
// written; Close syncs the file to disk and closes it.
func OpenJSONLFile(path string) (*JSONLSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, jsonlFileMode)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	switch {
	case !fi.Mode().IsRegular():
		f.Close()
		return nil, fmt.Errorf("audit: open %s: not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		f.Close()
		return nil, fmt.Errorf("%w: %s has mode %04o", ErrInsecureFile, path, fi.Mode().Perm())
	}
	s := NewJSONLSink(f)
	s.f = f
	return s, nil
}

// Write appends one line per event to the underlying writer, in one Write
// call per batch.
func (s *JSONLSink) Write(ctx context.Context, evs []store.AuditEvent) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Reset()
	if s.torn {
		s.buf.WriteByte('\n')
	}
	for i := range evs {
		ev := evs[i]
		ev.Time = ev.Time.UTC()
		if err := s.enc.Encode(&ev); err != nil {
			return fmt.Errorf("audit: jsonl: encode event %d: %w", i, err)
		}
	}
	b := s.buf.Bytes()
	n, err := s.w.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		// A partial write leaves a line without its newline unless it
		// stopped exactly at a line end.
		if n > 0 && b[n-1] != '\n' {
			s.torn = true
		}
		return fmt.Errorf("audit: jsonl: write: %w", err)
	}
	s.torn = false
	if s.buf.Cap() > maxRetainedBuffer {
		s.buf = bytes.Buffer{}
		s.enc = json.NewEncoder(&s.buf)
		s.enc.SetEscapeHTML(false)
	}
	return nil
}

// Close syncs and closes the file if the sink came from OpenJSONLFile; for
// a sink from NewJSONLSink it does nothing.
func (s *JSONLSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := errors.Join(s.f.Sync(), s.f.Close())
	s.f = nil
	if err != nil {
		return fmt.Errorf("audit: jsonl: close: %w", err)
	}
	return nil
}
