package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWriteJSON(t *testing.T) {
	tests := []struct {
		name       string
		err        *Error
		wantStatus int
		wantAuth   string
		wantNonce  string
	}{
		{"invalid_request is 400", New(CodeInvalidRequest, "missing grant_type"), 400, "", ""},
		{"invalid_client with challenge", &Error{Code: CodeInvalidClient, Description: "bad assertion", Status: 401, Challenge: "Basic"}, 401, `Basic error="invalid_client", error_description="bad assertion"`, ""},
		{"use_dpop_nonce carries nonce", &Error{Code: CodeUseDPoPNonce, Description: "use the server nonce", Nonce: "n-1"}, 401, "", "n-1"},
		{"insufficient_scope is 403", New(CodeInsufficientScope, "needs invoices:read"), 403, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			WriteJSON(rec, tt.err)
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.wantAuth {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantAuth)
			}
			if got := rec.Header().Get("DPoP-Nonce"); got != tt.wantNonce {
				t.Errorf("DPoP-Nonce = %q, want %q", got, tt.wantNonce)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			var b map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
				t.Fatal(err)
			}
			if b["error"] != tt.err.Code || b["error_description"] != tt.err.Description {
				t.Errorf("body = %v", b)
			}
		})
	}
}

func TestAsHidesInternalErrors(t *testing.T) {
	e := As(errors.New("sql: connection refused at 10.0.0.1"))
	if e.Code != CodeServerError || e.Status != http.StatusInternalServerError {
		t.Fatalf("got %+v", e)
	}
	if e.Description == "" || e.Description == e.Cause.Error() {
		t.Errorf("description leaks cause: %q", e.Description)
	}
}

func TestChallengeStripsUnsafeCharacters(t *testing.T) {
	got := Challenge("DPoP", "", New(CodeInvalidToken, "bad \"token\"\r\nX-Injected: 1"), "algs", "ES256 EdDSA")
	want := `DPoP error="invalid_token", error_description="bad tokenX-Injected: 1", algs="ES256 EdDSA"`
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
