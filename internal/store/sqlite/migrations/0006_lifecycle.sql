-- 0006: the credential lifecycle. tags is a JSON array of application or
-- project names offboarding can select by. previous is the credential the
-- last rotation replaced (JSON: the JWKS, TLS names or secret hash, and
-- when it retires); prev_secret_lookup indexes a replaced legacy secret so
-- a static API key still in use during the overlap is found. The audit
-- index on (reason, time) serves the posture report's rare-reason counts
-- (client_expired: an expired identity's credential still being used)
-- without scanning the whole trail.

ALTER TABLE clients ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN previous TEXT;
ALTER TABLE clients ADD COLUMN prev_secret_lookup BLOB;

CREATE UNIQUE INDEX clients_prev_secret_lookup ON clients (prev_secret_lookup) WHERE prev_secret_lookup IS NOT NULL;

CREATE INDEX audit_events_reason_time ON audit_events (reason, time);
