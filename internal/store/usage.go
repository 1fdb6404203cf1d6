package store

import (
	"context"
	"time"
)

// Usage analytics read the gateway audit trail. A backend keeps whatever
// rollups make them cheap (SQLite: per day, per client and source, per
// client) in the same transaction as AppendAuditEvents, so an event is
// counted if and only if it is stored, and a question about the last 90
// days for every client costs what the distinct (day, client, route, ...)
// combinations cost, not what a million events cost.
//
// A day is a UTC calendar day, numbered from the Unix epoch (UsageDay). A
// window of N days at instant now is the UTC day of now and the N-1 days
// before it, so "the last 7 days" at 10:00 on a Wednesday starts at 00:00 on
// the Thursday before. Last-seen times are exact (the Time of the newest
// event), never rounded to a day.

// UsageDay is the UTC day number of t: days since 1970-01-01, floored, so
// times before the epoch get negative numbers.
func UsageDay(t time.Time) int64 {
	const day = int64(24 * time.Hour)
	ns := t.UnixNano()
	d := ns / day
	if ns%day < 0 {
		d--
	}
	return d
}

// UsageFilter selects the rollups a usage query reads. ClientID "" matches
// every client. Days are the window lengths to count over, each at least 1;
// the longest bounds what is read. Now fixes "today" (its UTC day); it must
// not be zero.
type UsageFilter struct {
	ClientID string
	Now      time.Time
	Days     []int
}

// UsageCount is the events of one client on one route and method, with one
// scope list, credential type and decision, counted per window. ClientID is
// "" for events recorded without an identity (anonymous calls to public
// routes, credentials refused before the caller was known).
type UsageCount struct {
	ClientID string
	Route    string
	Method   string
	// Scopes is the token's scope list as recorded, space-separated.
	Scopes         string
	CredentialType string
	Decision       string
	// Counts holds one count per UsageFilter.Days, in that order.
	Counts []int64
	// Last is the Time of the newest such event in the longest window.
	Last time.Time
}

// UsageSource is one source address a client's events came from: the
// SourceAddr of its events without the port (see SourceHost), over the
// whole trail.
type UsageSource struct {
	ClientID string
	Source   string
	// First and Last are the Times of the oldest and newest events of the
	// client from this source; Events counts them. A source was seen in a
	// window exactly when Last is in it.
	First, Last time.Time
	Events      int64
}

// ClientActivity is one client's activity over the whole trail, not only a
// window: what "idle for N days" needs for any N.
type ClientActivity struct {
	ClientID string
	// First and Last are the oldest and newest event Times of the client,
	// whatever the decision.
	First, Last time.Time
	// LastAllowed is the newest allowed event's Time; zero if the gateway
	// never allowed one of the client's requests.
	LastAllowed time.Time
	Events      int64
}

// PostureSnapshot is the headline figures of one posture report, kept so
// the next report can show what changed. Body is opaque to the store (the
// posture package owns its format); the store keeps it byte for byte.
type PostureSnapshot struct {
	// ID is assigned by the store; it grows with every append.
	ID   int64
	Time time.Time
	Body []byte
}

// UsageStore is the usage-analytics part of the store contract. The
// conformance suite's Usage cases pin it down.
type UsageStore interface {
	// UsageCounts returns the event counts matching f, one row per client,
	// route, method, scopes, credential type and decision with at least
	// one event in the longest window, ordered by those fields.
	UsageCounts(ctx context.Context, f UsageFilter) ([]UsageCount, error)
	// UsageSources returns every client and source address whose newest
	// event (Last) falls in f's longest window, ordered by client and
	// source; First and Events cover the whole trail. Events without a
	// client are left out.
	UsageSources(ctx context.Context, f UsageFilter) ([]UsageSource, error)
	// ClientActivity returns the all-time activity of clientID, or of every
	// client that has events when clientID is "", ordered by client id.
	// Events without a client are left out. A client without events has no
	// row (no error).
	ClientActivity(ctx context.Context, clientID string) ([]ClientActivity, error)

	// AppendPostureSnapshot stores s (its ID is ignored; Time must not be
	// zero) and returns the ID assigned.
	AppendPostureSnapshot(ctx context.Context, s PostureSnapshot) (int64, error)
	// LatestPostureSnapshot returns the most recently appended snapshot, or
	// ErrNotFound when there is none.
	LatestPostureSnapshot(ctx context.Context) (PostureSnapshot, error)
}

// SourceHost returns the host part of an audit event's SourceAddr: the
// address without its port ("192.0.2.1:443" gives "192.0.2.1",
// "[2001:db8::1]:443" gives "2001:db8::1"). Anything else (no port, an
// unbracketed IPv6 address, a name) is returned as it is. Backends that
// derive the host in SQL (a migration's backfill) must give the same answer.
func SourceHost(addr string) string {
	if len(addr) > 0 && addr[0] == '[' {
		for i := 1; i < len(addr); i++ {
			if addr[i] == ']' {
				return addr[1:i]
			}
		}
		return addr
	}
	colon := -1
	for i := 0; i < len(addr); i++ {
		if addr[i] == ':' {
			if colon >= 0 {
				return addr // more than one colon: an IPv6 address without a port
			}
			colon = i
		}
	}
	if colon < 0 {
		return addr
	}
	return addr[:colon]
}
