package notify_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/notify"
)

func TestSignVerify(t *testing.T) {
	secret := []byte(strings.Repeat("k", 32))
	body := []byte(`{"id":"ntf_1","type":"identity.expiring"}`)
	now := time.Unix(1_900_000_000, 0)
	good := notify.Sign(secret, body, now)
	if !strings.HasPrefix(good, "t=1900000000,v1=") || len(good) != len("t=1900000000,v1=")+64 {
		t.Fatalf("Sign = %q", good)
	}
	_, sig, _ := strings.Cut(good, ",")
	other := notify.Sign([]byte(strings.Repeat("o", 32)), body, now)
	_, otherSig, _ := strings.Cut(other, ",")
	tests := []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", secret, good, body, now, nil},
		{"valid at the edge of the tolerance", secret, good, body, now.Add(5 * time.Minute), nil},
		{"valid with spaces and an unknown v2", secret, "t=1900000000, v2=abc , " + sig, body, now, nil},
		{"one of several v1 matches (key rotation)", secret, "t=1900000000," + otherSig + "," + sig, body, now, nil},
		{"tampered body", secret, good, []byte(`{"id":"ntf_1","type":"identity.expired"}`), now, notify.ErrBadSignature},
		{"body with a byte appended", secret, good, append(append([]byte{}, body...), ' '), now, notify.ErrBadSignature},
		{"wrong secret", []byte(strings.Repeat("x", 32)), good, body, now, notify.ErrBadSignature},
		{"timestamp changed", secret, "t=1900000001," + sig, body, now, notify.ErrBadSignature},
		{"stale", secret, good, body, now.Add(5*time.Minute + time.Second), notify.ErrStaleSignature},
		{"from the future", secret, good, body, now.Add(-6 * time.Minute), notify.ErrStaleSignature},
		{"no header", secret, "", body, now, notify.ErrNoSignature},
		{"no t", secret, sig, body, now, notify.ErrNoSignature},
		{"t twice", secret, "t=1900000000,t=1900000000," + sig, body, now, notify.ErrNoSignature},
		{"no v1", secret, "t=1900000000", body, now, notify.ErrNoSignature},
		{"v1 not hex", secret, "t=1900000000,v1=zz", body, now, notify.ErrNoSignature},
		{"v1 truncated", secret, good[:len(good)-2], body, now, notify.ErrNoSignature},
		{"not key=value", secret, "t=1900000000,garbage," + sig, body, now, notify.ErrNoSignature},
		{"huge header", secret, good + "," + strings.Repeat("v2=a,", 1000), body, now, notify.ErrNoSignature},
		{"t not a number", secret, "t=soon," + sig, body, now, notify.ErrNoSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := notify.Verify(tt.secret, tt.header, tt.body, tt.now, 0)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	if err := notify.Verify(nil, good, body, now, 0); err == nil {
		t.Error("Verify with no secret accepted the request")
	}
	// A tolerance given is honoured.
	if err := notify.Verify(secret, good, body, now.Add(2*time.Minute), time.Minute); !errors.Is(err, notify.ErrStaleSignature) {
		t.Errorf("Verify with a 1m tolerance, 2m late = %v", err)
	}
}
