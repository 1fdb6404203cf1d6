package web

import (
	"bytes"
	"fmt"
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

// stallingWriter blocks every Write until release is closed, after telling
// entered (once) that a write has started.
type stallingWriter struct {
	lockedBuffer
	entered chan struct{}
	once    sync.Once
	release chan struct{}
}

func (s *stallingWriter) Write(p []byte) (int, error) {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return s.lockedBuffer.Write(p)
}

// TestLogBufferWriteDoesNotWaitForStalledOutput: while the output is stuck
// in a write, lines are still accepted at once, up to LogBufferMax; past
// it Write waits for the output, and once the output recovers every line
// arrives, whole and in order.
func TestLogBufferWriteDoesNotWaitForStalledOutput(t *testing.T) {
	out := &stallingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	b := NewLogBuffer(out, time.Millisecond)
	line := func(i int) []byte { return []byte(fmt.Sprintf("%07d %s\n", i, strings.Repeat("x", 1000))) }
	if _, err := b.Write(line(0)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-out.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the flusher never wrote")
	}
	// The flusher is now stuck. Fill to just under the bound: none of
	// these may block.
	n := 1
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for ; n*len(line(0)) <= LogBufferMax; n++ {
			_, _ = b.Write(line(n))
		}
	}()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatalf("Write blocked on a stalled output after %d lines, under LogBufferMax", n)
	}
	// One more line would pass the bound: it waits for the output.
	over := make(chan struct{})
	go func() { _, _ = b.Write(line(n)); close(over) }()
	select {
	case <-over:
		t.Fatal("Write went past LogBufferMax while the output was stalled")
	case <-time.After(50 * time.Millisecond):
	}
	close(out.release)
	select {
	case <-over:
	case <-time.After(5 * time.Second):
		t.Fatal("Write still blocked after the output recovered")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ := out.snapshot()
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) != n+1 {
		t.Fatalf("%d lines arrived, want %d", len(lines), n+1)
	}
	for i, l := range lines {
		if l+"\n" != string(line(i)) {
			t.Fatalf("line %d is %.20q..., want line %d whole and in order", i, l, i)
		}
	}
}

// TestLogBufferWriteAfterCloseNeverHangs: with no flusher left, a Write
// that would pass LogBufferMax makes room itself.
func TestLogBufferWriteAfterCloseNeverHangs(t *testing.T) {
	out := &lockedBuffer{}
	b := NewLogBuffer(out, time.Hour)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	big := []byte(strings.Repeat("y", LogBufferMax/2-1) + "\n")
	done := make(chan struct{})
	go func() {
		for range 3 {
			_, _ = b.Write(big)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Write after Close hung past LogBufferMax")
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if s, _ := out.snapshot(); len(s) != 3*len(big) {
		t.Errorf("%d bytes written, want %d", len(s), 3*len(big))
	}
}

// TestLogBufferConcurrentClose: Close from several goroutines at once
// neither panics nor loses the last lines.
func TestLogBufferConcurrentClose(t *testing.T) {
	out := &lockedBuffer{}
	b := NewLogBuffer(out, time.Hour)
	_, _ = b.Write([]byte("last\n"))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Close(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if s, _ := out.snapshot(); s != "last\n" {
		t.Errorf("output %q, want the one line once", s)
	}
}
