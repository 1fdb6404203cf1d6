-- 0008: access reviews and the owner directory.
--
-- owners is the directory of accountable people and teams. An owner is
-- active or departed; identities whose owner departed are orphaned. Names
-- are compared exactly (callers trim them), as clients.owner is.
--
-- reviews is the append-only history of access reviews: each attestation
-- by an identity's owner (kind attest, with the three answers) and each
-- ownership transfer (kind transfer: the new owner has not attested, so
-- the identity's review falls due at the transfer). Triggers refuse edits
-- and deletions, as for admin_events.

CREATE TABLE owners (
	name        TEXT    NOT NULL PRIMARY KEY,
	contact     TEXT    NOT NULL,
	status      TEXT    NOT NULL CHECK (status IN ('active', 'departed')),
	created_at  INTEGER,
	updated_at  INTEGER,
	departed_at INTEGER,
	CHECK ((status = 'departed') = (departed_at IS NOT NULL))
) STRICT;

CREATE TABLE reviews (
	id           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, -- never reused: ids order appends
	client_id    TEXT    NOT NULL,
	kind         TEXT    NOT NULL CHECK (kind IN ('attest', 'transfer')),
	time         INTEGER NOT NULL,
	actor        TEXT    NOT NULL, -- the admin identity that recorded it
	owner        TEXT    NOT NULL, -- the attesting owner, or the new owner of a transfer
	still_needed INTEGER NOT NULL CHECK (still_needed IN (0, 1)),
	purpose_ok   INTEGER NOT NULL CHECK (purpose_ok IN (0, 1)),
	scopes_ok    INTEGER NOT NULL CHECK (scopes_ok IN (0, 1)),
	note         TEXT    NOT NULL
) STRICT;

-- The latest review of each kind per client, and one client's history.
CREATE INDEX reviews_client ON reviews (client_id, kind, id);

CREATE TRIGGER reviews_no_update BEFORE UPDATE ON reviews
BEGIN
	SELECT RAISE(ABORT, 'reviews is append-only');
END;

CREATE TRIGGER reviews_no_delete BEFORE DELETE ON reviews
BEGIN
	SELECT RAISE(ABORT, 'reviews is append-only');
END;
