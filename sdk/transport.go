package sdk

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/keybound/keybound/internal/dpop"
	"github.com/keybound/keybound/internal/oauth"
)

// Transport is an http.RoundTripper that authorizes each request with a token
// from Source (RFC 6750 section 2.1, RFC 9449 section 7.1). For a DPoP token
// it sends "Authorization: DPoP <token>" and a fresh DPoP proof bound to the
// request's method, URL (without query and fragment), the token (ath) and the
// last nonce the request's origin sent. If the resource server answers 401
// with a DPoP use_dpop_nonce challenge and a DPoP-Nonce header, the request is
// retried once with that nonce, provided its body can be replayed (GetBody is
// set or there is no body); otherwise the 401 is returned.
//
// Transport never modifies the caller's request. Source is required; Base nil
// means http.DefaultTransport. It is safe for concurrent use.
type Transport struct {
	Source *TokenSource
	Base   http.RoundTripper
}

// RoundTrip implements http.RoundTripper. Like every RoundTripper it closes
// the request body, also on error.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Source == nil {
		closeBody(req.Body)
		return nil, errors.New("keybound: Transport has no Source")
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if first, ok := firstRequest(req); !ok || first != req && origin(first.URL) != origin(req.URL) {
		// A redirect to another origin, followed by an http.Client this
		// Transport was given to. Go drops an Authorization header the
		// caller set on such a redirect, but this Transport sets its own
		// on every round trip: the other origin gets the request without
		// credentials, never the token.
		return base.RoundTrip(req)
	}
	if req.URL.Scheme != "https" && !isLoopback(req.URL.Hostname()) {
		closeBody(req.Body)
		return nil, fmt.Errorf("keybound: refusing to send an access token over %s to %s: use https (plain http is allowed only on a loopback host)", req.URL.Scheme, req.URL.Host)
	}
	tok, err := t.Source.TokenContext(req.Context())
	if err != nil {
		closeBody(req.Body)
		return nil, err
	}
	if tok.TokenType != TokenTypeDPoP {
		out := req.Clone(req.Context())
		out.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		return base.RoundTrip(out)
	}

	signer := t.Source.dpop
	if signer == nil {
		closeBody(req.Body)
		return nil, errors.New("keybound: DPoP token without a DPoP key")
	}
	htu := targetURI(req.URL)
	orig := origin(req.URL)
	send := func(body io.ReadCloser) (*http.Response, error) {
		proof, err := signer.Proof(req.Method, htu, dpop.ProofOptions{
			AccessToken: tok.AccessToken,
			Nonce:       t.Source.nonces.get(orig),
			Now:         t.Source.now(),
		})
		if err != nil {
			closeBody(body)
			return nil, fmt.Errorf("keybound: DPoP proof: %w", err)
		}
		out := req.Clone(req.Context())
		out.Body = body
		out.Header.Set("Authorization", "DPoP "+tok.AccessToken)
		out.Header.Set("DPoP", proof)
		resp, err := base.RoundTrip(out)
		if err == nil {
			if n := resp.Header.Get("DPoP-Nonce"); n != "" {
				t.Source.nonces.set(orig, n)
			}
		}
		return resp, err
	}

	resp, err := send(req.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("DPoP-Nonce") == "" ||
		challengeError(resp.Header.Values("WWW-Authenticate")) != oauth.CodeUseDPoPNonce {
		return resp, nil
	}
	var body io.ReadCloser
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		body = req.Body
	case req.GetBody != nil:
		if body, err = req.GetBody(); err != nil {
			// The first response is still a complete answer.
			return resp, nil
		}
	default:
		return resp, nil
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBodyBytes))
	resp.Body.Close()
	return send(body)
}

func closeBody(b io.ReadCloser) {
	if b != nil {
		b.Close()
	}
}

// targetURI is the htu of RFC 9449 section 4.2: the request URI without
// query, fragment or user info.
func targetURI(u *url.URL) string {
	v := *u
	v.User = nil
	v.RawQuery = ""
	v.ForceQuery = false
	v.Fragment = ""
	v.RawFragment = ""
	return v.String()
}

// firstRequest follows the redirect chain back from req (http.Client sets
// Response on each request it builds for a redirect) to the request the
// caller made. ok is false when the chain cannot be followed: a base
// RoundTripper that does not set Response.Request (only http.Transport
// does); then where the chain began is unknown, and req is treated as
// another origin's.
func firstRequest(req *http.Request) (_ *http.Request, ok bool) {
	for req.Response != nil {
		if req.Response.Request == nil {
			return nil, false
		}
		req = req.Response.Request
	}
	return req, true
}
