package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// maxUsageDays bounds a usage window: far beyond any retention, and small
// enough that day arithmetic cannot overflow.
const maxUsageDays = 100_000

// usageKey is one row of audit_usage_daily.
type usageKey struct {
	day      int64
	client   string
	route    string
	method   string
	scopes   string
	cred     string
	decision string
}

type sourceKey struct {
	client string
	source string
}

type span struct {
	events, first, last int64
	// lastAllowed is the newest allowed event; not Valid when none.
	lastAllowed sql.NullInt64
}

func (s *span) add(t int64, allowed bool) {
	if s.events == 0 || t < s.first {
		s.first = t
	}
	if s.events == 0 || t > s.last {
		s.last = t
	}
	s.events++
	if allowed && (!s.lastAllowed.Valid || t > s.lastAllowed.Int64) {
		s.lastAllowed = sql.NullInt64{Int64: t, Valid: true}
	}
}

// The rollup upserts. Each is sent with as many VALUES rows as the batch
// has distinct keys: one statement per table and batch, so a batch of
// events from many clients pays the statement overhead three times, not
// three times per event.
const (
	upsertUsageHead = `INSERT INTO audit_usage_daily (day, client_id, route, method, scopes, credential_type, decision, events, last_time) VALUES `
	upsertUsageTail = ` ON CONFLICT (day, client_id, route, method, scopes, credential_type, decision)
		DO UPDATE SET events = events + excluded.events, last_time = max(last_time, excluded.last_time)`
	upsertSourceHead = `INSERT INTO audit_client_sources (client_id, source, first_time, last_time, last_allowed_time, events) VALUES `
	// max() of SQLite returns NULL when an argument is NULL, hence coalesce
	// both ways: NULL only when neither side has an allowed event.
	upsertSourceTail = ` ON CONFLICT (client_id, source)
		DO UPDATE SET first_time = min(first_time, excluded.first_time), last_time = max(last_time, excluded.last_time),
			last_allowed_time = max(coalesce(last_allowed_time, excluded.last_allowed_time), coalesce(excluded.last_allowed_time, last_allowed_time)),
			events = events + excluded.events`
)

// maxUpsertRows bounds the VALUES rows of one upsert, so its parameters
// (at most 9 a row) stay far below SQLite's limit of 32766.
const maxUpsertRows = 1000

// upsert runs head + rows of cols placeholders + tail over args (len(args)
// is a multiple of cols), in statements of at most maxUpsertRows rows.
func upsert(ctx context.Context, tx *sql.Tx, op, head, tail string, cols int, args []any) error {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	for len(args) > 0 {
		n := min(len(args)/cols, maxUpsertRows)
		q := head + strings.TrimSuffix(strings.Repeat(row+", ", n), ", ") + tail
		if _, err := tx.ExecContext(ctx, q, args[:n*cols]...); err != nil {
			return wrap("append audit events: "+op, err)
		}
		args = args[n*cols:]
	}
	return nil
}

// rollUp adds a batch of encoded events to the usage rollups, inside the
// transaction that appends them. The batch is first aggregated in memory,
// so a batch of 256 events from a few busy clients updates a few rows.
func rollUp(ctx context.Context, tx *sql.Tx, rows []auditRow) error {
	usage := make(map[usageKey]*span, len(rows))
	sources := make(map[sourceKey]*span, len(rows))
	for i := range rows {
		r := &rows[i]
		ev := r.ev
		allowed := ev.Decision == "allow"
		uk := usageKey{store.UsageDay(ev.Time), ev.ClientID, ev.Route, ev.Method, r.scopes, ev.CredentialType, ev.Decision}
		u := usage[uk]
		if u == nil {
			u = &span{}
			usage[uk] = u
		}
		u.add(r.time, allowed)
		if ev.ClientID == "" {
			continue
		}
		sk := sourceKey{ev.ClientID, store.SourceHost(ev.SourceAddr)}
		sp := sources[sk]
		if sp == nil {
			sp = &span{}
			sources[sk] = sp
		}
		sp.add(r.time, allowed)
	}

	args := make([]any, 0, 9*len(usage))
	for k, v := range usage {
		args = append(args, k.day, k.client, k.route, k.method, k.scopes, k.cred, k.decision, v.events, v.last)
	}
	if err := upsert(ctx, tx, "usage rollup", upsertUsageHead, upsertUsageTail, 9, args); err != nil {
		return err
	}
	args = args[:0]
	for k, v := range sources {
		args = append(args, k.client, k.source, v.first, v.last, v.lastAllowed, v.events)
	}
	return upsert(ctx, tx, "source rollup", upsertSourceHead, upsertSourceTail, 6, args)
}

// usageWindows checks f and returns its day bounds: the first day of each
// window, the first day of the longest, and today.
func usageWindows(op string, f store.UsageFilter) (starts []int64, from, today int64, err error) {
	if f.Now.IsZero() {
		return nil, 0, 0, fmt.Errorf("sqlite: %s: the filter has no Now", op)
	}
	if _, err := encodeTime("usage now", f.Now); err != nil {
		return nil, 0, 0, err
	}
	if len(f.Days) == 0 {
		return nil, 0, 0, fmt.Errorf("sqlite: %s: the filter has no windows (Days)", op)
	}
	today = store.UsageDay(f.Now)
	longest := 0
	for _, d := range f.Days {
		if d < 1 || d > maxUsageDays {
			return nil, 0, 0, fmt.Errorf("sqlite: %s: window of %d days: must be 1 to %d", op, d, maxUsageDays)
		}
		starts = append(starts, today-int64(d)+1)
		longest = max(longest, d)
	}
	return starts, today - int64(longest) + 1, today, nil
}

// dayNanos is the first instant of day d in Unix nanoseconds, clamped to
// the storable range.
func dayNanos(d int64) int64 {
	const dayNs = int64(24 * time.Hour)
	switch {
	case d > math.MaxInt64/dayNs:
		return math.MaxInt64
	case d < math.MinInt64/dayNs:
		return math.MinInt64
	}
	return d * dayNs
}

// UsageCounts returns the event counts over f's windows. Every client's
// come from the daily rollup, aggregated here over the window's days; one
// client's come from its events, found by the (client_id, time) index,
// which is cheaper than reading every client's days of the rollup.
func (s *Store) UsageCounts(ctx context.Context, f store.UsageFilter) ([]store.UsageCount, error) {
	starts, from, today, err := usageWindows("usage counts", f)
	if err != nil {
		return nil, err
	}
	if f.ClientID != "" {
		return s.clientUsageCounts(ctx, f.ClientID, starts, from, today)
	}
	// The six grouping columns come back as one NUL-separated value: every
	// column fetched costs the driver a mutex round trip, and the joined
	// value is the aggregation key as it is. Only route, method, scopes,
	// credential type and decision are known to hold no NUL (they are
	// RFC 6749 scope-tokens, route names and fixed words), so a key is split
	// from the right and the client id is whatever remains.
	rows, err := s.read.QueryContext(ctx, `SELECT day, client_id || char(0) || route || char(0) || method || char(0) || scopes || char(0) ||
			credential_type || char(0) || decision, events, last_time
		FROM audit_usage_daily WHERE day >= ? AND day <= ?`, from, today)
	if err != nil {
		return nil, wrap("usage counts", err)
	}
	defer rows.Close()
	var (
		day, events, last int64
		key               sql.RawBytes
		out               []store.UsageCount
		lasts             []int64 // out[i].Last in Unix nanoseconds
	)
	index := make(map[string]int)
	for rows.Next() {
		if err := rows.Scan(&day, &key, &events, &last); err != nil {
			return nil, wrap("usage counts", err)
		}
		i, ok := index[string(key)]
		if !ok {
			k := string(key)
			f := make([]string, 6)
			rest := k
			for j := 5; j > 0; j-- {
				cut := strings.LastIndexByte(rest, 0)
				if cut < 0 {
					return nil, fmt.Errorf("sqlite: usage counts: malformed rollup key %q", k)
				}
				rest, f[j] = rest[:cut], rest[cut+1:]
			}
			f[0] = rest
			i = len(out)
			index[k] = i
			out = append(out, store.UsageCount{ClientID: f[0], Route: f[1], Method: f[2], Scopes: f[3], CredentialType: f[4], Decision: f[5],
				Counts: make([]int64, len(starts))})
		}
		u := &out[i]
		for w, st := range starts {
			if day >= st {
				u.Counts[w] += events
			}
		}
		switch {
		case !ok:
			lasts = append(lasts, last)
		case last > lasts[i]:
			lasts[i] = last
		}
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("usage counts", err)
	}
	for i := range out {
		out[i].Last = time.Unix(0, lasts[i]).UTC()
	}
	slices.SortFunc(out, func(a, b store.UsageCount) int {
		return cmp.Or(cmp.Compare(a.ClientID, b.ClientID), cmp.Compare(a.Route, b.Route), cmp.Compare(a.Method, b.Method),
			cmp.Compare(a.Scopes, b.Scopes), cmp.Compare(a.CredentialType, b.CredentialType), cmp.Compare(a.Decision, b.Decision))
	})
	return out, nil
}

// clientUsageCounts counts one client's events from audit_events.
func (s *Store) clientUsageCounts(ctx context.Context, clientID string, starts []int64, from, today int64) ([]store.UsageCount, error) {
	var (
		b    strings.Builder
		args []any
	)
	for _, st := range starts {
		b.WriteString(", SUM(time >= ?)")
		args = append(args, dayNanos(st))
	}
	args = append(args, clientID, dayNanos(from), dayNanos(today+1))
	q := `SELECT route, method, scopes, credential_type, decision` + b.String() + `, MAX(time)
		FROM audit_events WHERE client_id = ? AND time >= ? AND time < ?
		GROUP BY route, method, scopes, credential_type, decision
		ORDER BY route, method, scopes, credential_type, decision`
	return collect(ctx, s.read, "usage counts", q, args, func(r scanner) (store.UsageCount, error) {
		var (
			u    = store.UsageCount{ClientID: clientID, Counts: make([]int64, len(starts))}
			last sql.NullInt64
		)
		dst := []any{&u.Route, &u.Method, &u.Scopes, &u.CredentialType, &u.Decision}
		for i := range u.Counts {
			dst = append(dst, &u.Counts[i])
		}
		if err := r.Scan(append(dst, &last)...); err != nil {
			return store.UsageCount{}, err
		}
		u.Last = decodeTime(last)
		return u, nil
	})
}

// UsageSources returns the (client, source) rows last seen in f's longest
// window.
func (s *Store) UsageSources(ctx context.Context, f store.UsageFilter) ([]store.UsageSource, error) {
	_, from, today, err := usageWindows("usage sources", f)
	if err != nil {
		return nil, err
	}
	q := `SELECT client_id, source, first_time, last_time, events FROM audit_client_sources WHERE last_time >= ? AND last_time < ?`
	args := []any{dayNanos(from), dayNanos(today + 1)}
	if f.ClientID != "" {
		q += ` AND client_id = ?`
		args = append(args, f.ClientID)
	}
	q += ` ORDER BY client_id, source`
	return collect(ctx, s.read, "usage sources", q, args, func(r scanner) (store.UsageSource, error) {
		var (
			u           store.UsageSource
			first, last sql.NullInt64
		)
		if err := r.Scan(&u.ClientID, &u.Source, &first, &last, &u.Events); err != nil {
			return store.UsageSource{}, err
		}
		u.First, u.Last = decodeTime(first), decodeTime(last)
		return u, nil
	})
}

// ClientActivity aggregates each client's source rows: its all-time
// activity, read in primary-key order with no sort.
func (s *Store) ClientActivity(ctx context.Context, clientID string) ([]store.ClientActivity, error) {
	q := `SELECT client_id, MIN(first_time), MAX(last_time), MAX(last_allowed_time), SUM(events) FROM audit_client_sources`
	var args []any
	if clientID != "" {
		q += ` WHERE client_id = ?`
		args = append(args, clientID)
	}
	q += ` GROUP BY client_id ORDER BY client_id`
	return collect(ctx, s.read, "client activity", q, args, func(r scanner) (store.ClientActivity, error) {
		var (
			a                  store.ClientActivity
			first, last, allow sql.NullInt64
		)
		if err := r.Scan(&a.ClientID, &first, &last, &allow, &a.Events); err != nil {
			return store.ClientActivity{}, err
		}
		a.First, a.Last, a.LastAllowed = decodeTime(first), decodeTime(last), decodeTime(allow)
		return a, nil
	})
}

// AppendPostureSnapshot stores a posture snapshot.
func (s *Store) AppendPostureSnapshot(ctx context.Context, snap store.PostureSnapshot) (int64, error) {
	if snap.Time.IsZero() {
		return 0, errors.New("sqlite: append posture snapshot: the snapshot has no time")
	}
	t, err := encodeTime("posture snapshot time", snap.Time)
	if err != nil {
		return 0, err
	}
	body := snap.Body
	if body == nil {
		body = []byte{}
	}
	var id int64
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO posture_snapshots (time, body) VALUES (?, ?)`, t, slices.Clone(body))
		if err != nil {
			return wrap("append posture snapshot", err)
		}
		if id, err = res.LastInsertId(); err != nil {
			return wrap("append posture snapshot", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

// LatestPostureSnapshot returns the newest snapshot by append order.
func (s *Store) LatestPostureSnapshot(ctx context.Context) (store.PostureSnapshot, error) {
	var (
		snap store.PostureSnapshot
		t    sql.NullInt64
	)
	err := s.read.QueryRowContext(ctx, `SELECT id, time, body FROM posture_snapshots ORDER BY id DESC LIMIT 1`).Scan(&snap.ID, &t, &snap.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return store.PostureSnapshot{}, fmt.Errorf("sqlite: latest posture snapshot: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.PostureSnapshot{}, wrap("latest posture snapshot", err)
	}
	snap.Time = decodeTime(t)
	return snap, nil
}
