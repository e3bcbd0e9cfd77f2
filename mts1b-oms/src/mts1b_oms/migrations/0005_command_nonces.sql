-- Signed trading-state commands (issue #15): the nonces each signing key has used. A command
-- is applied only if its nonce is new for its key, and the row is written before the change,
-- so a copied command is refused - also after a restart, which is why the nonces live here and
-- not in the process. Rows are dropped a day after their command was signed (NONCE_RETENTION
-- in mts1b_oms.signing): a command that old is stale whatever its nonce, since the freshness
-- window is at most an hour.
CREATE TABLE command_nonces (
    key_id    text NOT NULL,
    nonce     text NOT NULL,
    command   text NOT NULL,
    signed_at timestamptz NOT NULL,
    used_at   timestamptz NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX command_nonces_signed_at ON command_nonces (signed_at);
