package problem

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	d := New(422, "validation", "Invalid client registration", "2 fields are invalid")
	d.Errors = []FieldError{{Field: "owner", Detail: "required"}}
	Write(rec, d)
	if rec.Code != 422 {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content-type %q", ct)
	}
	var got Details
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != "urn:keybound:problem:validation" || got.Status != 422 || len(got.Errors) != 1 || got.Errors[0].Field != "owner" {
		t.Errorf("got %+v", got)
	}
}
