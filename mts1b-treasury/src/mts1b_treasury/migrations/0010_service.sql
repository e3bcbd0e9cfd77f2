-- What the treasury service keeps beside the ledger.
-- treasury_orders: each order the OMS announced (its submitted event carries the order), so
-- that a later fill - whose event does not - is split over the order's sleeves exactly as the
-- OMS splits it. A replace that changes quantity or sleeves updates the row.
CREATE TABLE treasury_orders (
    order_id    text PRIMARY KEY,
    fund_id     text NOT NULL,
    strategy_id text NOT NULL,
    order_json  jsonb NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now()
);

-- The nonces of signed fund configurations (ConfigureFund), as the OMS keeps those of its
-- state commands: a copied command is refused, also after a restart. Rows go a day after the
-- command was signed (NONCE_RETENTION in mts1b_platform.signing).
CREATE TABLE command_nonces (
    key_id    text NOT NULL,
    nonce     text NOT NULL,
    command   text NOT NULL,
    signed_at timestamptz NOT NULL,
    used_at   timestamptz NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX command_nonces_signed_at ON command_nonces (signed_at);
