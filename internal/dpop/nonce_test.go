package dpop

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNonces(t *testing.T) {
	var now atomic.Int64
	now.Store(t0.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	secret := []byte(strings.Repeat("s", 32))
	n, err := NewNonces(secret, time.Minute, clock)
	if err != nil {
		t.Fatal(err)
	}
	first := n.Current()
	if len(first) != 22 {
		t.Fatalf("nonce %q has length %d, want 22 (128 bits base64url)", first, len(first))
	}
	tests := []struct {
		name    string
		advance time.Duration
		nonce   string
		want    bool
	}{
		{"current accepted", 0, first, true},
		{"same period still current", 30 * time.Second, first, true},
		{"previous accepted after rotation", 30 * time.Second, first, true},
		{"too old after two rotations", time.Minute, first, false},
		{"empty refused", 0, "", false},
		{"made up refused", 0, "AAAAAAAAAAAAAAAAAAAAAA", false},
	}
	for _, tt := range tests {
		now.Add(int64(tt.advance))
		if got := n.Valid(tt.nonce); got != tt.want {
			t.Errorf("%s: Valid = %v, want %v", tt.name, got, tt.want)
		}
	}
	if n.Current() == first {
		t.Error("nonce did not rotate after two periods")
	}

	// Servers sharing the secret agree; another secret does not.
	same, _ := NewNonces(secret, time.Minute, clock)
	other, _ := NewNonces(nil, time.Minute, clock)
	if same.Current() != n.Current() || !same.Valid(n.Current()) {
		t.Error("two sources with one secret disagree")
	}
	if other.Valid(n.Current()) {
		t.Error("a source with another secret accepted the nonce")
	}
}

func TestNoncesFailClosed(t *testing.T) {
	var zero Nonces
	if zero.Current() != "" || zero.Valid("") || zero.Valid("AAAAAAAAAAAAAAAAAAAAAA") {
		t.Error("zero Nonces issued or accepted a nonce")
	}
	if _, err := NewNonces([]byte("short"), 0, nil); err == nil {
		t.Error("NewNonces accepted a short secret")
	}
}
