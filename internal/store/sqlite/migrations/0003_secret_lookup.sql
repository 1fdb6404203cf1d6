-- 0003: static API keys are found by the SHA-256 of the key (the client id
-- is not sent with them). NULL for clients without a secret, and for
-- secrets stored before this migration: those clients keep working at the
-- token endpoint (which is given the client id) and become usable as static
-- API keys once their secret is rotated.

ALTER TABLE clients ADD COLUMN secret_lookup BLOB;

CREATE UNIQUE INDEX clients_secret_lookup ON clients (secret_lookup) WHERE secret_lookup IS NOT NULL;
