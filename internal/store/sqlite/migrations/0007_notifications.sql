-- 0007: expiry warnings and their delivery state. One row per warning; the
-- unique key (kind, client_id, expires_at, lead) is what makes a warning go
-- out once however many sweeps, restarts or nodes try to create it. id is
-- the delivery id receivers deduplicate by. last_error is a bounded,
-- secret-free reason (a status code, a timeout), never a response body.
-- next_attempt_at doubles as the claim a node takes before an attempt, so
-- two nodes never deliver the same pending row at once.

CREATE TABLE notifications (
	id              TEXT    NOT NULL PRIMARY KEY,
	kind            TEXT    NOT NULL,
	client_id       TEXT    NOT NULL REFERENCES clients (id),
	expires_at      INTEGER NOT NULL,
	lead            INTEGER NOT NULL,          -- nanoseconds before expires_at; 0 for "expired"
	created_at      INTEGER NOT NULL,
	status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'skipped')),
	attempts        INTEGER NOT NULL,
	last_error      TEXT    NOT NULL,
	last_attempt_at INTEGER,                   -- NULL before the first attempt
	next_attempt_at INTEGER,                   -- set while pending
	delivered_at    INTEGER,                   -- set once delivered
	UNIQUE (kind, client_id, expires_at, lead)
) STRICT;

-- The sweep's delivery queue, the listing by status and by client.
CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
CREATE INDEX notifications_created ON notifications (created_at, id);
CREATE INDEX notifications_client ON notifications (client_id, created_at);

-- The sweep asks which active identities expire within the longest lead
-- time, every sweep interval.
CREATE INDEX clients_expires ON clients (expires_at);
