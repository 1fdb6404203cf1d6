package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/keybound/keybound/internal/store"
)

// auditRow is an event encoded for its columns. Encoding the whole batch
// before the transaction means a refused event costs no time holding the
// write lock, and a refused batch writes nothing.
type auditRow struct {
	time   int64
	scopes string
	ev     *store.AuditEvent
}

const insertAuditSQL = `INSERT INTO audit_events (time, request_id, client_id, owner, credential_type, token_jti,
	scopes, route, method, path_template, object_id, status, bytes_in, bytes_out, latency_micros, source_addr,
	decision, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

const auditColumns = `id, time, request_id, client_id, owner, credential_type, token_jti, scopes, route, method,
	path_template, object_id, status, bytes_in, bytes_out, latency_micros, source_addr, decision, reason`

// encodeScopes joins scopes in RFC 6749 section 3.3 form. A scope that is
// empty or holds a space could not be split back faithfully, so it is
// refused rather than stored (identity.ParseScope never yields one).
func encodeScopes(ss []string) (string, error) {
	for _, s := range ss {
		if s == "" || strings.ContainsRune(s, ' ') {
			return "", fmt.Errorf("sqlite: audit event scope %q is not an RFC 6749 scope-token", s)
		}
	}
	return strings.Join(ss, " "), nil
}

func decodeScopes(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

// AppendAuditEvents appends evs in one BEGIN IMMEDIATE transaction on the
// single write connection, through the statement prepared at Open. Every
// event is encoded first; one that cannot be stored faithfully (zero or
// out-of-range Time, a malformed scope) refuses the whole batch. ev.ID is
// ignored. The same transaction adds the batch to the usage rollups (rollUp,
// usage.go).
func (s *Store) AppendAuditEvents(ctx context.Context, evs []store.AuditEvent) error {
	if len(evs) == 0 {
		return nil
	}
	rows := make([]auditRow, len(evs))
	for i := range evs {
		ev := &evs[i]
		if ev.Time.IsZero() {
			return fmt.Errorf("sqlite: append audit events: event %d (request %q) has no time", i, ev.RequestID)
		}
		t, err := encodeTime("audit event time", ev.Time)
		if err != nil {
			return err
		}
		scopes, err := encodeScopes(ev.Scopes)
		if err != nil {
			return err
		}
		rows[i] = auditRow{time: t.(int64), scopes: scopes, ev: ev}
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, s.insertAuditStmt)
		for _, r := range rows {
			ev := r.ev
			if _, err := stmt.ExecContext(ctx, r.time, ev.RequestID, ev.ClientID, ev.Owner, ev.CredentialType, ev.TokenJTI,
				r.scopes, ev.Route, ev.Method, ev.PathTemplate, ev.ObjectID, ev.Status, ev.BytesIn, ev.BytesOut,
				ev.LatencyMicros, ev.SourceAddr, ev.Decision, ev.Reason); err != nil {
				return wrap("append audit events", err)
			}
		}
		return rollUp(ctx, tx, rows)
	})
}

// auditWhere renders f's conditions (without Limit) as a WHERE clause.
func auditWhere(f store.AuditFilter) (string, []any, error) {
	var (
		conds []string
		args  []any
	)
	for _, c := range []struct{ col, val string }{
		{"client_id", f.ClientID}, {"route", f.Route}, {"decision", f.Decision}, {"reason", f.Reason},
	} {
		if c.val != "" {
			conds = append(conds, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	since, err := encodeTime("since", f.Since)
	if err != nil {
		return "", nil, err
	}
	until, err := encodeTime("until", f.Until)
	if err != nil {
		return "", nil, err
	}
	if since != nil {
		conds = append(conds, "time >= ?")
		args = append(args, since)
	}
	if until != nil {
		conds = append(conds, "time < ?")
		args = append(args, until)
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

// ListAuditEvents returns the events matching f, newest Time first, ties
// newest append (highest ID) first.
func (s *Store) ListAuditEvents(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	where, args, err := auditWhere(f)
	if err != nil {
		return nil, err
	}
	q := `SELECT ` + auditColumns + ` FROM audit_events` + where + ` ORDER BY time DESC, id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return collect(ctx, s.read, "list audit events", q, args, scanAuditEvent)
}

func scanAuditEvent(r scanner) (store.AuditEvent, error) {
	var (
		ev     store.AuditEvent
		t      sql.NullInt64
		scopes string
	)
	if err := r.Scan(&ev.ID, &t, &ev.RequestID, &ev.ClientID, &ev.Owner, &ev.CredentialType, &ev.TokenJTI,
		&scopes, &ev.Route, &ev.Method, &ev.PathTemplate, &ev.ObjectID, &ev.Status, &ev.BytesIn, &ev.BytesOut,
		&ev.LatencyMicros, &ev.SourceAddr, &ev.Decision, &ev.Reason); err != nil {
		return store.AuditEvent{}, err
	}
	ev.Time = decodeTime(t)
	ev.Scopes = decodeScopes(scopes)
	return ev, nil
}

// SummarizeAudit groups the events matching f by client, route, method,
// scopes and decision, most frequent first; f.Limit bounds the rows.
func (s *Store) SummarizeAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditSummaryRow, error) {
	where, args, err := auditWhere(f)
	if err != nil {
		return nil, err
	}
	q := `SELECT client_id, route, method, scopes, decision, COUNT(*) AS n, MIN(time), MAX(time)
		FROM audit_events` + where + `
		GROUP BY client_id, route, method, scopes, decision
		ORDER BY n DESC, client_id, route, method, scopes, decision`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return collect(ctx, s.read, "summarize audit", q, args, func(sc scanner) (store.AuditSummaryRow, error) {
		var (
			r           store.AuditSummaryRow
			first, last sql.NullInt64
		)
		if err := sc.Scan(&r.ClientID, &r.Route, &r.Method, &r.Scopes, &r.Decision, &r.Count, &first, &last); err != nil {
			return store.AuditSummaryRow{}, err
		}
		r.First, r.Last = decodeTime(first), decodeTime(last)
		return r, nil
	})
}
