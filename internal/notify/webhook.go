package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits of webhook delivery.
const (
	// maxDrain bounds what is read of a receiver's answer: enough to reuse
	// the connection after a short body, never a memory risk.
	maxDrain = 64 << 10
	// maxReason bounds a failure reason kept in the store and logs.
	maxReason = 200
	// MaxRetryAfter caps how long a receiver's Retry-After can hold a
	// warning back.
	MaxRetryAfter = 6 * time.Hour
	// DefaultTimeout bounds one attempt when WebhookConfig names none.
	DefaultTimeout = 10 * time.Second
)

// DeliveryError is a failed delivery attempt. Reason is safe to store and
// show: a status code, a timeout, a network error without the URL (webhook
// URLs often carry a token in their path).
type DeliveryError struct {
	// Status is the receiver's HTTP status; 0 when it did not answer.
	Status int
	Reason string
	// Permanent: the receiver refused the request itself (a 4xx other than
	// 408 and 429, or a redirect); sending it again would not help.
	Permanent bool
	// RetryAfter is the receiver's Retry-After, capped at MaxRetryAfter;
	// zero when it sent none.
	RetryAfter time.Duration
}

func (e *DeliveryError) Error() string { return "notify: webhook: " + e.Reason }

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	URL string
	// Secret is the HMAC key (LoadSecret, LoadOrCreateSecret).
	Secret []byte
	// RootCAs verifies the receiver's certificate; nil: the system roots.
	RootCAs *x509.CertPool
	// Timeout bounds one attempt, from connecting to the answer's headers.
	Timeout time.Duration
}

// Webhook POSTs warnings as signed JSON to one URL, one attempt per call;
// retries are the caller's schedule (Backoff), kept in the store, so a
// restart does not lose them and a slow receiver does not hold a sweep.
type Webhook struct {
	url     string
	host    string // scheme://host of url, for logs
	secret  []byte
	timeout time.Duration
	client  *http.Client
	// now is the signing clock; tests set it to sign stale requests.
	now func() time.Time
}

// NewWebhook checks cfg and builds the webhook. It follows no redirects: a
// receiver that moved is a configuration error to fix, and following one
// would send the signed body where the operator did not point it.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("notify: webhook URL must be an http or https URL")
	}
	if len(cfg.Secret) < MinSecretBytes {
		return nil, fmt.Errorf("notify: webhook secret must be at least %d bytes", MinSecretBytes)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs}
	tr.ResponseHeaderTimeout = timeout
	return &Webhook{
		url: cfg.URL, host: u.Scheme + "://" + u.Host, secret: cfg.Secret, timeout: timeout, now: time.Now,
		client: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Host is the receiver's scheme and host, safe to log (the path may hold a
// token).
func (h *Webhook) Host() string { return h.host }

// Deliver POSTs w once and returns the receiver's status (0 when it did not
// answer) and nil when it answered 2xx, else a *DeliveryError: permanent
// for 3xx and 4xx other than 408 and 429, retryable for those, 5xx, a
// timeout and network errors.
func (h *Webhook) Deliver(ctx context.Context, w Warning) (int, error) {
	body, err := json.Marshal(w)
	if err != nil {
		return 0, fmt.Errorf("notify: encode warning: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return 0, &DeliveryError{Reason: "bad request", Permanent: true}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keybound-notify/1")
	req.Header.Set("Keybound-Event", w.Type)
	req.Header.Set("Keybound-Delivery", w.ID)
	req.Header.Set(SignatureHeader, Sign(h.secret, body, h.now()))
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, &DeliveryError{Reason: h.networkReason(ctx, err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return code, nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return code, &DeliveryError{Status: code, Reason: statusReason(code), RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), h.now())}
	case code >= 300 && code < 400:
		return code, &DeliveryError{Status: code, Reason: statusReason(code) + " (redirects are not followed; set the final URL)", Permanent: true}
	default:
		return code, &DeliveryError{Status: code, Reason: statusReason(code), Permanent: true}
	}
}

func statusReason(code int) string {
	return strings.TrimSpace("receiver answered " + strconv.Itoa(code) + " " + http.StatusText(code))
}

// networkReason describes a failure to get an answer without the URL.
func (h *Webhook) networkReason(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "no answer within " + h.timeout.String()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return bound("no answer: " + err.Error())
}

// bound cuts s to maxReason bytes on a rune boundary.
func bound(s string) string {
	if len(s) <= maxReason {
		return s
	}
	cut := maxReason
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}

// parseRetryAfter reads a Retry-After of delay-seconds or an HTTP date
// (RFC 9110 section 10.2.3), capped at MaxRetryAfter; 0 for none or junk.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

// Backoff returns how long to wait after the attempt-th failed attempt
// (1 for the first): base doubled per attempt, capped at maxDelay, then
// jittered down by up to half, so receivers recovering from an outage are
// not hit by every sender at once. rnd returns a value in [0, 1); nil uses
// math/rand/v2.
func Backoff(attempt int, base, maxDelay time.Duration, rnd func() float64) time.Duration {
	if rnd == nil {
		rnd = rand.Float64
	}
	d := base
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d - time.Duration(rnd()*float64(d/2))
}
