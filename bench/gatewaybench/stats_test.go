package main

import (
	"os"
	"testing"
	"time"
)

func TestParseProcComm(t *testing.T) {
	for in, want := range map[string]string{
		"4242 (keybound) S 1":    "keybound",
		"7 (a) b (c) d) R 1 7":   "a) b (c) d",
		"9 (posture.test) R 1 2": "posture.test",
		"garbage":                "?",
	} {
		if got := parseProcComm([]byte(in)); got != want {
			t.Errorf("parseProcComm(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseProcStatOwnProcess(t *testing.T) {
	// The live file must parse; spend a little CPU so the count can move.
	a, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	b, err := procCPU(os.Getpid())
	if err != nil || b < a {
		t.Fatalf("procCPU went from %s to %s (%v)", a, b, err)
	}
}

func TestParseMachineStat(t *testing.T) {
	in := "cpu  100 5 50 9000 7 3 2 11 0 0\ncpu0 50 2 25 4500 3 1 1 5 0 0\nintr 1 2 3\n"
	got, err := parseMachineStat([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	// busy = user+nice+system+irq+softirq; idle and iowait are not busy.
	if want := (machineCPU{busy: 100 + 5 + 50 + 3 + 2, steal: 11}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := parseMachineStat([]byte("cpu0 1 2 3 4 5 6 7 8\n")); err == nil {
		t.Error("a per-CPU first line was accepted")
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
			if got := percentile(tc.in, tc.p); got != tc.want {
				t.Fatalf("percentile(%v) = %d, want %d", tc.p, got, tc.want)
			}
		})
	}
}
