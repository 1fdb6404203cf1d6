package workload

import "errors"

// Kinds of refusal. Every error the Service returns for a caller's mistake
// is an *Error whose Kind is one of these, so edges choose the wire status
// and code with errors.Is; anything else is an internal failure.
var (
	// ErrBadRequest: a malformed CSR or request, or a lifetime out of range.
	ErrBadRequest = errors.New("workload: bad request")
	// ErrWeakKey: the CSR's public key is of an unsupported type or too weak.
	ErrWeakKey = errors.New("workload: weak or unsupported key")
	// ErrIdentityMismatch: the CSR asks for an identity other than the
	// enrolling one.
	ErrIdentityMismatch = errors.New("workload: requested identity differs from the enrolling identity")
	// ErrJoinToken: the join token is malformed, unknown or wrong.
	ErrJoinToken = errors.New("workload: invalid join token")
	// ErrJoinTokenExpired and ErrJoinTokenUsed: a genuine join token that
	// can no longer be used.
	ErrJoinTokenExpired = errors.New("workload: join token expired")
	ErrJoinTokenUsed    = errors.New("workload: join token already used")
	// ErrClientNotUsable: the identity is suspended, revoked or expired.
	ErrClientNotUsable = errors.New("workload: identity not usable")
	// ErrMethod: the identity's registration cannot hold workload
	// certificates (static secrets, self-signed certificates).
	ErrMethod = errors.New("workload: identity cannot hold workload certificates")
	// ErrCertificate: no certificate, or one this CA did not issue, was
	// presented for renewal.
	ErrCertificate = errors.New("workload: certificate not acceptable")
	// ErrCertRevoked and ErrCertExpired: a workload certificate that was
	// revoked or is outside its validity period.
	ErrCertRevoked = errors.New("workload: certificate revoked")
	ErrCertExpired = errors.New("workload: certificate expired")
	// ErrAlreadyRevoked: revoking a certificate twice.
	ErrAlreadyRevoked = errors.New("workload: certificate already revoked")
	// ErrNotFound: no such certificate or identity.
	ErrNotFound = errors.New("workload: not found")
	// ErrLimit: too many live certificates or join tokens for one identity.
	ErrLimit = errors.New("workload: limit reached")
)

// Error is a refusal with a description for the caller. Detail says what to
// fix and never holds a key, a token or a whole CSR; Cause is for logs.
type Error struct {
	Kind   error
	Detail string
	Cause  error
}

func (e *Error) Error() string { return "workload: " + e.Detail }

// Unwrap exposes Kind and Cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

func refuse(kind error, detail string) *Error { return &Error{Kind: kind, Detail: detail} }

func refuseWrap(kind error, detail string, cause error) *Error {
	return &Error{Kind: kind, Detail: detail, Cause: cause}
}

// wire is how each Kind reads on the wire: HTTP status, problem type slug
// and title, and the RFC 6749 section 5.2 error code the problem repeats.
// Two edges (the enrollment API and the admin API) render these refusals;
// the table sits beside the kinds so a new kind cannot go unrendered.
var wire = []struct {
	kind        error
	status      int
	slug, title string
	code        string
}{
	{ErrBadRequest, 400, "invalid-request", "Invalid request", "invalid_request"},
	{ErrWeakKey, 400, "weak-key", "Weak or unsupported key", "invalid_request"},
	{ErrIdentityMismatch, 403, "identity-mismatch", "Requested identity differs", "access_denied"},
	{ErrJoinToken, 400, "invalid-join-token", "Invalid join token", "invalid_grant"},
	{ErrJoinTokenExpired, 400, "join-token-expired", "Join token expired", "invalid_grant"},
	{ErrJoinTokenUsed, 400, "join-token-used", "Join token already used", "invalid_grant"},
	{ErrClientNotUsable, 403, "identity-not-usable", "Identity not usable", "unauthorized_client"},
	{ErrMethod, 403, "unsupported-auth-method", "Identity cannot hold certificates", "unauthorized_client"},
	{ErrCertificate, 401, "invalid-certificate", "Certificate not acceptable", "invalid_client"},
	{ErrCertRevoked, 401, "certificate-revoked", "Certificate revoked", "invalid_client"},
	{ErrCertExpired, 401, "certificate-expired", "Certificate expired", "invalid_client"},
	{ErrAlreadyRevoked, 409, "already-revoked", "Already revoked", ""},
	{ErrNotFound, 404, "not-found", "Not found", ""},
	{ErrLimit, 409, "limit-reached", "Limit reached", ""},
}

// Problem describes a refusal of the Service for the wire: status, problem
// type slug, title, the detail to show and the RFC 6749 error code. ok is
// false for errors that are not refusals (internal failures).
func Problem(err error) (status int, slug, title, detail, code string, ok bool) {
	var e *Error
	if !errors.As(err, &e) {
		return 0, "", "", "", "", false
	}
	for _, w := range wire {
		if errors.Is(e.Kind, w.kind) {
			return w.status, w.slug, w.title, e.Detail, w.code, true
		}
	}
	return 0, "", "", "", "", false
}
