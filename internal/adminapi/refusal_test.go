package adminapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/keybound/keybound/internal/accesstoken"
	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/protect"
)

// TestBodyRefusalsNameTheField: a request body refused before any service
// is asked is a 400 problem whose errors name each bad field. The API has
// no inventory, CA or owner directory behind it, so reaching one would
// panic: each refusal changes nothing.
func TestBodyRefusalsNameTheField(t *testing.T) {
	a := &API{Owners: struct{ OwnerDirectory }{}}
	tests := []struct {
		name   string
		h      handlerFunc
		body   string
		slug   string
		fields []string
	}{
		{"rotate: retire_previous with a key", a.rotateClient, `{"retire_previous":true,"jwks":{"keys":[]}}`, "invalid-request", []string{"retire_previous"}},
		{"rotate: negative overlap", a.rotateClient, `{"overlap_seconds":-5}`, "invalid-request", []string{"overlap_seconds"}},
		{"rotate: overlap too long", a.rotateClient, `{"overlap_seconds":99999999}`, "invalid-request", []string{"overlap_seconds"}},
		{"downscope: nothing named", a.downscopeClient, `{}`, "invalid-request", []string{"remove"}},
		{"issue: nothing given", a.issueCert, `{}`, "invalid-request", []string{"client_id", "csr"}},
		{"issue: no CSR", a.issueCert, `{"client_id":"kb-1"}`, "invalid-request", []string{"csr"}},
		{"issue: negative lifetime", a.issueCert, `{"client_id":"kb-1","csr":"x","lifetime":-1}`, "invalid-parameter", []string{"lifetime"}},
		{"join token: no client", a.createJoinToken, `{}`, "invalid-request", []string{"client_id"}},
		{"join token: lifetime too long", a.createJoinToken, `{"client_id":"kb-1","lifetime":99999999}`, "invalid-parameter", []string{"lifetime"}},
		{"certificate revoke: unknown reason", a.revokeCert, `{"reason_code":"bored"}`, "invalid-parameter", []string{"reason_code"}},
		{"client transfer: from given", a.transferClient, `{"from":"a@example.com","to":"b@example.com"}`, "invalid-owner-request", []string{"from"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, Prefix+"/x", strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/json")
			r.SetPathValue("id", "kb-1")
			r.SetPathValue("serial", "01")
			rec := httptest.NewRecorder()
			err := tt.h(rec, r, &protect.Caller{Claims: &accesstoken.Claims{ClientID: "kb-admin"}})
			if err == nil {
				t.Fatal("accepted")
			}
			a.render(rec, r, err)
			var p problem.Details
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
			}
			if rec.Code != http.StatusBadRequest || rec.Header().Get("Content-Type") != "application/problem+json" || p.Type != "urn:keybound:problem:"+tt.slug || p.Detail == "" {
				t.Errorf("%d %s %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			}
			var got []string
			for _, fe := range p.Errors {
				got = append(got, fe.Field)
				if fe.Detail == "" {
					t.Errorf("field %s has no detail", fe.Field)
				}
			}
			if !slices.Equal(got, tt.fields) {
				t.Errorf("errors name %v, want %v: %s", got, tt.fields, rec.Body)
			}
		})
	}
}
