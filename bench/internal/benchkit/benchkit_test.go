package benchkit

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr bool
	}{
		// A real line (utime 1234, stime 567).
		{"plain", "4242 (keybound) S 1 4242 4242 0 -1 4194560 9050 0 0 0 1234 567 0 0 20 0 9 0 3021 1461264384 6140 18446744073709551615", 1801, false},
		// comm may hold spaces and parentheses; fields count from the last ')'.
		{"odd comm", "7 (a) b (c) d) R 1 7 7 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 1 1 1 1", 30, false},
		{"no paren", "7 keybound R 1 7", 0, true},
		{"short", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 10", 0, true},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 x 20 0 0", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProcStat([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseProcStat = %d, %v; want %d, error %t", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestProcessCPUOwnProcess(t *testing.T) {
	// The live file must parse; spend a little CPU so the count can move.
	a, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	b, err := ProcessCPU(os.Getpid())
	if err != nil || b < a {
		t.Fatalf("ProcessCPU went from %s to %s (%v)", a, b, err)
	}
}

func TestPercentile(t *testing.T) {
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i))
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one", []time.Duration{7}, 0.99, 7},
		{"p50 of 1..100", hundred, 0.50, 50},
		{"p99 of 1..100", hundred, 0.99, 99},
		{"p99.9 of 1..100 is the max", hundred, 0.999, 100},
		{"p100", hundred, 1, 100},
		{"p0 is the min", hundred, 0, 1},
		// Nearest rank: with 4 samples p50 is the 2nd, p51 the 3rd.
		{"p50 of 4", []time.Duration{1, 2, 3, 4}, 0.50, 2},
		{"p51 of 4", []time.Duration{1, 2, 3, 4}, 0.51, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.in, tc.p); got != tc.want {
				t.Fatalf("Percentile(%v) = %d, want %d", tc.p, got, tc.want)
			}
		})
	}
}

func TestFailureCell(t *testing.T) {
	for _, tc := range []struct {
		in   map[string]int
		want string
	}{
		{nil, "0"},
		{map[string]int{"transport": 0}, "0"},
		{map[string]int{"transport": 1, "503": 2}, "**3** (503×2, transport×1)"},
	} {
		if got := FailureCell(tc.in); got != tc.want {
			t.Errorf("FailureCell(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.log")
	if err := os.WriteFile(path, []byte("a\nb\nc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		n    int
		want string
	}{
		{path, 2, "b\nc"},
		{path, 20, "a\nb\nc"},
		{filepath.Join(t.TempDir(), "missing.log"), 20, ""},
	} {
		if got := TailFile(tc.path, tc.n); got != tc.want {
			t.Errorf("TailFile(%s, %d) = %q, want %q", filepath.Base(tc.path), tc.n, got, tc.want)
		}
	}
}
