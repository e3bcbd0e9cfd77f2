-- Funds: the treasury is their system of record. One row per fund holds its current
-- configuration; fund_versions keeps every configuration it ever had (who, when, why), so a
-- limit change can always be traced. allocations keeps every capital decision; the current
-- allocation of a (fund, strategy) is its latest row. tax_entity groups the funds whose
-- trades the wash-sale rule sees together (one taxpayer); it is the treasury's, not the
-- FundConfig's, and is fixed when the fund is created.
CREATE TABLE funds (
    fund_id     text PRIMARY KEY,
    tax_entity  text NOT NULL DEFAULT 'default' CHECK (tax_entity ~ '^[A-Za-z0-9_][A-Za-z0-9_.:@=+-]{0,127}$'),
    config      jsonb NOT NULL,
    version     integer NOT NULL CHECK (version >= 1),
    status      text NOT NULL CHECK (status IN ('open', 'closed')),
    updated_at  timestamptz NOT NULL,
    updated_by  text NOT NULL
);

CREATE TABLE fund_versions (
    fund_id     text NOT NULL REFERENCES funds (fund_id),
    version     integer NOT NULL,
    config      jsonb NOT NULL,
    status      text NOT NULL CHECK (status IN ('open', 'closed')),
    changed_at  timestamptz NOT NULL,
    changed_by  text NOT NULL,
    reason      text,
    loosened    text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (fund_id, version)
);

CREATE TABLE allocations (
    allocation_id bigserial PRIMARY KEY,
    fund_id       text NOT NULL REFERENCES funds (fund_id),
    strategy_id   text NOT NULL DEFAULT '',   -- '' is the fund's own capital
    amount        numeric NOT NULL CHECK (amount >= 0),
    as_of         timestamptz NOT NULL,
    reason        text,
    actor         text NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX allocations_current ON allocations (fund_id, strategy_id, allocation_id DESC);
