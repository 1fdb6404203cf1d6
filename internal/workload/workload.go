// Package workload decides who gets a workload certificate: it validates
// CSRs, names each registered identity by a SPIFFE ID, checks one-time join
// tokens and renewal certificates, issues short-lived X.509 client
// certificates through the workload CA (package ca), records every issuance
// and revocation with its admin event, and keeps the in-memory revocation
// view and the CRL that the token service and the gateway consult.
//
// It does not speak HTTP and does not authenticate private_key_jwt callers
// (the edge does, then calls Issue). It never sees or stores a workload's
// private key, stores join tokens only as SHA-256 hashes, and fails closed:
// any doubt refuses and issues nothing.
package workload

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keybound/keybound/internal/ca"
	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// Via values: how the workload proved who it is.
const (
	ViaPrivateKeyJWT = "private_key_jwt"
	ViaJoinToken     = "join_token"
	ViaRenewal       = "renewal"
	ViaAdmin         = "admin"
)

// Admin event actions.
const (
	ActionIssue           = "cert.issue"
	ActionRevoke          = "cert.revoke"
	ActionJoinTokenCreate = "join_token.create"
)

// Store is the part of the storage contract the service uses.
type Store interface {
	GetClient(ctx context.Context, id string) (*identity.Client, error)
	CreateCertificate(ctx context.Context, c *store.WorkloadCertificate, joinTokenID string, maxLive int, ev store.AdminEvent) error
	GetCertificate(ctx context.Context, serial string) (*store.WorkloadCertificate, error)
	ListCertificates(ctx context.Context, f store.CertificateFilter) ([]*store.WorkloadCertificate, error)
	CountLiveCertificates(ctx context.Context, clientID string, now time.Time) (int, error)
	RevokeCertificate(ctx context.Context, serial string, at time.Time, reason string, ev store.AdminEvent) error
	CertificatesRevokedSince(ctx context.Context, since, now time.Time) ([]*store.WorkloadCertificate, error)
	CreateJoinToken(ctx context.Context, t *store.JoinToken, maxLive int, ev store.AdminEvent) error
	GetJoinToken(ctx context.Context, id string) (*store.JoinToken, error)
}

// Config is what the service reads from the configuration.
type Config struct {
	// TrustDomain names every identity spiffe://TrustDomain/client/ID.
	TrustDomain string
	// DefaultLifetime is used when a request names none; MaxLifetime caps
	// what a request may ask for. Zero means DefaultLifetime (the constant)
	// for both.
	DefaultLifetime time.Duration
	MaxLifetime     time.Duration
	// JoinTokenLifetime is the default join token lifetime; zero means
	// DefaultJoinTokenLifetime.
	JoinTokenLifetime time.Duration
	// CRLURL, when set, is written into every certificate as its CRL
	// distribution point.
	CRLURL string
}

// Service issues, renews and revokes workload certificates. Fields must not
// change after first use; methods are then safe for concurrent use.
type Service struct {
	Store  Store
	Issuer *ca.Issuer
	View   *View
	Config Config
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	crlMu   sync.Mutex
	crl     []byte
	crlGen  uint64
	crlMade time.Time
}

// New checks cfg and returns a service with a fresh revocation view over
// st. Call View.Sync before serving.
func New(st Store, issuer *ca.Issuer, cfg Config, now func() time.Time) (*Service, error) {
	if err := ValidTrustDomain(cfg.TrustDomain); err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	if cfg.DefaultLifetime == 0 {
		cfg.DefaultLifetime = DefaultLifetime
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = max(cfg.DefaultLifetime, DefaultLifetime)
	}
	if cfg.JoinTokenLifetime == 0 {
		cfg.JoinTokenLifetime = DefaultJoinTokenLifetime
	}
	switch {
	case cfg.DefaultLifetime < MinLifetime || cfg.DefaultLifetime > cfg.MaxLifetime:
		return nil, fmt.Errorf("workload: the default lifetime %s must be between %s and the maximum %s", cfg.DefaultLifetime, MinLifetime, cfg.MaxLifetime)
	case cfg.MaxLifetime > MaxLifetimeCap:
		return nil, fmt.Errorf("workload: the maximum lifetime %s is above %s", cfg.MaxLifetime, MaxLifetimeCap)
	case cfg.JoinTokenLifetime < MinJoinTokenLifetime || cfg.JoinTokenLifetime > MaxJoinTokenLifetime:
		return nil, fmt.Errorf("workload: the join token lifetime %s must be between %s and %s", cfg.JoinTokenLifetime, MinJoinTokenLifetime, MaxJoinTokenLifetime)
	case issuer == nil || st == nil:
		return nil, errors.New("workload: a store and an issuer are required")
	}
	if now == nil {
		now = time.Now
	}
	return &Service{Store: st, Issuer: issuer, View: NewView(st, now), Config: cfg, Now: now}, nil
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// SPIFFEID returns the SPIFFE ID clientID's certificates carry, or "" if
// the id cannot be one.
func (s *Service) SPIFFEID(clientID string) string {
	id, err := SPIFFEID(s.Config.TrustDomain, clientID)
	if err != nil {
		return ""
	}
	return id
}

// ClientOf returns the client a certificate issued by this workload CA was
// issued to, from its one SPIFFE ID URI SAN, or false for any other
// certificate. It checks no signature or validity: call it on a chain that
// already verified.
func (s *Service) ClientOf(cert *x509.Certificate) (string, bool) {
	if cert == nil || !s.issuedHere(cert) || len(cert.URIs) != 1 {
		return "", false
	}
	return ClientFromSPIFFEID(s.Config.TrustDomain, cert.URIs[0])
}

// IssuedBy reports whether chain, one that verified (leaf first, root
// last), is this CA's: it ends at one of this CA's roots and, for an
// operator-supplied CA, whose root may sign other CAs as well, the leaf's
// issuer holds this CA's issuing key. An issuer name (issuedHere) proves
// neither. keybound's own root signs only its intermediates, which are
// re-keyed when re-issued, so for it the root is the proof.
func (s *Service) IssuedBy(chain []*x509.Certificate) bool {
	if len(chain) < 2 || !slices.ContainsFunc(s.Issuer.Roots, chain[len(chain)-1].Equal) {
		return false
	}
	if !s.Issuer.External {
		return true
	}
	pub, ok := chain[1].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(s.Issuer.Cert.PublicKey)
}

// issuedHere compares issuer names only: after the intermediate is
// re-issued its name stays, and certificates of the old one are still this
// CA's to revoke. A foreign certificate with the same issuer name can only
// be refused more often, never less.
func (s *Service) issuedHere(cert *x509.Certificate) bool {
	return string(cert.RawIssuer) == string(s.Issuer.Cert.RawSubject)
}

// CheckCert reports whether cert may still be used: a certificate of this
// CA that is revoked (ErrCertRevoked) or outside its validity period at now
// (ErrCertExpired) is refused; any other certificate is refused only if its
// serial was revoked here. It reads memory only.
func (s *Service) CheckCert(cert *x509.Certificate, now time.Time) error {
	if cert == nil {
		return nil
	}
	if s.View.Revoked(SerialHex(cert.SerialNumber)) {
		return refuse(ErrCertRevoked, "the client certificate has been revoked; enroll again for a new one")
	}
	if s.issuedHere(cert) && (now.Before(cert.NotBefore) || now.After(cert.NotAfter)) {
		return refuse(ErrCertExpired, "the client certificate has expired; renew it before it expires or enroll again")
	}
	return nil
}

// Request is one issuance for an identity that has already proved itself.
type Request struct {
	ClientID string
	// CSR is a PKCS#10 request in PEM or DER.
	CSR []byte
	// Lifetime is what the caller asks for; zero means the default.
	Lifetime time.Duration
	// Via says how the identity proved itself (ViaPrivateKeyJWT, ViaAdmin).
	Via string
	// Actor is who asked, for the admin log.
	Actor string

	renewedFrom string
	joinTokenID string
}

// Issued is an issued certificate.
type Issued struct {
	Record *store.WorkloadCertificate
	Cert   *x509.Certificate
	// ChainPEM is the leaf followed by the intermediates: what a workload
	// presents in its TLS handshake.
	ChainPEM []byte
}

// Issue validates req and issues a certificate. The caller must have
// authenticated req.ClientID (private_key_jwt) or be an administrator.
func (s *Service) Issue(ctx context.Context, req Request) (*Issued, error) {
	if req.Via != ViaPrivateKeyJWT && req.Via != ViaAdmin && req.Via != ViaJoinToken && req.Via != ViaRenewal {
		return nil, fmt.Errorf("workload: unknown enrollment method %q", req.Via)
	}
	now := s.now()
	spiffeID, err := SPIFFEID(s.Config.TrustDomain, req.ClientID)
	if err != nil {
		return nil, refuse(ErrNotFound, "no identity with that client id is registered")
	}
	lifetime := req.Lifetime
	if lifetime == 0 {
		lifetime = s.Config.DefaultLifetime
	}
	if lifetime < MinLifetime || lifetime > s.Config.MaxLifetime {
		return nil, refuse(ErrBadRequest, fmt.Sprintf("the lifetime must be between %s and %s", fmtDur(MinLifetime), fmtDur(s.Config.MaxLifetime)))
	}
	csr, err := ParseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	if err := checkIdentity(csr, req.ClientID, spiffeID); err != nil {
		return nil, err
	}
	c, err := s.Store.GetClient(ctx, req.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(ErrNotFound, "no identity with that client id is registered")
	}
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	// These checks give the precise refusal and spare the CA a signature
	// in the common case; they race with revocations and with concurrent
	// issuances, so CreateCertificate repeats them in the transaction that
	// stores the certificate, and that is what enforces them.
	if err := usable(c, now); err != nil {
		return nil, err
	}
	live, err := s.Store.CountLiveCertificates(ctx, c.ID, now)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	if live >= MaxLiveCertsPerClient {
		return nil, certLimit()
	}

	notAfter := now.Add(lifetime)
	// A certificate never outlives its identity's registration or its
	// issuer: either would leave a credential nobody governs.
	if c.ExpiresAt.Before(notAfter) {
		notAfter = c.ExpiresAt
	}
	if s.Issuer.Cert.NotAfter.Before(notAfter) {
		notAfter = s.Issuer.Cert.NotAfter
	}
	if notAfter.Sub(now) < MinLifetime {
		return nil, refuse(ErrClientNotUsable, "the identity expires in less than "+fmtDur(MinLifetime)+"; ask its owner to renew the registration")
	}
	uri, err := url.Parse(spiffeID)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: c.ID, Organization: []string{"keybound workload"}, OrganizationalUnit: []string{c.Environment}},
		URIs:         []*url.URL{uri},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		// SPIFFE X.509-SVID section 4.1: a leaf sets basicConstraints
		// with cA false, so no verifier can take it for a CA; section 4.4:
		// when EKU is present it holds both serverAuth and clientAuth.
		// Renewal and tls_client_auth still verify for clientAuth.
		BasicConstraintsValid: true,
		IsCA:                  false,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	if s.Config.CRLURL != "" {
		tmpl.CRLDistributionPoints = []string{s.Config.CRLURL}
	}
	cert, err := s.Issuer.Issue(tmpl, csr.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	sum := sha256.Sum256(cert.Raw)
	rec := &store.WorkloadCertificate{
		Serial:      SerialHex(cert.SerialNumber),
		ClientID:    c.ID,
		SPIFFEID:    spiffeID,
		Thumbprint:  base64.RawURLEncoding.EncodeToString(sum[:]),
		IssuedAt:    now,
		NotBefore:   cert.NotBefore,
		NotAfter:    cert.NotAfter,
		Via:         req.Via,
		RenewedFrom: req.renewedFrom,
		DER:         cert.Raw,
	}
	changes := map[string]string{
		"serial":    rec.Serial,
		"spiffe_id": spiffeID,
		"not_after": rec.NotAfter.Format(time.RFC3339),
		"via":       req.Via,
	}
	if req.renewedFrom != "" {
		changes["renewed_from"] = req.renewedFrom
	}
	if req.joinTokenID != "" {
		changes["join_token"] = req.joinTokenID
	}
	ev := store.AdminEvent{Time: now, Actor: req.Actor, Action: ActionIssue, Target: c.ID, Changes: changes}
	if err := s.Store.CreateCertificate(ctx, rec, req.joinTokenID, MaxLiveCertsPerClient, ev); err != nil {
		// Each case lost a race with a change made after the checks above.
		switch {
		case errors.Is(err, store.ErrClientNotUsable):
			return nil, refuseWrap(ErrClientNotUsable, "the identity was suspended, revoked or expired while the certificate was issued; no certificate is issued for it", err)
		case errors.Is(err, store.ErrRenewedFromRevoked):
			return nil, refuseWrap(ErrCertRevoked, "the presented certificate has been revoked; it cannot be renewed", err)
		case errors.Is(err, store.ErrLimit):
			return nil, certLimit()
		case errors.Is(err, store.ErrJoinTokenSpent):
			return nil, refuse(ErrJoinTokenUsed, "the join token was already used; ask an operator for a new one")
		case errors.Is(err, store.ErrNotFound) && req.joinTokenID != "":
			return nil, refuse(ErrJoinToken, "the join token is not valid")
		case errors.Is(err, store.ErrNotFound):
			return nil, refuse(ErrNotFound, "no identity with that client id is registered")
		}
		return nil, fmt.Errorf("workload: %w", err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	chain = append(chain, s.Issuer.ChainPEM()...)
	return &Issued{Record: rec, Cert: cert, ChainPEM: chain}, nil
}

// certLimit refuses an issuance past MaxLiveCertsPerClient.
func certLimit() error {
	return refuse(ErrLimit, fmt.Sprintf("the identity already holds %d live certificates; revoke unused ones or let them expire", MaxLiveCertsPerClient))
}

// usable refuses identities that cannot hold a certificate now.
func usable(c *identity.Client, now time.Time) error {
	if err := c.Usable(now); err != nil {
		word := "not active"
		switch {
		case errors.Is(err, identity.ErrSuspended):
			word = "suspended"
		case errors.Is(err, identity.ErrRevoked):
			word = "revoked"
		case errors.Is(err, identity.ErrExpired):
			word = "expired"
		}
		return refuseWrap(ErrClientNotUsable, "the identity is "+word+"; no certificate is issued for it", err)
	}
	switch c.AuthMethod {
	case identity.AuthPrivateKeyJWT, identity.AuthTLSClient:
		return nil
	}
	return refuse(ErrMethod, fmt.Sprintf("the identity authenticates with %s; workload certificates are issued to private_key_jwt and tls_client_auth identities", c.AuthMethod))
}

// EnrollWithJoinToken issues a certificate to the identity a one-time join
// token is bound to, consuming the token in the same transaction. A token
// is consumed only by a successful issuance.
func (s *Service) EnrollWithJoinToken(ctx context.Context, token string, csr []byte, lifetime time.Duration) (*Issued, error) {
	id, secret, ok := parseJoinToken(token)
	if !ok {
		return nil, refuse(ErrJoinToken, "the join token is malformed; pass it exactly as `keybound cert join-token` printed it")
	}
	t, err := s.Store.GetJoinToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(ErrJoinToken, "the join token is not valid")
	}
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	sum := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(sum[:], t.Hash) != 1 {
		return nil, refuse(ErrJoinToken, "the join token is not valid")
	}
	now := s.now()
	switch {
	case !t.UsedAt.IsZero():
		return nil, refuse(ErrJoinTokenUsed, "the join token was already used; ask an operator for a new one")
	case !now.Before(t.ExpiresAt):
		return nil, refuse(ErrJoinTokenExpired, "the join token expired at "+t.ExpiresAt.Format(time.RFC3339)+"; ask an operator for a new one")
	}
	return s.Issue(ctx, Request{ClientID: t.ClientID, CSR: csr, Lifetime: lifetime, Via: ViaJoinToken, Actor: t.ClientID, joinTokenID: t.ID})
}

// Renew issues a new certificate to the identity named by the current one,
// which the workload presented in its TLS handshake (chain: leaf first).
// The presented certificate must verify to this CA's roots now, be on
// record, and not be revoked; the new one may certify a new key.
//
// Renewal supersedes nothing: the presented certificate is not revoked and
// stays valid until it expires, because connections made with it and
// tokens bound to it are still in use while the workload switches over.
// Revoke it with reason superseded to end it early.
func (s *Service) Renew(ctx context.Context, chain []*x509.Certificate, csr []byte, lifetime time.Duration) (*Issued, error) {
	if len(chain) == 0 {
		return nil, refuse(ErrCertificate, "present the current workload certificate in the TLS handshake to renew it")
	}
	if len(chain) > MaxPresentedChain {
		return nil, refuse(ErrCertificate, fmt.Sprintf("the presented chain is longer than %d certificates", MaxPresentedChain))
	}
	leaf, now := chain[0], s.now()
	if !s.issuedHere(leaf) {
		return nil, refuse(ErrCertificate, "the presented certificate was not issued by keybound's workload CA; enroll with private_key_jwt or a join token")
	}
	if now.After(leaf.NotAfter) {
		return nil, refuse(ErrCertExpired, "the presented certificate has expired; enroll again with private_key_jwt or a join token")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, c := range s.Issuer.Chain {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.Issuer.Pool(), Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, refuseWrap(ErrCertificate, "the presented certificate does not verify to keybound's workload CA", err)
	}
	clientID, ok := s.ClientOf(leaf)
	if !ok {
		return nil, refuse(ErrCertificate, "the presented certificate names no keybound identity")
	}
	serial := SerialHex(leaf.SerialNumber)
	rec, err := s.Store.GetCertificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(ErrCertificate, "the presented certificate is not on record; enroll again")
	}
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	if rec.ClientID != clientID || subtle.ConstantTimeCompare(rec.DER, leaf.Raw) != 1 {
		return nil, refuse(ErrCertificate, "the presented certificate does not match the one on record")
	}
	if !rec.RevokedAt.IsZero() || s.View.Revoked(serial) {
		return nil, refuse(ErrCertRevoked, "the presented certificate has been revoked; it cannot be renewed")
	}
	return s.Issue(ctx, Request{ClientID: clientID, CSR: csr, Lifetime: lifetime, Via: ViaRenewal, Actor: clientID, renewedFrom: serial})
}

// NormalizeSerial accepts a serial in hex, with or without colons, a 0x
// prefix or leading zeros, and returns the store's form.
func NormalizeSerial(s string) (string, bool) {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	s = strings.TrimPrefix(s, "0x")
	if s == "" || len(s) > 64 {
		return "", false
	}
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return "", false
	}
	return n.Text(16), true
}

// Revoke revokes the certificate with serial for an unspecified reason,
// with reason as the free-text comment. It takes effect in this process
// (token service and gateway) before Revoke returns.
func (s *Service) Revoke(ctx context.Context, actor, serial, reason string) (*store.WorkloadCertificate, error) {
	return s.RevokeWithReason(ctx, actor, serial, ReasonUnspecified, reason)
}

// RevokeWithReason is Revoke with an RFC 5280 reason code, which the CRL
// entry carries, and a free-text comment for the inventory and the log.
func (s *Service) RevokeWithReason(ctx context.Context, actor, serial string, code Reason, comment string) (*store.WorkloadCertificate, error) {
	norm, ok := NormalizeSerial(serial)
	if !ok {
		return nil, refuse(ErrBadRequest, "the serial must be a hexadecimal number, as `keybound cert list` shows it")
	}
	if _, ok := reasonNames[code]; !ok {
		return nil, refuse(ErrBadRequest, "the revocation reason must be one of "+strings.Join(ReasonNames, ", "))
	}
	comment = strings.TrimSpace(comment)
	if err := checkReason(comment); err != nil {
		return nil, err
	}
	rec, err := s.Store.GetCertificate(ctx, norm)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(ErrNotFound, "no certificate with that serial is on record")
	}
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	err = s.revoke(ctx, actor, rec, code, comment)
	if code == ReasonKeyCompromise && (err == nil || errors.Is(err, ErrAlreadyRevoked)) {
		// Even when rec was revoked before for another reason: the key
		// compromise is news about what rec's holder could have renewed.
		if _, cerr := s.revokeRenewals(ctx, actor, rec); cerr != nil {
			return rec, cerr
		}
	}
	return rec, err
}

// revokeRenewals revokes, with reason key-compromise, the live
// certificates renewed from rec, directly or through other renewals.
// Whoever held rec's compromised key could renew it into a certificate
// for a key of their own, which revoking rec alone would leave valid and
// renewable. It returns how many it revoked.
func (s *Service) revokeRenewals(ctx context.Context, actor string, rec *store.WorkloadCertificate) (int, error) {
	// A renewal can commit after a pass listed the certificates but before
	// it revoked that renewal's parent (whose revocation then refuses any
	// later renewal, in the storing transaction). So pass again until a
	// pass revokes nothing.
	total := 0
	for range maxCascadePasses {
		n, err := s.revokeRenewalsOnce(ctx, actor, rec)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
	return total, fmt.Errorf("workload: certificates renewed from %s were still being created after %d passes of revocation", rec.Serial, maxCascadePasses)
}

// maxCascadePasses bounds revokeRenewals; a renewal loop racing it gains
// one generation per pass at most.
const maxCascadePasses = 8

func (s *Service) revokeRenewalsOnce(ctx context.Context, actor string, rec *store.WorkloadCertificate) (int, error) {
	all, err := s.Store.ListCertificates(ctx, store.CertificateFilter{ClientID: rec.ClientID})
	if err != nil {
		return 0, fmt.Errorf("workload: %w", err)
	}
	children := map[string][]*store.WorkloadCertificate{}
	for _, c := range all {
		if c.RenewedFrom != "" {
			children[c.RenewedFrom] = append(children[c.RenewedFrom], c)
		}
	}
	now := s.now()
	comment := "renewed from " + rec.Serial + ", whose key was compromised"
	seen := map[string]bool{rec.Serial: true}
	queue := []string{rec.Serial}
	n := 0
	var errs []error
	for len(queue) > 0 {
		parent := queue[0]
		queue = queue[1:]
		for _, c := range children[parent] {
			if seen[c.Serial] {
				continue
			}
			seen[c.Serial] = true
			queue = append(queue, c.Serial) // its renewals too, even if it is no longer live
			if !c.RevokedAt.IsZero() || !c.NotAfter.After(now) {
				continue
			}
			if err := s.revoke(ctx, actor, c, ReasonKeyCompromise, comment); err != nil && !errors.Is(err, ErrAlreadyRevoked) {
				errs = append(errs, err)
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

// checkReason refuses a revocation comment that is too long or holds a
// control character: the comment is stored, logged with the admin event
// and printed by the CLI, where a newline or an escape sequence would
// forge lines of `keybound admin-log` or drive the operator's terminal.
func checkReason(comment string) error {
	switch {
	case len(comment) > MaxReasonLen:
		return refuse(ErrBadRequest, fmt.Sprintf("the reason is longer than %d bytes", MaxReasonLen))
	case !utf8.ValidString(comment) || strings.ContainsFunc(comment, unicode.IsControl):
		return refuse(ErrBadRequest, "the reason must be printable UTF-8 text, without control characters such as newlines or escape sequences")
	}
	return nil
}

// printable is comment with each control character replaced by '?' and
// cut to MaxReasonLen bytes, for comments keybound writes itself.
func printable(comment string) string {
	comment = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(comment, "?"))
	if len(comment) > MaxReasonLen {
		comment = strings.ToValidUTF8(comment[:MaxReasonLen], "")
	}
	return comment
}

func (s *Service) revoke(ctx context.Context, actor string, rec *store.WorkloadCertificate, code Reason, comment string) error {
	now := s.now()
	changes := map[string]string{"serial": rec.Serial, "spiffe_id": rec.SPIFFEID}
	if comment != "" {
		changes["reason"] = comment
	}
	if code != ReasonUnspecified {
		changes["reason_code"] = code.String()
	}
	reason := EncodeRevocation(code, comment)
	ev := store.AdminEvent{Time: now, Actor: actor, Action: ActionRevoke, Target: rec.ClientID, Changes: changes}
	if err := s.Store.RevokeCertificate(ctx, rec.Serial, now, reason, ev); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return refuse(ErrAlreadyRevoked, "the certificate is already revoked")
		}
		return fmt.Errorf("workload: %w", err)
	}
	rec.RevokedAt, rec.RevocationReason = now, reason
	return s.View.add(rec.Serial, rec.NotAfter)
}

// RevokeClient revokes every live certificate of clientID, so the CRL says
// what revoking the identity already enforces, with reason code
// cessation-of-operation and reason as the comment. It returns how many it
// revoked.
func (s *Service) RevokeClient(ctx context.Context, actor, clientID, reason string) (int, error) {
	live, err := s.Store.ListCertificates(ctx, store.CertificateFilter{ClientID: clientID, LiveAt: s.now()})
	if err != nil {
		return 0, fmt.Errorf("workload: %w", err)
	}
	// The revocation must happen whatever the reason says, so a bad one is
	// made printable rather than refused.
	comment := printable(strings.TrimSpace(reason))
	n := 0
	var errs []error
	for _, rec := range live {
		if err := s.revoke(ctx, actor, rec, ReasonCessationOfOperation, comment); err != nil && !errors.Is(err, ErrAlreadyRevoked) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// ClientChanged is told, after an identity's registration changed, which
// identity it was; if it is now revoked, its certificates are revoked too.
func (s *Service) ClientChanged(ctx context.Context, clientID string) error {
	c, err := s.Store.GetClient(ctx, clientID)
	if err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	if c.Status != identity.StatusRevoked {
		return nil
	}
	_, err = s.RevokeClient(ctx, "keybound", clientID, "identity revoked")
	return err
}

// Get returns one certificate record.
func (s *Service) Get(ctx context.Context, serial string) (*store.WorkloadCertificate, error) {
	norm, ok := NormalizeSerial(serial)
	if !ok {
		return nil, refuse(ErrBadRequest, "the serial must be a hexadecimal number")
	}
	rec, err := s.Store.GetCertificate(ctx, norm)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(ErrNotFound, "no certificate with that serial is on record")
	}
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	return rec, nil
}

// List returns certificate records, newest first.
func (s *Service) List(ctx context.Context, f store.CertificateFilter) ([]*store.WorkloadCertificate, error) {
	out, err := s.Store.ListCertificates(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	return out, nil
}

// Join tokens look like kbjt.ID.SECRET: ID (80 bits, base32) finds the
// stored token, SECRET (256 bits, base64url) proves it; only SHA-256(SECRET)
// is stored and it is compared in constant time.
const joinTokenPrefix = "kbjt"

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func parseJoinToken(tok string) (id, secret string, ok bool) {
	if len(tok) > MaxJoinTokenBytes {
		return "", "", false
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != joinTokenPrefix || len(parts[1]) != 16 || len(parts[2]) != 43 {
		return "", "", false
	}
	if _, err := idEncoding.DecodeString(parts[1]); err != nil {
		return "", "", false
	}
	if _, err := base64.RawURLEncoding.DecodeString(parts[2]); err != nil {
		return "", "", false
	}
	return parts[1], parts[2], true
}

// JoinToken is a created join token. Token is shown once and never stored.
type JoinToken struct {
	Token  string
	Record *store.JoinToken
}

// String keeps the token out of logs.
func (j JoinToken) String() string { return "workload.JoinToken(" + j.Record.ID + ")" }

// CreateJoinToken creates a one-time join token for clientID, valid for ttl
// (zero: the configured default).
func (s *Service) CreateJoinToken(ctx context.Context, actor, clientID string, ttl time.Duration) (*JoinToken, error) {
	if ttl == 0 {
		ttl = s.Config.JoinTokenLifetime
	}
	if ttl < MinJoinTokenLifetime || ttl > MaxJoinTokenLifetime {
		return nil, refuse(ErrBadRequest, fmt.Sprintf("the join token lifetime must be between %s and %s", fmtDur(MinJoinTokenLifetime), fmtDur(MaxJoinTokenLifetime)))
	}
	now := s.now()
	c, err := s.Store.GetClient(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(ErrNotFound, "no identity with that client id is registered")
	}
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	if s.SPIFFEID(c.ID) == "" {
		return nil, refuse(ErrMethod, "the client id cannot be named in a SPIFFE ID")
	}
	if err := usable(c, now); err != nil {
		return nil, err
	}
	var idb [10]byte
	var sec [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	id, secret := idEncoding.EncodeToString(idb[:]), base64.RawURLEncoding.EncodeToString(sec[:])
	sum := sha256.Sum256([]byte(secret))
	rec := &store.JoinToken{ID: id, ClientID: c.ID, Hash: sum[:], CreatedAt: now, ExpiresAt: now.Add(ttl), CreatedBy: actor}
	ev := store.AdminEvent{Time: now, Actor: actor, Action: ActionJoinTokenCreate, Target: c.ID,
		Changes: map[string]string{"join_token": id, "expires_at": rec.ExpiresAt.Format(time.RFC3339)}}
	// The store counts the unused tokens in the transaction that adds this
	// one: a count made before it would let concurrent calls exceed the
	// limit together.
	if err := s.Store.CreateJoinToken(ctx, rec, MaxLiveJoinTokensPerClient, ev); err != nil {
		if errors.Is(err, store.ErrLimit) {
			return nil, refuse(ErrLimit, fmt.Sprintf("the identity already has %d unused join tokens; let them expire first", MaxLiveJoinTokensPerClient))
		}
		return nil, fmt.Errorf("workload: %w", err)
	}
	return &JoinToken{Token: joinTokenPrefix + "." + id + "." + secret, Record: rec}, nil
}

// Bundle returns the trust bundle: the workload CA's roots in PEM.
func (s *Service) Bundle() []byte { return s.Issuer.BundlePEM() }

// CRL returns the current CRL (DER) of the issuing CA, listing every
// revoked certificate that has not expired. It is signed again when a
// revocation arrived or the cached one is older than crlRefresh.
func (s *Service) CRL(ctx context.Context) ([]byte, error) {
	now := s.now()
	gen := s.View.gen()
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	if s.crl != nil && s.crlGen == gen && now.Sub(s.crlMade) < crlRefresh && !now.Before(s.crlMade) {
		return s.crl, nil
	}
	revoked, err := s.Store.CertificatesRevokedSince(ctx, time.Time{}, now)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, r := range revoked {
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("workload: stored serial %q is not hex", r.Serial)
		}
		code, _ := DecodeRevocation(r.RevocationReason)
		entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: r.RevokedAt, ReasonCode: int(code)})
	}
	der, err := s.Issuer.CreateCRL(&x509.RevocationList{
		Number:                    big.NewInt(now.UnixNano()),
		ThisUpdate:                now,
		NextUpdate:                now.Add(crlValidity),
		RevokedCertificateEntries: entries,
	})
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	s.crl, s.crlGen, s.crlMade = der, gen, now
	return der, nil
}

// newSerial returns a random positive 127-bit serial (RFC 5280 section
// 4.1.2.2: at most 20 octets; CA/B Forum: at least 64 bits of entropy).
func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("workload: crypto/rand failed: " + err.Error())
	}
	return n.Add(n, big.NewInt(1))
}

// fmtDur prints whole hours or minutes the way operators write them.
func fmtDur(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}
