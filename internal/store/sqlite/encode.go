package sqlite

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keybound/keybound/internal/store"
)

// Times are stored as INTEGER UTC Unix nanoseconds. Why not RFC 3339 text?
// Integers compare and index as numbers (RevokedSince, PurgeExpired and the
// list order are range scans), and nanoseconds keep the exact value, which
// UpdateClient's optimistic check needs: it compares the stored UpdatedAt
// with the caller's copy, so any rounding would make every update stale.
// The zero time.Time is stored as NULL, and times are returned in UTC.

// minTime and maxTime bound what int64 nanoseconds can hold (1677 to 2262).
var (
	minTime = time.Unix(0, math.MinInt64).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC()
)

// encodeTime returns the column value for t: nil for the zero time, else
// Unix nanoseconds. A time outside the representable range is an error,
// never a silently wrapped value: an expiry that wraps into the past or the
// far future would change who may authenticate.
func encodeTime(field string, t time.Time) (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return nil, fmt.Errorf("sqlite: %s %s is outside the storable range %d to %d", field, t.Format(time.RFC3339), minTime.Year(), maxTime.Year())
	}
	return t.UnixNano(), nil
}

// encodeTimes is encodeTime for several times at once: names[i] names
// ts[i] in errors.
func encodeTimes(names []string, ts ...time.Time) ([]any, error) {
	out := make([]any, len(ts))
	for i, t := range ts {
		v, err := encodeTime(names[i], t)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// encodeBound is encodeTime for a lower bound of a range query. The zero
// time, which encodeTime makes NULL (and NULL compares false with
// everything), becomes the earliest storable instant: a zero since means
// "from the beginning", a zero now "at any time".
func encodeBound(field string, t time.Time) (int64, error) {
	v, err := encodeTime(field, t)
	if err != nil || v == nil {
		return minTime.UnixNano(), err
	}
	return v.(int64), nil
}

// decodeTime is the inverse of encodeTime.
func decodeTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.Unix(0, v.Int64).UTC()
}

// encodeStrings stores a string list as a JSON array; nil is "[]".
func encodeStrings(ss []string) (string, error) {
	if len(ss) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(ss)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// decodeStrings returns nil for an empty list, so a round trip of nil or
// empty yields the same value.
func decodeStrings(field, s string) ([]string, error) {
	var ss []string
	if err := json.Unmarshal([]byte(s), &ss); err != nil {
		return nil, fmt.Errorf("sqlite: decode %s: %w", field, err)
	}
	if len(ss) == 0 {
		return nil, nil
	}
	return ss, nil
}

// nilIfEmpty maps empty byte slices to NULL so that nil and empty round-trip
// alike.
func nilIfEmpty(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// isUnique reports whether err is a PRIMARY KEY or UNIQUE violation.
func isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return true
	case sqlite3.SQLITE_CONSTRAINT_TRIGGER:
		// The clients_lookup_distinct triggers (migration 0006) keep secret
		// digests unique across the current and previous columns.
		return strings.Contains(se.Error(), "secret lookup digest already in use")
	}
	return false
}

// wrap prefixes err for the operation and maps a uniqueness violation to
// store.ErrConflict, keeping the driver's error in the chain for logs.
func wrap(op string, err error) error {
	if isUnique(err) {
		return fmt.Errorf("sqlite: %s: %w (%w)", op, store.ErrConflict, err)
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}
