package workload_test

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/workload"
)

// TestRevocationEncoding: every reason and comment survives the stored
// form, and values stored before reason codes existed read as unspecified
// with their whole text.
func TestRevocationEncoding(t *testing.T) {
	tests := []struct {
		code    workload.Reason
		comment string
		stored  string
	}{
		{workload.ReasonUnspecified, "", ""},
		{workload.ReasonUnspecified, "key left on a laptop", "key left on a laptop"},
		{workload.ReasonUnspecified, "superseded: looks like a code", "unspecified: superseded: looks like a code"},
		{workload.ReasonUnspecified, "unspecified", "unspecified: unspecified"},
		{workload.ReasonKeyCompromise, "", "key-compromise"},
		{workload.ReasonKeyCompromise, "laptop lost", "key-compromise: laptop lost"},
		{workload.ReasonAffiliationChanged, "moved team", "affiliation-changed: moved team"},
		{workload.ReasonSuperseded, "", "superseded"},
		{workload.ReasonCessationOfOperation, "identity revoked", "cessation-of-operation: identity revoked"},
	}
	for _, tt := range tests {
		got := workload.EncodeRevocation(tt.code, tt.comment)
		if got != tt.stored {
			t.Errorf("Encode(%s, %q) = %q; want %q", tt.code, tt.comment, got, tt.stored)
		}
		code, comment := workload.DecodeRevocation(got)
		if code != tt.code || comment != tt.comment {
			t.Errorf("Decode(%q) = %s, %q; want %s, %q", got, code, comment, tt.code, tt.comment)
		}
	}
	// Legacy free text, as stored before reason codes.
	for _, legacy := range []string{"identity revoked", "key compromise", "test", "keycompromise: x", "superseded:no space"} {
		if code, comment := workload.DecodeRevocation(legacy); code != workload.ReasonUnspecified || comment != legacy {
			t.Errorf("legacy %q reads as %s, %q", legacy, code, comment)
		}
	}
	for _, name := range workload.ReasonNames {
		r, err := workload.ParseReason(name)
		if err != nil || r.String() != name {
			t.Errorf("ParseReason(%q) = %s, %v", name, r, err)
		}
	}
	for _, bad := range []string{"keyCompromise", "key compromise", "certificate-hold", "remove-from-crl", "1", " superseded"} {
		if _, err := workload.ParseReason(bad); !errors.Is(err, workload.ErrBadRequest) {
			t.Errorf("ParseReason(%q) = %v; want ErrBadRequest", bad, err)
		}
	}
}

// TestCRLReasonCodes parses the published CRL: each entry carries the RFC
// 5280 reason its revocation gave, an identity's revocation reads
// cessation-of-operation, and unknown codes are refused before anything is
// written.
func TestCRLReasonCodes(t *testing.T) {
	f := newFixture(t)
	f.client("kb-svc", nil)
	f.client("kb-gone", nil)
	ctx := context.Background()
	issue := func(id string) string {
		t.Helper()
		is, err := f.svc.Issue(ctx, workload.Request{ClientID: id, CSR: csrPEM(t, newKey(t), nil), Via: workload.ViaAdmin, Actor: "admin"})
		if err != nil {
			t.Fatal(err)
		}
		return is.Record.Serial
	}
	want := map[string]int{}
	for _, code := range []workload.Reason{workload.ReasonUnspecified, workload.ReasonKeyCompromise, workload.ReasonAffiliationChanged, workload.ReasonSuperseded, workload.ReasonCessationOfOperation} {
		s := issue("kb-svc")
		rec, err := f.svc.RevokeWithReason(ctx, "admin", s, code, "why "+code.String())
		if err != nil {
			t.Fatal(err)
		}
		if got, comment := workload.DecodeRevocation(rec.RevocationReason); got != code || comment != "why "+code.String() {
			t.Errorf("record reads %s, %q", got, comment)
		}
		want[s] = int(code)
	}
	gone := issue("kb-gone")
	if _, err := f.svc.RevokeClient(ctx, "keybound", "kb-gone", "identity revoked"); err != nil {
		t.Fatal(err)
	}
	want[gone] = int(workload.ReasonCessationOfOperation)
	held := issue("kb-svc")
	before := f.state()
	if _, err := f.svc.RevokeWithReason(ctx, "admin", held, workload.Reason(6), ""); !errors.Is(err, workload.ErrBadRequest) {
		t.Errorf("certificateHold: %v; want ErrBadRequest", err)
	}
	if after := f.state(); after.events != before.events {
		t.Error("a refused reason wrote an admin event")
	}
	evs, _ := f.st.ListAdminEvents(ctx, "kb-gone", 1)
	if len(evs) != 1 || evs[0].Changes["reason_code"] != "cessation-of-operation" || evs[0].Changes["reason"] != "identity revoked" {
		t.Errorf("identity revocation event: %+v", evs)
	}

	f.clock.Advance(time.Second)
	crl, err := x509.ParseRevocationList(must(f.svc.CRL(ctx)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range crl.RevokedCertificateEntries {
		got[workload.SerialHex(e.SerialNumber)] = e.ReasonCode
	}
	for s, code := range want {
		if c, ok := got[s]; !ok || c != code {
			t.Errorf("CRL entry %s: reason %d (listed %t); want %d", s, c, ok, code)
		}
	}
}
