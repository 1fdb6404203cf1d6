package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keybound/keybound/internal/store"
)

func fullEvent() store.AuditEvent {
	return store.AuditEvent{
		ID: 0, Time: time.Date(2031, 3, 14, 17, 9, 26, 535897932, time.FixedZone("UTC+2", 2*60*60)),
		RequestID: "01J9Z6", ClientID: "billing-exporter", Owner: "team-billing", CredentialType: "dpop",
		TokenJTI: "jti-1", Scopes: []string{"invoices:read", "ledger:write"}, Route: "invoices", Method: "GET",
		PathTemplate: "/invoices/{id}", ObjectID: "inv-42", Status: 200, BytesIn: 0, BytesOut: 4096,
		LatencyMicros: 850, SourceAddr: "192.0.2.7:51234", Decision: "allow", Reason: "ok",
	}
}

// TestJSONLGolden pins the wire names: consumers parse these lines, so a
// renamed field is a breaking change that must show up here.
func TestJSONLGolden(t *testing.T) {
	var buf bytes.Buffer
	s := NewJSONLSink(&buf)
	if err := s.Write(t.Context(), []store.AuditEvent{fullEvent()}); err != nil {
		t.Fatal(err)
	}
	const want = `{"time":"2031-03-14T15:09:26.535897932Z","request_id":"01J9Z6","client_id":"billing-exporter",` +
		`"owner":"team-billing","credential_type":"dpop","token_jti":"jti-1","scopes":["invoices:read","ledger:write"],` +
		`"route":"invoices","method":"GET","path_template":"/invoices/{id}","object_id":"inv-42","status":200,` +
		`"bytes_in":0,"bytes_out":4096,"latency_micros":850,"source_addr":"192.0.2.7:51234","decision":"allow","reason":"ok"}` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("line:\n got %s\nwant %s", got, want)
	}
}

func TestJSONLRoundTrip(t *testing.T) {
	tricky := fullEvent()
	tricky.RequestID = "line\nbreak\r\u2028\u2029\x00"
	tricky.Owner = `quote " backslash \ <tag> é 🔑`
	tricky.Scopes = nil
	tricky.TokenJTI, tricky.ObjectID = "", ""
	tricky.ID = 7
	deny := ev(2)
	deny.Decision, deny.Reason, deny.Status, deny.CredentialType = "deny", "invalid_token", 401, "none"
	batches := [][]store.AuditEvent{{fullEvent(), tricky}, {deny}}

	var buf bytes.Buffer
	s := NewJSONLSink(&buf)
	var want []store.AuditEvent
	for _, b := range batches {
		if err := s.Write(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	sc := bufio.NewScanner(&buf)
	var got []store.AuditEvent
	for sc.Scan() {
		var e store.AuditEvent
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("line %d %q: %v", len(got)+1, sc.Text(), err)
		}
		got = append(got, e)
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want one per event (%d)", len(got), len(want))
	}
	for i := range want {
		if got[i].Time.Location() != time.UTC {
			t.Errorf("event %d: time not written in UTC: %v", i, got[i].Time)
		}
		if !got[i].Time.Equal(want[i].Time) {
			t.Errorf("event %d: time %v, want %v", i, got[i].Time, want[i].Time)
		}
		g, w := got[i], want[i]
		g.Time, w.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

// tearingWriter fails its first write after n bytes, then works.
type tearingWriter struct {
	buf  bytes.Buffer
	n    int
	tore bool
}

func (w *tearingWriter) Write(p []byte) (int, error) {
	if !w.tore {
		w.tore = true
		w.buf.Write(p[:w.n])
		return w.n, errors.New("no space left on device")
	}
	return w.buf.Write(p)
}

func TestJSONLTornWriteStaysOneBadLine(t *testing.T) {
	tw := &tearingWriter{n: 10}
	s := NewJSONLSink(tw)
	if err := s.Write(t.Context(), []store.AuditEvent{ev(1), ev(2)}); err == nil {
		t.Fatal("short write not reported")
	}
	if err := s.Write(t.Context(), []store.AuditEvent{ev(1), ev(2)}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(tw.buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines %q, want the torn line then two whole ones", lines)
	}
	var ids []string
	for _, l := range lines[1:] {
		var e store.AuditEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q after a torn write: %v", l, err)
		}
		ids = append(ids, e.RequestID)
	}
	if !slices.Equal(ids, []string{"r1", "r2"}) {
		t.Errorf("lines after the torn one: %v", ids)
	}
}

func TestJSONLCanceledContext(t *testing.T) {
	var buf bytes.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := NewJSONLSink(&buf).Write(ctx, []store.AuditEvent{ev(1)}); err == nil || buf.Len() != 0 {
		t.Errorf("Write with a canceled context: %v, %d bytes written", err, buf.Len())
	}
}

func TestOpenJSONLFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	for i := range 2 { // the second open appends
		s, err := OpenJSONLFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(t.Context(), []store.AuditEvent{ev(i)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if n := bytes.Count(b, []byte("\n")); n != 2 {
		t.Errorf("%d lines after two opens, want 2 (appended, not truncated)", n)
	}

	loose := filepath.Join(dir, "loose.jsonl")
	if err := os.WriteFile(loose, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenJSONLFile(loose); !errors.Is(err, ErrInsecureFile) {
		t.Errorf("OpenJSONLFile(0644 file): %v, want ErrInsecureFile", err)
	}
	if _, err := OpenJSONLFile(dir); err == nil {
		t.Error("OpenJSONLFile opened a directory")
	}
}

// TestWriterToJSONLFile runs the whole pipeline into a file.
func TestWriterToJSONLFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := OpenJSONLFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := New(Config{BatchSize: 7, FlushEvery: time.Millisecond, Sinks: []Sink{s}})
	w.Start(t.Context())
	for i := range 100 {
		w.Record(ev(i))
	}
	closeOK(t, w)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e store.AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.RequestID)
	}
	if !slices.Equal(ids, seq(0, 100)) {
		t.Errorf("file holds %d events, want 100 in order", len(ids))
	}
}
