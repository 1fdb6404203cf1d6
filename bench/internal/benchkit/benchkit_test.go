package benchkit

import "testing"

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
