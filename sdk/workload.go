package sdk

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Workload certificates.
//
// A CertificateSource holds one keybound workload certificate (an X.509
// client certificate naming the identity as spiffe://TRUST_DOMAIN/client/ID)
// and renews it in the background. Its private key is made in this process
// (or supplied as a crypto.Signer, e.g. a KMS handle); only a CSR signed with
// it and the certificate ever cross the wire.
//
// Renewal design. A token bound to a certificate (cnf x5t#S256, RFC 8705
// section 3) is refused when it arrives over a connection that presents
// another certificate, and a connection keeps the certificate of its
// handshake for as long as it lives. So the certificate, the connections made
// with it and the tokens issued for it must change together. Client builds
// them as one generation: an *http.Transport whose TLS configuration holds
// exactly that certificate, and a TokenSource that fetches its tokens over
// that transport (so tls_client_auth authenticates with that certificate and
// mTLS-bound tokens carry its thumbprint). A request loads the current
// generation once and uses its token, proof and connections throughout, so a
// request never mixes generations. After a renewal the new generation is
// built, its first token fetched, and only then swapped in atomically; the
// old certificate is not revoked by renewal and stays valid until it
// expires, so requests in flight on the old generation finish normally, and
// the old transport's idle connections are closed right after the swap and
// again after a grace period.
//
// Schedule. A certificate is renewed when about two thirds of its lifetime
// (counted from when it arrived) have passed, minus a random jitter of up to
// a tenth of the lifetime so replicas enrolled together do not renew
// together. A failed renewal is retried with capped exponential backoff
// while the current certificate is valid. A refusal that retrying cannot
// fix (a revoked, expired or unknown certificate, an identity that may no
// longer hold one) stops renewal: Err reports it, and requests keep using
// the current certificate until it expires, after which they fail with an
// error that says so.

// Workload API paths, relative to the issuer (keybound's wire format).
const (
	workloadEnrollPath = "/workload/v1/enroll"
	workloadRenewPath  = "/workload/v1/renew"
)

// Bounds and timing of workload certificates.
const (
	// maxWorkloadResponseBytes bounds an issuance answer: a chain of a few
	// certificates, the trust bundle and some JSON.
	maxWorkloadResponseBytes = 256 << 10
	// maxChainCerts bounds the certificates accepted in an issued chain.
	maxChainCerts = 8
	// renewRetryMin and renewRetryMax bound the delay between failed
	// renewal attempts.
	renewRetryMin = time.Second
	renewRetryMax = 2 * time.Minute
	// retireGrace is how long after a swap the old generation's idle
	// connections are closed again, for requests that were in flight.
	retireGrace = time.Minute
	// prefetchTimeout bounds fetching the first token of a new generation.
	prefetchTimeout = 30 * time.Second
	// defaultIdleConnTimeout is set on generation transports that have none,
	// so connections of retired generations cannot linger.
	defaultIdleConnTimeout = 90 * time.Second
)

// ErrCertificateRevoked is matched (errors.Is) by a CertificateError for a
// certificate keybound has revoked: renewal stops, enroll again.
var ErrCertificateRevoked = errors.New("keybound: workload certificate revoked")

// CertificateError is a refusal from keybound's workload API (an RFC 9457
// problem). Type is the problem type URI, Code the OAuth error code and
// Detail the server's hint about what to fix.
type CertificateError struct {
	Op         string // "enroll" or "renew"
	StatusCode int
	Type       string
	Code       string
	Detail     string
}

// Error returns "keybound: workload certificate <op>: <type> (<code>): <detail>".
func (e *CertificateError) Error() string {
	kind := strings.TrimPrefix(e.Type, "urn:keybound:problem:")
	if kind == "" {
		kind = fmt.Sprintf("HTTP %d", e.StatusCode)
	}
	msg := "keybound: workload certificate " + e.Op + ": " + kind
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Is matches ErrCertificateRevoked for a revoked certificate.
func (e *CertificateError) Is(target error) bool {
	return target == ErrCertificateRevoked && strings.HasSuffix(e.Type, ":certificate-revoked")
}

// permanent reports whether retrying the same request cannot succeed: a
// client error other than a timeout, a rate limit, or keybound's
// limit-reached (the identity holds as many live certificates as keybound
// allows; one expiring or being revoked makes room, so a later retry can
// succeed).
func (e *CertificateError) permanent() bool {
	return e.StatusCode >= 400 && e.StatusCode < 500 &&
		e.StatusCode != http.StatusRequestTimeout && e.StatusCode != http.StatusTooManyRequests &&
		!strings.HasSuffix(e.Type, ":limit-reached")
}

// CertificateConfig says how to enroll for a keybound workload certificate.
// Exactly one of Key (private_key_jwt for ClientID) or JoinToken (a one-time
// token from `keybound cert join-token`) proves the identity.
type CertificateConfig struct {
	// Issuer is keybound's issuer URL, e.g. https://auth.example.com. The
	// workload API is under it. It must be https except on a loopback host.
	Issuer string
	// ClientID is the registered client_id. Required with Key; with a
	// JoinToken it is optional and, when set, the issued certificate must
	// name it.
	ClientID string
	// Key signs the private_key_jwt assertion that enrolls the workload; its
	// kid is KeyID, or the key's RFC 7638 thumbprint when empty.
	Key   crypto.Signer
	KeyID string
	// JoinToken enrolls once with a one-time join token.
	JoinToken string
	// CertKey is the certificate's private key. Nil means a fresh ECDSA
	// P-256 key made in memory at enrollment and again at every renewal, so
	// the key rotates with the certificate. A supplied key (a KMS or HSM
	// handle works: any crypto.Signer) is kept for every renewal.
	CertKey crypto.Signer
	// Lifetime is the certificate lifetime to ask for, in whole seconds;
	// zero means the server's default. keybound issues at least a minute.
	Lifetime time.Duration
	// HTTPClient carries the TLS configuration (RootCAs for keybound's CA).
	// Its Transport must be an *http.Transport or nil (http.DefaultTransport):
	// it is cloned for every certificate. Its Timeout bounds each workload API
	// call; zero means 30 seconds.
	HTTPClient *http.Client
	// Log receives background renewal outcomes; nil logs nothing. It never
	// receives a key, a token or a join token.
	Log *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// String describes c without its keys or join token.
func (c CertificateConfig) String() string {
	return fmt.Sprintf("sdk.CertificateConfig{Issuer:%q ClientID:%q Key:%s KeyID:%q JoinToken:%s CertKey:%s Lifetime:%s}",
		c.Issuer, c.ClientID, redactKey(c.Key), c.KeyID, redactSecret(c.JoinToken), redactKey(c.CertKey), c.Lifetime)
}

// GoString is String, for %#v.
func (c CertificateConfig) GoString() string { return c.String() }

// LogValue logs c without its secrets (log/slog.LogValuer).
func (c CertificateConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }

func redactSecret(s string) string {
	if s == "" {
		return `""`
	}
	return "(redacted)"
}

// certState is one issued certificate as the source holds it.
type certState struct {
	cert     *tls.Certificate // chain and private key, Leaf set
	clientID string
	renewAt  time.Time
}

// CertificateSource enrolls for a workload certificate, keeps it and renews
// it in the background; see the package's "Renewal design" notes above.
// Make one with NewCertificateSource and Close it when done. It is safe for
// concurrent use.
type CertificateSource struct {
	enrollURL, renewURL string
	clientID            string
	certKey             crypto.Signer
	lifetime            int64
	base                *http.Transport
	timeout             time.Duration
	now                 func() time.Time
	log                 *slog.Logger

	cur      atomic.Pointer[certState]
	renewals atomic.Int64

	mu      sync.Mutex // serializes renewals and the swaps they cause
	err     error      // terminal: renewal stopped
	clients []*certTransport

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// NewCertificateSource checks c, enrolls for a certificate (with ctx) and
// starts renewing it in the background until ctx is done or Close is
// called. Use one per process and identity.
func NewCertificateSource(ctx context.Context, c *CertificateConfig) (*CertificateSource, error) {
	if c == nil {
		return nil, errors.New("keybound: invalid certificate config: nil")
	}
	s, err := newCertificateSource(c)
	if err != nil {
		return nil, err
	}
	st, err := s.enroll(ctx, c)
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	stop := context.AfterFunc(ctx, cancel)
	go func() {
		defer stop()
		s.loop(loopCtx)
	}()
	return s, nil
}

func newCertificateSource(c *CertificateConfig) (*CertificateSource, error) {
	var problems []string
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "":
		problems = append(problems, "Issuer is empty")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		problems = append(problems, "Issuer is not an absolute http(s) URL")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		problems = append(problems, "Issuer must use https unless its host is loopback")
	case u.User != nil || u.Fragment != "" || u.RawQuery != "":
		problems = append(problems, "Issuer must not have user info, a query or a fragment")
	}
	switch {
	case (c.Key == nil) == (c.JoinToken == ""):
		problems = append(problems, "set exactly one of Key (private_key_jwt) or JoinToken")
	case c.Key != nil && c.ClientID == "":
		problems = append(problems, "ClientID is required with Key")
	case c.Key != nil:
		if _, err := algorithmFor(c.Key.Public()); err != nil {
			problems = append(problems, "Key: "+err.Error())
		}
	}
	if c.CertKey != nil {
		if _, err := algorithmFor(c.CertKey.Public()); err != nil {
			problems = append(problems, "CertKey: "+err.Error())
		}
	}
	if c.Lifetime < 0 || c.Lifetime%time.Second != 0 {
		problems = append(problems, "Lifetime must be zero or a positive whole number of seconds")
	}
	base, err := baseTransport(c.HTTPClient)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("keybound: invalid certificate config: %s", strings.Join(problems, "; "))
	}
	issuer := strings.TrimSuffix(c.Issuer, "/")
	s := &CertificateSource{
		enrollURL: issuer + workloadEnrollPath,
		renewURL:  issuer + workloadRenewPath,
		clientID:  c.ClientID,
		certKey:   c.CertKey,
		lifetime:  int64(c.Lifetime / time.Second),
		base:      base,
		timeout:   defaultTokenTimeout,
		now:       c.Now,
		log:       c.Log,
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	if c.HTTPClient != nil && c.HTTPClient.Timeout > 0 {
		s.timeout = c.HTTPClient.Timeout
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// baseTransport is the transport cloned for each certificate.
func baseTransport(hc *http.Client) (*http.Transport, error) {
	var rt http.RoundTripper
	if hc != nil {
		rt = hc.Transport
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	t, ok := rt.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("HTTPClient.Transport is a %T; it must be an *http.Transport (or nil) so each certificate gets its own connections", rt)
	}
	return t, nil
}

// transportWith clones base to present exactly cert (nil: none).
func transportWith(base *http.Transport, cert *tls.Certificate) *http.Transport {
	t := base.Clone()
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.TLSClientConfig != nil {
		conf = t.TLSClientConfig.Clone()
	}
	conf.GetClientCertificate = nil
	conf.Certificates = nil
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	t.TLSClientConfig = conf
	if t.IdleConnTimeout == 0 {
		t.IdleConnTimeout = defaultIdleConnTimeout
	}
	return t
}

// Certificate returns the current certificate chain and key, as a TLS
// client presents it. It fails once the certificate has expired.
func (s *CertificateSource) Certificate() (*tls.Certificate, error) {
	st := s.cur.Load()
	if err := s.usable(st); err != nil {
		return nil, err
	}
	return st.cert, nil
}

// GetClientCertificate is Certificate for tls.Config.GetClientCertificate.
// A connection keeps the certificate of its handshake: do not combine this
// with certificate-bound tokens from another source; Client pairs them.
func (s *CertificateSource) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.Certificate()
}

// Leaf returns the current certificate, parsed.
func (s *CertificateSource) Leaf() *x509.Certificate { return s.cur.Load().cert.Leaf }

// ClientID returns the client the certificate was issued to.
func (s *CertificateSource) ClientID() string { return s.cur.Load().clientID }

// Renewals returns how many renewals have succeeded.
func (s *CertificateSource) Renewals() int { return int(s.renewals.Load()) }

// Err returns why background renewal stopped, or nil while it runs.
func (s *CertificateSource) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops renewal and closes idle connections of the clients made with
// Client. The current certificate stays usable until it expires.
func (s *CertificateSource) Close() error {
	s.once.Do(func() {
		s.cancel()
		<-s.done
		s.mu.Lock()
		for _, c := range s.clients {
			c.CloseIdleConnections()
		}
		s.mu.Unlock()
	})
	return nil
}

func (s *CertificateSource) usable(st *certState) error {
	if now := s.now(); !now.Before(st.cert.Leaf.NotAfter) {
		msg := "keybound: the workload certificate expired at " + st.cert.Leaf.NotAfter.UTC().Format(time.RFC3339)
		if err := s.Err(); err != nil {
			return fmt.Errorf("%s; renewal stopped: %w", msg, err)
		}
		return errors.New(msg)
	}
	return nil
}

// Renew renews the certificate now, over mTLS with the current one, and
// returns once every client made with Client uses the new certificate. The
// background schedule restarts from the new certificate.
func (s *CertificateSource) Renew(ctx context.Context) error {
	err := s.renew(ctx, nil)
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return err
}

// loop renews on schedule until ctx is done or a refusal stops it.
func (s *CertificateSource) loop(ctx context.Context) {
	defer close(s.done)
	failures := 0
	st := s.cur.Load()
	next := st.renewAt
	for {
		t := time.NewTimer(max(next.Sub(s.now()), 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.kick:
			t.Stop()
			st, failures = s.cur.Load(), 0
			next = st.renewAt
			if s.Err() != nil {
				return
			}
			continue
		case <-t.C:
		}
		err := s.renew(ctx, st)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			st = s.cur.Load()
			next = st.renewAt
			s.log.LogAttrs(ctx, slog.LevelInfo, "keybound: workload certificate renewed",
				slog.String("client_id", st.clientID), slog.String("serial", st.cert.Leaf.SerialNumber.Text(16)),
				slog.Time("not_after", st.cert.Leaf.NotAfter))
			continue
		}
		if s.Err() != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "keybound: workload certificate renewal stopped", slog.String("error", err.Error()))
			return
		}
		failures++
		delay := retryDelay(failures)
		next = s.now().Add(delay)
		s.log.LogAttrs(ctx, slog.LevelWarn, "keybound: workload certificate renewal failed; retrying",
			slog.String("error", err.Error()), slog.Duration("retry_in", delay), slog.Time("not_after", st.cert.Leaf.NotAfter))
	}
}

// retryDelay is the wait after the n-th consecutive failure: exponential
// from renewRetryMin, capped at renewRetryMax, with half of it random.
func retryDelay(n int) time.Duration {
	d := renewRetryMax
	if n < 16 {
		d = min(renewRetryMin<<(n-1), renewRetryMax)
	}
	return d/2 + mrand.N(d/2+1)
}

// renewAt is when a certificate received at got and valid until notAfter is
// due for renewal: two thirds through, less up to a tenth as jitter.
func renewAt(got, notAfter time.Time, jitter func(time.Duration) time.Duration) time.Time {
	life := notAfter.Sub(got)
	if life <= 0 {
		return got
	}
	return got.Add(life*2/3 - jitter(life/10))
}

func randomJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return mrand.N(d)
}

// renew replaces the certificate through the renewal endpoint. If expected
// is set and is no longer current, another renewal already happened and
// renew does nothing.
func (s *CertificateSource) renew(ctx context.Context, expected *certState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	old := s.cur.Load()
	if expected != nil && old != expected {
		return nil
	}
	if !s.now().Before(old.cert.Leaf.NotAfter) {
		s.err = errors.New("keybound: the workload certificate expired before it could be renewed; enroll again")
		return s.err
	}
	key, err := s.keyForCert()
	if err != nil {
		return err
	}
	csr, err := makeCSR(key)
	if err != nil {
		return err
	}
	body, err := json.Marshal(struct {
		CSR      string `json:"csr"`
		Lifetime int64  `json:"lifetime,omitempty"`
	}{csr, s.lifetime})
	if err != nil {
		return fmt.Errorf("keybound: renew request: %w", err)
	}
	// A connection of its own, made with the current certificate: a pooled
	// connection could present an older one.
	tr := transportWith(s.base, old.cert)
	tr.DisableKeepAlives = true
	st, err := s.post(ctx, "renew", tr, s.renewURL, body, key, old.clientID)
	if err != nil {
		var ce *CertificateError
		if errors.As(err, &ce) && ce.permanent() {
			s.err = err
		}
		return err
	}
	s.cur.Store(st)
	s.renewals.Add(1)
	// A client whose context has ended is done: drop it rather than
	// renew it forever (and keep every one a careless caller made).
	live := s.clients[:0]
	for _, c := range s.clients {
		if c.ctx.Err() != nil {
			c.CloseIdleConnections()
			continue
		}
		c.swap(ctx, st)
		live = append(live, c)
	}
	clear(s.clients[len(live):])
	s.clients = live
	return nil
}

// enroll gets the first certificate.
func (s *CertificateSource) enroll(ctx context.Context, c *CertificateConfig) (*certState, error) {
	key, err := s.keyForCert()
	if err != nil {
		return nil, err
	}
	csr, err := makeCSR(key)
	if err != nil {
		return nil, err
	}
	req := struct {
		CSR                 string `json:"csr"`
		Lifetime            int64  `json:"lifetime,omitempty"`
		JoinToken           string `json:"join_token,omitempty"`
		ClientID            string `json:"client_id,omitempty"`
		ClientAssertionType string `json:"client_assertion_type,omitempty"`
		ClientAssertion     string `json:"client_assertion,omitempty"`
	}{CSR: csr, Lifetime: s.lifetime, JoinToken: c.JoinToken}
	if c.Key != nil {
		a, err := newAssertionSigner(c.Key, c.KeyID, c.ClientID, s.enrollURL)
		if err != nil {
			return nil, err
		}
		if req.ClientAssertion, err = a.sign(s.now()); err != nil {
			return nil, err
		}
		req.ClientID, req.ClientAssertionType = c.ClientID, jwtBearerAssertionType
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("keybound: enroll request: %w", err)
	}
	return s.post(ctx, "enroll", transportWith(s.base, nil), s.enrollURL, body, key, s.clientID)
}

func (s *CertificateSource) keyForCert() (crypto.Signer, error) {
	if s.certKey != nil {
		return s.certKey, nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keybound: generate certificate key: %w", err)
	}
	return k, nil
}

// makeCSR returns a PKCS#10 request in PEM signed with key. It names
// nothing: keybound names the identity the enrollment proved.
func makeCSR(key crypto.Signer) (string, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return "", fmt.Errorf("keybound: certificate request: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// post sends one issuance request over tr, a transport of its own that it
// closes, and checks the answer: a chain whose leaf certifies key, for the
// expected client when one is known.
func (s *CertificateSource) post(ctx context.Context, op string, tr *http.Transport, u string, body []byte, key crypto.Signer, wantClient string) (*certState, error) {
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("keybound: workload certificate %s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	c := &http.Client{Transport: tr, Timeout: s.timeout, CheckRedirect: noRedirect}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("keybound: workload certificate %s: %w", op, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxWorkloadResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("keybound: workload certificate %s: read response: %w", op, err)
	}
	if len(raw) > maxWorkloadResponseBytes {
		return nil, fmt.Errorf("keybound: workload certificate %s: response is larger than %d bytes", op, maxWorkloadResponseBytes)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		e := &CertificateError{Op: op, StatusCode: resp.StatusCode}
		var p struct {
			Type   string `json:"type"`
			Detail string `json:"detail"`
			Code   string `json:"error"`
		}
		if json.Unmarshal(raw, &p) == nil {
			e.Type, e.Detail, e.Code = p.Type, p.Detail, p.Code
		}
		return nil, e
	}
	var v struct {
		ClientID         string `json:"client_id"`
		CertificateChain string `json:"certificate_chain"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("keybound: workload certificate %s: the answer is not a certificate JSON object", op)
	}
	cert, err := parseIssued(v.CertificateChain, key)
	if err != nil {
		return nil, fmt.Errorf("keybound: workload certificate %s: %w", op, err)
	}
	if v.ClientID == "" || (wantClient != "" && v.ClientID != wantClient) {
		return nil, fmt.Errorf("keybound: workload certificate %s: issued to client %q, not %q", op, v.ClientID, wantClient)
	}
	now := s.now()
	if !now.Before(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("keybound: workload certificate %s: the issued certificate has already expired", op)
	}
	return &certState{cert: cert, clientID: v.ClientID, renewAt: renewAt(now, cert.Leaf.NotAfter, randomJitter)}, nil
}

// parseIssued decodes a PEM chain (leaf first) and pairs it with key,
// refusing a leaf that certifies another key or is not for client auth.
func parseIssued(chainPEM string, key crypto.Signer) (*tls.Certificate, error) {
	var ders [][]byte
	rest := []byte(chainPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("the chain holds a %q block", b.Type)
		}
		if len(ders) == maxChainCerts {
			return nil, fmt.Errorf("the chain has more than %d certificates", maxChainCerts)
		}
		ders = append(ders, b.Bytes)
	}
	if len(ders) == 0 {
		return nil, errors.New("the answer holds no certificate")
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, fmt.Errorf("the issued certificate does not parse: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, errors.New("the issued certificate is for another key")
	}
	clientAuth := false
	for _, u := range leaf.ExtKeyUsage {
		clientAuth = clientAuth || u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny
	}
	if !clientAuth {
		return nil, errors.New("the issued certificate is not for TLS client authentication")
	}
	return &tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: leaf}, nil
}

// Client returns an *http.Client that authorizes requests with tokens from
// c and presents the workload certificate, keeping certificate, connections
// and token paired across renewals (see "Renewal design" above). With c.Key
// nil the token service authenticates the client by the certificate
// (tls_client_auth); an mTLS-bound token (tls_client_certificate_bound) is
// bound to it; with c.DPoP the token is DPoP-bound and the certificate only
// authenticates. An empty c.ClientID means the certificate's client.
//
// c.HTTPClient's Transport, when set, must be an *http.Transport; it and its
// TLS configuration are cloned per certificate, and its Timeout is kept.
// Make one client per Config and reuse it: every client made is renewed
// with the source until ctx ends.
func (s *CertificateSource) Client(ctx context.Context, c *Config) (*http.Client, error) {
	rt, err := s.Transport(ctx, c)
	if err != nil {
		return nil, err
	}
	var timeout time.Duration
	if c.HTTPClient != nil {
		timeout = c.HTTPClient.Timeout
	}
	return &http.Client{Transport: rt, Timeout: timeout, CheckRedirect: sameOriginRedirect}, nil
}

// Transport is Client's RoundTripper, for callers that build their own
// http.Client.
func (s *CertificateSource) Transport(ctx context.Context, c *Config) (http.RoundTripper, error) {
	if c == nil {
		return nil, errors.New("keybound: invalid config: nil")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	cc := *c
	base := s.base
	if c.HTTPClient != nil && c.HTTPClient.Transport != nil {
		var err error
		if base, err = baseTransport(c.HTTPClient); err != nil {
			return nil, fmt.Errorf("keybound: invalid config: %w", err)
		}
	}
	if cc.ClientID == "" {
		cc.ClientID = s.ClientID()
	}
	if _, err := cc.validate(); err != nil {
		return nil, err
	}
	if cc.DPoP && cc.DPoPKey == nil {
		// One DPoP key for every generation: DPoP tokens are not bound to
		// the certificate.
		k, err := GenerateKey()
		if err != nil {
			return nil, err
		}
		cc.DPoPKey = k
	}
	t := &certTransport{ctx: ctx, cfg: cc, base: base, src: s}
	if cc.HTTPClient != nil {
		t.timeout = cc.HTTPClient.Timeout
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.gen.Store(t.build(s.cur.Load()))
	s.clients = append(s.clients, t)
	return t, nil
}

// certTransport is the RoundTripper of Client: the current generation,
// swapped whole on renewal.
type certTransport struct {
	ctx     context.Context
	cfg     Config
	base    *http.Transport
	timeout time.Duration
	src     *CertificateSource
	gen     atomic.Pointer[generation]
}

// generation is one certificate with the connections made with it and the
// tokens issued for it.
type generation struct {
	st *certState
	hc *http.Transport
	rt *Transport
}

func (t *certTransport) build(st *certState) *generation {
	hc := transportWith(t.base, st.cert)
	cc := t.cfg
	cc.HTTPClient = &http.Client{Transport: hc, Timeout: t.timeout}
	return &generation{st: st, hc: hc, rt: &Transport{Source: newTokenSource(t.ctx, &cc), Base: hc}}
}

// swap installs a generation for st once it has a token, then retires the
// old one. It is called with the source's mutex held.
func (t *certTransport) swap(ctx context.Context, st *certState) {
	g := t.build(st)
	pctx, cancel := context.WithTimeout(ctx, prefetchTimeout)
	if _, err := g.rt.Source.TokenContext(pctx); err != nil {
		// The new generation fetches again on its first request.
		t.src.log.LogAttrs(ctx, slog.LevelWarn, "keybound: first token for the renewed certificate failed", slog.String("error", err.Error()))
	}
	cancel()
	old := t.gen.Swap(g)
	old.hc.CloseIdleConnections()
	time.AfterFunc(retireGrace, old.hc.CloseIdleConnections)
}

// RoundTrip sends req with one generation's token and connections.
func (t *certTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	g := t.gen.Load()
	if err := t.src.usable(g.st); err != nil {
		closeBody(req.Body)
		return nil, err
	}
	return g.rt.RoundTrip(req)
}

// CloseIdleConnections closes the current generation's idle connections.
func (t *certTransport) CloseIdleConnections() { t.gen.Load().hc.CloseIdleConnections() }
