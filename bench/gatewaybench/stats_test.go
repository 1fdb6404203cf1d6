package main

import (
	"testing"
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
