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

-- A static API key must name one client: no client's current secret may
-- share its digest with another client's previous one (each column's own
-- unique index covers the rest).
CREATE TRIGGER clients_lookup_distinct_insert BEFORE INSERT ON clients
WHEN (NEW.secret_lookup IS NOT NULL AND EXISTS (SELECT 1 FROM clients WHERE prev_secret_lookup = NEW.secret_lookup))
  OR (NEW.prev_secret_lookup IS NOT NULL AND EXISTS (SELECT 1 FROM clients WHERE secret_lookup = NEW.prev_secret_lookup))
BEGIN
	SELECT RAISE(ABORT, 'secret lookup digest already in use');
END;

CREATE TRIGGER clients_lookup_distinct_update BEFORE UPDATE OF secret_lookup, prev_secret_lookup ON clients
WHEN (NEW.secret_lookup IS NOT NULL AND EXISTS (SELECT 1 FROM clients WHERE prev_secret_lookup = NEW.secret_lookup AND id <> NEW.id))
  OR (NEW.prev_secret_lookup IS NOT NULL AND EXISTS (SELECT 1 FROM clients WHERE secret_lookup = NEW.prev_secret_lookup AND id <> NEW.id))
BEGIN
	SELECT RAISE(ABORT, 'secret lookup digest already in use');
END;
