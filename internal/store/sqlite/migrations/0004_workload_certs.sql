-- 0004: the workload CA's issued certificates and one-time join tokens.
-- Times are INTEGER UTC Unix nanoseconds like everywhere else. Both tables
-- reference clients, so a certificate or token can never outlive the
-- knowledge of whom it was issued to. A join token is stored only as the
-- SHA-256 of its secret part.

CREATE TABLE workload_certificates (
	serial            TEXT    NOT NULL PRIMARY KEY, -- lower-case hex
	client_id         TEXT    NOT NULL REFERENCES clients (id),
	spiffe_id         TEXT    NOT NULL,
	thumbprint        TEXT    NOT NULL,             -- x5t#S256
	issued_at         INTEGER NOT NULL,
	not_before        INTEGER NOT NULL,
	not_after         INTEGER NOT NULL,
	via               TEXT    NOT NULL,
	renewed_from      TEXT    NOT NULL,
	der               BLOB    NOT NULL,
	revoked_at        INTEGER,                      -- NULL while not revoked
	revocation_reason TEXT    NOT NULL
) STRICT;

-- ListCertificates orders by (issued_at DESC, serial).
CREATE INDEX workload_certificates_client ON workload_certificates (client_id, issued_at);
CREATE INDEX workload_certificates_issued ON workload_certificates (issued_at);
CREATE INDEX workload_certificates_revoked ON workload_certificates (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX workload_certificates_not_after ON workload_certificates (not_after);

CREATE TABLE join_tokens (
	id         TEXT    NOT NULL PRIMARY KEY,
	client_id  TEXT    NOT NULL REFERENCES clients (id),
	hash       BLOB    NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	used_at    INTEGER,                             -- NULL until consumed
	created_by TEXT    NOT NULL
) STRICT;

CREATE INDEX join_tokens_client ON join_tokens (client_id, expires_at);
CREATE INDEX join_tokens_expires ON join_tokens (expires_at);
