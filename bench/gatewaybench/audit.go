package main

// After the runs: did audit really happen? The gateway is measured with its
// audit trail on, so the benchmark checks that every answer it received is
// one event in the store and one line in the JSON-lines file, and reports
// any warning or error keybound logged (a dropped audit event is logged as
// a warning).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/keybound/keybound/internal/store"
	"github.com/keybound/keybound/internal/store/sqlite"
)

type auditCount struct {
	answers    int64 // gateway responses the generator received
	jsonl      int64 // lines in the JSON-lines file
	stored     int64 // events in the store
	allowed    int64 // of which decision allow
	warnings   int64 // WARN or ERROR lines in keybound's log
	firstWarn  string
	jsonlErr   error
	storeErr   error
	logScanErr error
}

// countAudit reads the sinks after keybound has stopped.
func countAudit(ctx context.Context, dataDir, auditFile string, answers int64, logFile string) auditCount {
	c := auditCount{answers: answers}
	c.jsonl, c.jsonlErr = countLines(auditFile, nil)

	st, err := sqlite.Open(ctx, filepath.Join(dataDir, "keybound.db"))
	if err == nil {
		var rows []store.AuditSummaryRow
		rows, err = st.SummarizeAudit(ctx, store.AuditFilter{})
		for _, r := range rows {
			c.stored += r.Count
			if r.Decision == "allow" {
				c.allowed += r.Count
			}
		}
		st.Close()
	}
	c.storeErr = err

	c.warnings, c.logScanErr = countLines(logFile, func(line []byte) bool {
		var v struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &v) != nil || (v.Level != "WARN" && v.Level != "ERROR") {
			return false
		}
		if c.firstWarn == "" {
			c.firstWarn = string(line)
		}
		return true
	})
	return c
}

// countLines counts the lines of path for which keep is true (all lines
// when keep is nil).
func countLines(path string, keep func([]byte) bool) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 4<<20)
	var n int64
	for s.Scan() {
		line := bytes.TrimSpace(s.Bytes())
		if len(line) == 0 {
			continue
		}
		if keep == nil || keep(line) {
			n++
		}
	}
	return n, s.Err()
}

// insideLatencies fills each open-loop result of keybound's with the
// latency keybound itself recorded (latency_micros: from the handler's
// start to the end of the proxied response) for the requests that arrived
// inside its rounds. Set beside the generator's latency, it shows how much
// of the tail is spent inside keybound and how much in the kernel, TLS and
// the generator.
func insideLatencies(auditFile string, rs []*result) error {
	f, err := os.Open(auditFile)
	if err != nil {
		return err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 4<<20)
	for s.Scan() {
		var ev struct {
			Time    time.Time `json:"time"`
			Latency int64     `json:"latency_micros"`
		}
		if json.Unmarshal(s.Bytes(), &ev) != nil {
			continue
		}
		for _, r := range rs {
			for _, w := range r.windows {
				if !ev.Time.Before(w.start) && ev.Time.Before(w.end) {
					r.inside = append(r.inside, time.Duration(ev.Latency)*time.Microsecond)
				}
			}
		}
	}
	for _, r := range rs {
		slices.Sort(r.inside)
	}
	return s.Err()
}
