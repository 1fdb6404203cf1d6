package notify

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test")

// received is one request a receiver saw.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a real HTTPS webhook receiver. answer decides each response
// from the request number (1-based); nil answers 204.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(n int, w http.ResponseWriter)
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter)) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		rc.mu.Lock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: b})
		n := len(rc.got)
		rc.mu.Unlock()
		if rc.answer == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		rc.answer(n, w)
	}))
	// Handshakes refused on purpose (an untrusted certificate) are not news.
	rc.Config.ErrorLog = log.New(io.Discard, "", 0)
	rc.StartTLS()
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func (rc *receiver) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(rc.Certificate())
	return p
}

func (rc *receiver) webhook(t *testing.T, path string, timeout time.Duration) *Webhook {
	t.Helper()
	h, err := NewWebhook(WebhookConfig{URL: rc.URL + path, Secret: testSecret, RootCAs: rc.pool(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func sampleWarning() Warning {
	return Warning{ID: NewDeliveryID(), Type: EventExpiring, Issuer: "https://kb.example", CreatedAt: time.Now().UTC(),
		ClientID: "kb-1", Name: "billing", Owner: "team-a", Environment: "prod",
		ExpiresAt: time.Now().Add(72 * time.Hour).UTC(), LeadSeconds: 259200, LeadTime: "72h0m0s"}
}

func TestWebhookDeliversSignedJSON(t *testing.T) {
	rc := newReceiver(t, nil)
	w := sampleWarning()
	code, err := rc.webhook(t, "/hook", time.Second).Deliver(t.Context(), w)
	if err != nil || code != http.StatusNoContent {
		t.Fatalf("Deliver = %d, %v", code, err)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if err := Verify(testSecret, r.header.Get(SignatureHeader), r.body, time.Now(), 0); err != nil {
		t.Errorf("receiver cannot verify: %v", err)
	}
	if r.header.Get("Content-Type") != "application/json" || r.header.Get("Keybound-Delivery") != w.ID || r.header.Get("Keybound-Event") != EventExpiring {
		t.Errorf("headers: %v", r.header)
	}
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"id": w.ID, "type": "identity.expiring", "client_id": "kb-1", "name": "billing", "owner": "team-a",
		"environment": "prod", "lead_seconds": float64(259200), "lead_time": "72h0m0s", "issuer": "https://kb.example",
		"expires_at": w.ExpiresAt.Format(time.RFC3339Nano)} {
		if got[k] != want {
			t.Errorf("body %s = %v, want %v", k, got[k], want)
		}
	}
	if strings.Contains(string(r.body), string(testSecret)) || strings.Contains(r.header.Get(SignatureHeader), string(testSecret)) {
		t.Error("the secret was sent")
	}
}

func TestWebhookClassifiesAnswers(t *testing.T) {
	tests := []struct {
		status    int
		ok        bool
		permanent bool
	}{
		{200, true, false}, {202, true, false}, {204, true, false},
		{302, false, true}, {400, false, true}, {401, false, true}, {403, false, true}, {404, false, true}, {410, false, true}, {422, false, true},
		{408, false, false}, {429, false, false}, {500, false, false}, {502, false, false}, {503, false, false},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			rc := newReceiver(t, func(_ int, w http.ResponseWriter) {
				if tt.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
			})
			code, err := rc.webhook(t, "/", time.Second).Deliver(t.Context(), sampleWarning())
			if code != tt.status {
				t.Errorf("status %d, want %d", code, tt.status)
			}
			if tt.ok {
				if err != nil {
					t.Fatalf("Deliver = %v", err)
				}
				return
			}
			var de *DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("Deliver = %v, want a *DeliveryError", err)
			}
			if de.Permanent != tt.permanent || de.Status != tt.status {
				t.Errorf("DeliveryError %+v, want permanent=%v", de, tt.permanent)
			}
			if n := len(rc.requests()); n != 1 {
				t.Errorf("receiver saw %d requests (a redirect must not be followed)", n)
			}
		})
	}
}

func TestWebhookRetryAfter(t *testing.T) {
	now := time.Now()
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{"99999999", MaxRetryAfter},
		{now.Add(10 * time.Minute).UTC().Format(http.TimeFormat), 10 * time.Minute},
		{now.Add(-time.Hour).UTC().Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		got := parseRetryAfter(tt.value, now)
		// An HTTP date has whole seconds.
		if d := got - tt.want; d > time.Second || d < -time.Second {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.value, got, tt.want)
		}
	}
	rc := newReceiver(t, func(_ int, w http.ResponseWriter) {
		w.Header().Set("Retry-After", "90")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	_, err := rc.webhook(t, "/", time.Second).Deliver(t.Context(), sampleWarning())
	var de *DeliveryError
	if !errors.As(err, &de) || de.RetryAfter != 90*time.Second || de.Permanent {
		t.Fatalf("Deliver = %#v, want a retryable error with RetryAfter 90s", err)
	}
}

func TestWebhookTimeoutAndNetworkErrors(t *testing.T) {
	release := make(chan struct{})
	slow := newReceiver(t, func(_ int, w http.ResponseWriter) {
		<-release
		w.WriteHeader(http.StatusNoContent)
	})
	defer close(release)
	start := time.Now()
	_, err := slow.webhook(t, "/", 200*time.Millisecond).Deliver(t.Context(), sampleWarning())
	var de *DeliveryError
	if !errors.As(err, &de) || de.Permanent || !strings.Contains(de.Reason, "no answer within 200ms") {
		t.Fatalf("slow receiver: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the attempt took %s despite a 200ms timeout", d)
	}

	// A receiver whose certificate is not trusted: retryable, and the reason
	// never shows the URL (its path may be a token).
	rc := newReceiver(t, nil)
	h, err := NewWebhook(WebhookConfig{URL: rc.URL + "/hooks/T0/SECRETPATH", Secret: testSecret, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Deliver(t.Context(), sampleWarning())
	if !errors.As(err, &de) || de.Permanent || strings.Contains(de.Reason, "SECRETPATH") || !strings.Contains(de.Reason, "certificate") {
		t.Errorf("untrusted receiver: %v", err)
	}
	if strings.Contains(h.Host(), "SECRETPATH") {
		t.Errorf("Host() = %q shows the path", h.Host())
	}
	// Nobody listening.
	dead := newReceiver(t, nil)
	url := dead.URL
	dead.Close()
	h, _ = NewWebhook(WebhookConfig{URL: url, Secret: testSecret, RootCAs: dead.pool(), Timeout: time.Second})
	if _, err := h.Deliver(t.Context(), sampleWarning()); !errors.As(err, &de) || de.Permanent || de.Status != 0 {
		t.Errorf("closed port: %v", err)
	}
}

func TestWebhookBoundsTheAnswer(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter) {
		w.WriteHeader(http.StatusInternalServerError)
		big := strings.Repeat("x", 1<<20)
		for range 64 { // 64 MiB, far more than is read
			if _, err := io.WriteString(w, big); err != nil {
				return
			}
		}
	})
	start := time.Now()
	_, err := rc.webhook(t, "/", 5*time.Second).Deliver(t.Context(), sampleWarning())
	var de *DeliveryError
	if !errors.As(err, &de) || len(de.Reason) > maxReason+3 || strings.Contains(de.Reason, "xxxx") {
		t.Fatalf("Deliver = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("reading the answer took %s; it must be bounded", d)
	}
}

func TestNewWebhookRefuses(t *testing.T) {
	for _, cfg := range []WebhookConfig{
		{URL: "ftp://x.example/", Secret: testSecret},
		{URL: "https://", Secret: testSecret},
		{URL: "https://x.example/", Secret: []byte("short")},
	} {
		if _, err := NewWebhook(cfg); err == nil {
			t.Errorf("NewWebhook(%q, %d-byte secret) accepted", cfg.URL, len(cfg.Secret))
		}
	}
}

func TestBackoff(t *testing.T) {
	zero := func() float64 { return 0 }
	almostOne := func() float64 { return 0.999999 }
	base, maxD := 30*time.Second, time.Hour
	var prev time.Duration
	for attempt := 1; attempt <= 10; attempt++ {
		hi := Backoff(attempt, base, maxD, zero)
		lo := Backoff(attempt, base, maxD, almostOne)
		if hi < prev || hi > maxD {
			t.Errorf("attempt %d: %s after %s (max %s)", attempt, hi, prev, maxD)
		}
		if lo < hi/2 || lo > hi {
			t.Errorf("attempt %d: jittered %s outside [%s, %s]", attempt, lo, hi/2, hi)
		}
		prev = hi
	}
	if got := Backoff(1, base, maxD, zero); got != base {
		t.Errorf("first backoff %s, want %s", got, base)
	}
	if got := Backoff(3, base, maxD, zero); got != 4*base {
		t.Errorf("third backoff %s, want %s", got, 4*base)
	}
	if got := Backoff(1000, base, maxD, zero); got != maxD {
		t.Errorf("backoff after many attempts %s, want the cap %s", got, maxD)
	}
	if got := Backoff(2, base, maxD, nil); got < base || got > 2*base {
		t.Errorf("default jitter: %s", got)
	}
}
