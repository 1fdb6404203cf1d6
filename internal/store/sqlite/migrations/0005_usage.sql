-- 0005: usage analytics. Day rollups of the gateway audit trail, kept up to
-- date by AppendAuditEvents in the same transaction as the events, so usage
-- questions over 7, 30 or 90 days read the distinct combinations of a day,
-- not every event. A day is the UTC day number (Unix nanoseconds divided by
-- 86400e9, floored; see store.UsageDay). Counts only grow: the audit trail
-- is append-only. A future retention purge of audit_events must keep at
-- least the longest usage window (90 days), since one client's usage is
-- read from the events, and purge the daily rollup by day in the same
-- transaction.
--
-- The rollups are WITHOUT ROWID: their primary key is the lookup key, so a
-- row is found and updated in one b-tree, and they have no other index.

-- Per UTC day, client, route, method, scope list, credential type and
-- decision: what was called, how, and with what outcome. client_id is ''
-- for events without an identity. The key starts with the day: a batch of
-- live events updates rows of today only, which sit together at the end of
-- the b-tree, so keeping the rollup costs few page writes however many
-- identities call; and "the last N days for every client" is one range of
-- the key. One client's usage is read from audit_events by its
-- (client_id, time) index instead.
CREATE TABLE audit_usage_daily (
	day             INTEGER NOT NULL,
	client_id       TEXT    NOT NULL,
	route           TEXT    NOT NULL,
	method          TEXT    NOT NULL,
	scopes          TEXT    NOT NULL,
	credential_type TEXT    NOT NULL,
	decision        TEXT    NOT NULL,
	events          INTEGER NOT NULL,
	last_time       INTEGER NOT NULL,
	PRIMARY KEY (day, client_id, route, method, scopes, credential_type, decision)
) STRICT, WITHOUT ROWID;

-- Per client and source host (source_addr without the port), over all
-- time: when each host was first and last seen, and last allowed. A host
-- was seen in the last N days exactly when its last_time is in them, and
-- is new in them when its first_time is. One row per (client, host) ever:
-- small. A client's all-time activity (first, last and last allowed event,
-- for "idle for N days" whatever N is) is the aggregate of its rows.
CREATE TABLE audit_client_sources (
	client_id         TEXT    NOT NULL,
	source            TEXT    NOT NULL,
	first_time        INTEGER NOT NULL,
	last_time         INTEGER NOT NULL,
	last_allowed_time INTEGER,          -- NULL until the gateway allows a request
	events            INTEGER NOT NULL,
	PRIMARY KEY (client_id, source)
) STRICT, WITHOUT ROWID;

-- Backfill from the events already stored. The day expression floors
-- (SQLite's integer division truncates toward zero), and the host
-- expression is store.SourceHost in SQL.
INSERT INTO audit_usage_daily (day, client_id, route, method, scopes, credential_type, decision, events, last_time)
SELECT CASE WHEN time >= 0 THEN time / 86400000000000 ELSE (time + 1) / 86400000000000 - 1 END AS d,
	client_id, route, method, scopes, credential_type, decision, COUNT(*), MAX(time)
FROM audit_events
GROUP BY d, client_id, route, method, scopes, credential_type, decision;

INSERT INTO audit_client_sources (client_id, source, first_time, last_time, last_allowed_time, events)
SELECT client_id,
	CASE
		WHEN substr(source_addr, 1, 1) = '[' AND instr(source_addr, ']') > 0
			THEN substr(source_addr, 2, instr(source_addr, ']') - 2)
		WHEN length(source_addr) - length(replace(source_addr, ':', '')) = 1
			THEN substr(source_addr, 1, instr(source_addr, ':') - 1)
		ELSE source_addr
	END AS host,
	MIN(time), MAX(time), MAX(CASE WHEN decision = 'allow' THEN time END), COUNT(*)
FROM audit_events
WHERE client_id <> ''
GROUP BY client_id, host;

-- One row per posture report: its headline figures as JSON, so the next
-- report shows what changed since.
CREATE TABLE posture_snapshots (
	id   INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, -- never reused: orders appends
	time INTEGER NOT NULL,
	body BLOB    NOT NULL  -- opaque to the store; the posture package's JSON
) STRICT;
