// Package problem renders RFC 9457 problem details, the error format of every
// non-OAuth HTTP surface (admin API, gateway denials' bodies, health).
//
// It renders only; it never logs and never includes an internal cause.
package problem

import (
	"encoding/json"
	"net/http"
)

// Details is an RFC 9457 problem object. Type is a URI reference naming the
// problem class; keybound uses "urn:keybound:problem:<slug>" so no lookup of a
// remote document is ever implied.
type Details struct {
	Type     string `json:"type,omitempty"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Errors lists per-field problems for validation failures.
	Errors []FieldError `json:"errors,omitempty"`
	// Code repeats an OAuth error code where one applies (gateway denials).
	Code string `json:"error,omitempty"`
}

// FieldError names one invalid input field and what is wrong with it.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

func (d *Details) Error() string {
	if d.Detail != "" {
		return d.Title + ": " + d.Detail
	}
	return d.Title
}

// New builds a problem of the given status; slug becomes the type URN.
func New(status int, slug, title, detail string) *Details {
	return &Details{Type: "urn:keybound:problem:" + slug, Title: title, Status: status, Detail: detail}
}

// Write sends d as application/problem+json.
func Write(w http.ResponseWriter, d *Details) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(d.Status)
	_ = json.NewEncoder(w).Encode(d)
}
