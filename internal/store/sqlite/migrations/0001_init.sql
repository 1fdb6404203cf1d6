-- 0001: the first schema. Every time column is INTEGER UTC Unix nanoseconds,
-- NULL for the zero time.Time, so ordering and range queries compare numbers
-- and a round trip loses nothing. Tables are STRICT, so a value of the wrong
-- type is an error instead of being stored silently.

CREATE TABLE clients (
	id             TEXT    NOT NULL PRIMARY KEY,
	name           TEXT    NOT NULL,
	owner          TEXT    NOT NULL,
	purpose        TEXT    NOT NULL,
	environment    TEXT    NOT NULL,
	vendor         TEXT    NOT NULL,
	status         TEXT    NOT NULL,
	created_at     INTEGER,
	updated_at     INTEGER,
	expires_at     INTEGER,
	scopes         TEXT    NOT NULL, -- JSON array of strings
	audiences      TEXT    NOT NULL, -- JSON array of strings
	auth_method    TEXT    NOT NULL,
	jwks           BLOB,             -- the registered JWKS, byte for byte
	tls_subject_dn TEXT    NOT NULL,
	tls_san_uri    TEXT    NOT NULL,
	tls_san_dns    TEXT    NOT NULL,
	secret_salt    BLOB,
	secret_hash    BLOB,
	binding        TEXT    NOT NULL,
	token_lifetime INTEGER NOT NULL, -- nanoseconds; 0 means the server default
	CHECK ((secret_salt IS NULL) = (secret_hash IS NULL))
) STRICT;

CREATE INDEX clients_owner ON clients (owner);
CREATE INDEX clients_environment ON clients (environment);
CREATE INDEX clients_status ON clients (status);
-- ListClients orders by (created_at, id).
CREATE INDEX clients_created ON clients (created_at, id);

CREATE TABLE admin_events (
	id      INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, -- never reused, so ids order appends
	time    INTEGER,
	actor   TEXT    NOT NULL,
	action  TEXT    NOT NULL,
	target  TEXT    NOT NULL,
	changes TEXT                                        -- JSON object, NULL when empty
) STRICT;

CREATE INDEX admin_events_target ON admin_events (target, id);

-- The admin log is append-only: the database refuses edits and deletions
-- even from a buggy caller or a hand-typed statement.
CREATE TRIGGER admin_events_no_update BEFORE UPDATE ON admin_events
BEGIN
	SELECT RAISE(ABORT, 'admin_events is append-only');
END;

CREATE TRIGGER admin_events_no_delete BEFORE DELETE ON admin_events
BEGIN
	SELECT RAISE(ABORT, 'admin_events is append-only');
END;

CREATE TABLE signing_keys (
	kid           TEXT    NOT NULL PRIMARY KEY,
	algorithm     TEXT    NOT NULL,
	private_pkcs8 BLOB    NOT NULL,
	created_at    INTEGER,
	activates_at  INTEGER,
	retired_at    INTEGER,
	remove_at     INTEGER
) STRICT;

CREATE TABLE revoked_tokens (
	jti        TEXT    NOT NULL PRIMARY KEY,
	client_id  TEXT    NOT NULL,
	revoked_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
CREATE INDEX revoked_tokens_revoked_at ON revoked_tokens (revoked_at);
