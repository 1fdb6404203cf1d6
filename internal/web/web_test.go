package web

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMiddleware(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	var seenID string
	h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenID = RequestID(r.Context())
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/abort":
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusOK)
			panic(http.ErrAbortHandler)
		case "/hints":
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusBadGateway)
			return
		case "/read":
			_, err := io.ReadAll(r.Body)
			if IsBodyTooLarge(err) {
				http.Error(w, "too large", http.StatusRequestEntityTooLarge)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}), 10, log)

	tests := []struct {
		name, path, body string
		want             int
	}{
		{"ok", "/", "", 204},
		{"body within limit", "/read", "0123456789", 204},
		{"body over limit", "/read", "0123456789A", 413},
		{"panic is a 500", "/panic", "", 500},
	}
	// The access log records the final status, not an informational one.
	logs.Reset()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/hints", nil))
	if !strings.Contains(logs.String(), `"status":502`) {
		t.Errorf("103 then 502 logged as: %s", logs.String())
	}
	// A response cut off mid-way still gets its line, marked aborted, and
	// the abort goes on to net/http.
	logs.Reset()
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler passed on", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/abort", nil))
	}()
	if l := logs.String(); !strings.Contains(l, `"aborted":true`) || !strings.Contains(l, `"status":200`) || strings.Contains(l, "panic in handler") {
		t.Errorf("aborted request logged as: %s", l)
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			req := httptest.NewRequest("POST", tt.path, strings.NewReader(tt.body))
			req.Header.Set("X-Request-Id", "forged")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("status = %d, want %d", rec.Code, tt.want)
			}
			id := rec.Header().Get("X-Request-Id")
			if id == "" || id == "forged" || id != seenID {
				t.Errorf("request id %q (handler saw %q)", id, seenID)
			}
			if !strings.Contains(logs.String(), `"request_id":"`+id+`"`) {
				t.Errorf("log lacks request id: %s", logs.String())
			}
		})
	}
}
