-- 0002: the gateway audit trail, one row per decision (allow or deny).
-- Times are INTEGER UTC Unix nanoseconds like everywhere else; time is NOT
-- NULL because an event without a time could never be found by a range.
-- scopes is the RFC 6749 section 3.3 form (space-separated), so a summary
-- groups and orders by exactly the string it returns.

CREATE TABLE audit_events (
	id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, -- never reused: a safe export cursor
	time            INTEGER NOT NULL,
	request_id      TEXT    NOT NULL,
	client_id       TEXT    NOT NULL,
	owner           TEXT    NOT NULL,
	credential_type TEXT    NOT NULL,
	token_jti       TEXT    NOT NULL,
	scopes          TEXT    NOT NULL,
	route           TEXT    NOT NULL,
	method          TEXT    NOT NULL,
	path_template   TEXT    NOT NULL,
	object_id       TEXT    NOT NULL,
	status          INTEGER NOT NULL,
	bytes_in        INTEGER NOT NULL,
	bytes_out       INTEGER NOT NULL,
	latency_micros  INTEGER NOT NULL,
	source_addr     TEXT    NOT NULL,
	decision        TEXT    NOT NULL,
	reason          TEXT    NOT NULL
) STRICT;

-- ListAuditEvents orders by (time DESC, id DESC); every index ends in the
-- rowid (id), so each of these serves its filter and that order.
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_client_time ON audit_events (client_id, time);
CREATE INDEX audit_events_route_time ON audit_events (route, time);

-- Recorded decisions are never edited. Deletion stays possible: retention
-- will purge old rows by time.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
	SELECT RAISE(ABORT, 'audit_events is append-only');
END;
