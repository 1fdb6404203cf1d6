package web

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) snapshot() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.writes
}

func TestLogBufferBatchesAndFlushes(t *testing.T) {
	out := &lockedBuffer{}
	b := NewLogBuffer(out, 20*time.Millisecond)
	for i := 0; i < 100; i++ {
		if _, err := b.Write([]byte("line\n")); err != nil {
			t.Fatal(err)
		}
	}
	// The ticker writes the batch out without any further call.
	deadline := time.Now().Add(2 * time.Second)
	for {
		s, writes := out.snapshot()
		if strings.Count(s, "line\n") == 100 {
			if writes > 5 {
				t.Errorf("100 lines took %d writes; want them batched", writes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lines not flushed by the interval: got %q", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Close writes what is left.
	_, _ = b.Write([]byte("last\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if s, _ := out.snapshot(); !strings.HasSuffix(s, "last\n") {
		t.Error("Close did not flush the last line")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestLogBufferConcurrentLinesStayWhole(t *testing.T) {
	out := &lockedBuffer{}
	b := NewLogBuffer(out, time.Hour)
	var wg sync.WaitGroup
	line := strings.Repeat("x", 1000) + "\n"
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				_, _ = b.Write([]byte(line))
			}
		}()
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ := out.snapshot()
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if l != line[:len(line)-1] {
			t.Fatalf("a line was split or interleaved: %d bytes", len(l))
		}
	}
	if n := strings.Count(s, "\n"); n != 1600 {
		t.Errorf("%d lines, want 1600", n)
	}
}
