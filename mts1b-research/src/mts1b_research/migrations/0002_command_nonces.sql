-- The nonces of signed strategy commands (StrategyCommand), as the OMS and the treasury keep
-- theirs: a copied command is refused, also after a restart. Rows go a day after the command
-- was signed (NONCE_RETENTION in mts1b_platform.signing).
CREATE TABLE command_nonces (
    key_id    text NOT NULL,
    nonce     text NOT NULL,
    command   text NOT NULL,
    signed_at timestamptz NOT NULL,
    used_at   timestamptz NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX command_nonces_signed_at ON command_nonces (signed_at);
