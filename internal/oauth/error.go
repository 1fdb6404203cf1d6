// Package oauth is the wire vocabulary of OAuth 2.0 errors: the error codes of
// RFC 6749 section 5.2, RFC 6750 section 3.1 and RFC 9449, the Error type that
// carries one, and its rendering as a JSON body or a WWW-Authenticate challenge.
//
// It holds no policy: it never decides whether a request is allowed, it only
// says how a refusal is spelled on the wire. Edges (authserver, gateway) build
// these errors; mechanisms return their own sentinel errors.
package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Error codes. The names follow the RFC that defines each one.
const (
	// RFC 6749 section 5.2.
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidClient        = "invalid_client"
	CodeInvalidGrant         = "invalid_grant"
	CodeUnauthorizedClient   = "unauthorized_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
	CodeInvalidScope         = "invalid_scope"
	// RFC 8707 section 2.
	CodeInvalidTarget = "invalid_target"
	// RFC 6750 section 3.1.
	CodeInvalidToken      = "invalid_token"
	CodeInsufficientScope = "insufficient_scope"
	// RFC 9449 sections 5 and 8.
	CodeInvalidDPoPProof = "invalid_dpop_proof"
	CodeUseDPoPNonce     = "use_dpop_nonce"
	// RFC 7009 section 2.2.1.
	CodeUnsupportedTokenType = "unsupported_token_type"
	// RFC 6749 section 4.1.2.1; used for internal failures so callers never
	// see a stack trace.
	CodeServerError = "server_error"
)

// Error is one OAuth error as sent to a client. Description tells the caller
// what to fix; it must never echo a secret, an assertion or a token.
//
// Status is the HTTP status; Challenge, when set, is the auth scheme for a
// WWW-Authenticate header ("Bearer", "DPoP", "Basic"). Nonce, when set, is sent
// as the DPoP-Nonce header (RFC 9449 section 8).
type Error struct {
	Code        string
	Description string
	Status      int
	Challenge   string
	// WWWAuthenticate, when set, is the complete challenge to send and takes
	// precedence over Challenge (resource servers add realm and algs).
	WWWAuthenticate string
	Nonce           string
	// Cause is the internal reason, for logs only. It is never rendered.
	Cause error
}

func (e *Error) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// Unwrap returns the internal cause so callers can branch with errors.Is.
func (e *Error) Unwrap() error { return e.Cause }

// New returns an Error with the status RFC 6749 section 5.2 implies for code.
func New(code, description string) *Error {
	return &Error{Code: code, Description: description, Status: defaultStatus(code)}
}

// Wrap is New with an internal cause kept for logging.
func Wrap(code, description string, cause error) *Error {
	e := New(code, description)
	e.Cause = cause
	return e
}

func defaultStatus(code string) int {
	switch code {
	case CodeInvalidClient, CodeInvalidToken, CodeInvalidDPoPProof, CodeUseDPoPNonce:
		return http.StatusUnauthorized
	case CodeInsufficientScope:
		return http.StatusForbidden
	case CodeServerError:
		return http.StatusInternalServerError
	default:
		return http.StatusBadRequest
	}
}

// As returns err as an *Error, or a server_error that hides err's text.
func As(err error) *Error {
	var oe *Error
	if errors.As(err, &oe) {
		return oe
	}
	return Wrap(CodeServerError, "the server could not process the request; try again later", err)
}

// body is the JSON shape of RFC 6749 section 5.2.
type body struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// WriteJSON renders e as an RFC 6749 section 5.2 JSON response, with the
// WWW-Authenticate and DPoP-Nonce headers it calls for and no caching.
func WriteJSON(w http.ResponseWriter, e *Error) {
	h := w.Header()
	SetHeaders(h, e)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	status := e.Status
	if status == 0 {
		status = defaultStatus(e.Code)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body{Error: e.Code, ErrorDescription: descriptionSafe(e.Description)})
}

// descriptionSafe returns desc limited to the characters RFC 6749 section
// 5.2 allows in error_description (%x20-21 / %x23-5B / %x5D-7E): a double
// quote becomes a single quote, so a quoted value stays readable; a
// backslash, a control character and every byte of a non-ASCII character
// are dropped. Descriptions quote what the client sent (a grant_type, a
// scope, a DPoP htu), so this is applied where every body is written
// rather than trusted to each message; a strict client parser would
// otherwise reject the error it is meant to act on.
func descriptionSafe(desc string) string {
	clean := true
	for i := 0; i < len(desc); i++ {
		if !descriptionByte(desc[i]) {
			clean = false
			break
		}
	}
	if clean {
		return desc
	}
	b := make([]byte, 0, len(desc))
	for i := 0; i < len(desc); i++ {
		switch c := desc[i]; {
		case c == '"':
			b = append(b, '\'')
		case descriptionByte(c):
			b = append(b, c)
		}
	}
	return string(b)
}

// descriptionByte reports whether c may appear in error_description.
func descriptionByte(c byte) bool {
	return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\'
}

// SetHeaders sets the WWW-Authenticate and DPoP-Nonce headers e calls for.
func SetHeaders(h http.Header, e *Error) {
	switch {
	case e.WWWAuthenticate != "":
		h.Set("WWW-Authenticate", e.WWWAuthenticate)
	case e.Challenge != "":
		h.Set("WWW-Authenticate", Challenge(e.Challenge, "", e))
	}
	if e.Nonce != "" {
		h.Set("DPoP-Nonce", e.Nonce)
	}
}

// Challenge builds a WWW-Authenticate value (RFC 6750 section 3, RFC 9449
// section 7.1) for scheme. realm and e may be empty; algs lists the DPoP
// algorithms the server accepts when scheme is DPoP.
func Challenge(scheme, realm string, e *Error, params ...string) string {
	var b strings.Builder
	b.WriteString(scheme)
	sep := " "
	add := func(k, v string) {
		b.WriteString(sep)
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(quoteSafe(v))
		b.WriteString(`"`)
		sep = ", "
	}
	if realm != "" {
		add("realm", realm)
	}
	if e != nil && e.Code != "" && e.Code != CodeServerError {
		add("error", e.Code)
		if e.Description != "" {
			add("error_description", e.Description)
		}
	}
	for i := 0; i+1 < len(params); i += 2 {
		add(params[i], params[i+1])
	}
	return b.String()
}

// quoteSafe drops characters that RFC 6750 section 3 forbids inside a quoted
// auth-param (double quote, backslash, and anything outside %x20-7E), so a
// description can never break the header.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
