package authserver

import (
	"bytes"
	"encoding/base64"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/keybound/keybound/internal/oauth"
	"github.com/keybound/keybound/internal/web"
)

// Bounds on one form request; the listener's body limit applies on top.
const (
	// maxFormBytes is far above a form with a large RSA assertion.
	maxFormBytes = 32 << 10
	// maxFormParams bounds the number of parameters (resource may repeat).
	maxFormParams = 32
)

// repeatable lists the parameters allowed more than once (RFC 8707 section 2).
var repeatable = map[string]bool{"resource": true}

// readForm parses a POST application/x-www-form-urlencoded body strictly:
// wrong method or media type, bad encoding, a parameter in the query string,
// or a repeated parameter is invalid_request (RFC 6749 section 3.2).
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		e := oauth.New(oauth.CodeInvalidRequest, "use POST for this endpoint")
		e.Status = http.StatusMethodNotAllowed
		return nil, e
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, oauth.New(oauth.CodeInvalidRequest, "send the parameters as application/x-www-form-urlencoded")
	}
	if r.URL.RawQuery != "" {
		return nil, oauth.New(oauth.CodeInvalidRequest, "send parameters in the request body, not the URL query")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFormBytes+1))
	if err != nil {
		if web.IsBodyTooLarge(err) {
			e := oauth.New(oauth.CodeInvalidRequest, "the request body is too large")
			e.Status = http.StatusRequestEntityTooLarge
			return nil, e
		}
		return nil, oauth.Wrap(oauth.CodeInvalidRequest, "the request body could not be read", err)
	}
	if len(body) > maxFormBytes {
		e := oauth.New(oauth.CodeInvalidRequest, "the request body is too large")
		e.Status = http.StatusRequestEntityTooLarge
		return nil, e
	}
	if bytes.Count(body, []byte{'&'}) >= maxFormParams {
		return nil, oauth.New(oauth.CodeInvalidRequest, "too many parameters")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, oauth.Wrap(oauth.CodeInvalidRequest, "the form body is not valid application/x-www-form-urlencoded", err)
	}
	for k, v := range form {
		if len(v) > 1 && !repeatable[k] {
			return nil, oauth.New(oauth.CodeInvalidRequest, "parameter "+safeName(k)+" is repeated; send it once")
		}
	}
	return form, nil
}

// safeName quotes a caller-sent value for a description, bounded. It uses
// single quotes: RFC 6749 section 5.2 forbids the double quote and the
// backslash in error_description, and a character outside printable ASCII
// becomes '?' rather than vanishing, so the caller still sees where it was.
func safeName(k string) string {
	if len(k) > 40 {
		k = k[:40]
	}
	return "'" + strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '\'' {
			return '?'
		}
		return r
	}, k) + "'"
}

// basicAuth parses an Authorization: Basic header with RFC 6749 section
// 2.3.1's form-encoding of id and secret. ok is false when the header is not
// Basic; err reports a malformed Basic header.
func basicAuth(r *http.Request) (user, pass string, ok bool, err error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", "", false, nil
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", false, oauth.New(oauth.CodeInvalidRequest, "the token endpoint accepts only Basic in the Authorization header")
	}
	raw, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if derr != nil {
		return "", "", true, oauth.New(oauth.CodeInvalidRequest, "the Basic credentials are not valid base64")
	}
	u, p, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", true, oauth.New(oauth.CodeInvalidRequest, "the Basic credentials must be client_id:client_secret")
	}
	if user, err = url.QueryUnescape(u); err == nil {
		pass, err = url.QueryUnescape(p)
	}
	if err != nil {
		return "", "", true, oauth.New(oauth.CodeInvalidRequest, "the Basic credentials are not form-URL-encoded as RFC 6749 section 2.3.1 requires")
	}
	return user, pass, true, nil
}

// requestAttr is the request id attribute of log lines.
func requestAttr(r *http.Request) slog.Attr {
	return slog.String(web.AttrRequestID, web.RequestID(r.Context()))
}
