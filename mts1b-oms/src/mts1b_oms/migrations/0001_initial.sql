-- mts1b-oms schema v1: orders, their events, fills, positions, denials, trading states, outbox.
-- Every state change and the event announcing it are written in one transaction; the outbox
-- row is what the relay later publishes to NATS with Nats-Msg-Id = msg_id.

CREATE TABLE orders (
    order_id        text PRIMARY KEY,
    idempotency_key text NOT NULL,
    fund_id         text NOT NULL,
    strategy_id     text NOT NULL,
    symbol          text NOT NULL,
    side            text NOT NULL,
    status          text NOT NULL,
    quantity        numeric NOT NULL,
    filled_quantity numeric NOT NULL DEFAULT 0,
    sequence        integer NOT NULL,
    state           jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX orders_open ON orders (fund_id, status);

-- The idempotency key of a submission -> the order it created; repeats inside the window
-- resolve to the same order_id.
CREATE TABLE idempotency (
    idempotency_key text PRIMARY KEY,
    order_id        text NOT NULL,
    created_at      timestamptz NOT NULL
);

CREATE TABLE order_events (
    event_id   text PRIMARY KEY,
    order_id   text NOT NULL,
    sequence   integer NOT NULL,
    event_type text NOT NULL,
    status     text NOT NULL,
    event      jsonb NOT NULL,
    ts         timestamptz NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, sequence);

CREATE TABLE fills (
    trade_id    text PRIMARY KEY,
    order_id    text NOT NULL,
    fund_id     text NOT NULL,
    strategy_id text NOT NULL,
    symbol      text NOT NULL,
    side        text NOT NULL,
    quantity    numeric NOT NULL,
    price       numeric NOT NULL,
    commission  numeric NOT NULL,
    ts          timestamptz NOT NULL,
    busted      boolean NOT NULL DEFAULT false
);

CREATE TABLE positions (
    fund_id      text NOT NULL,
    strategy_id  text NOT NULL,
    symbol       text NOT NULL,
    quantity     numeric NOT NULL,
    avg_cost     numeric NOT NULL,
    realized_pnl numeric NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (fund_id, strategy_id, symbol)
);

CREATE TABLE denials (
    event_id   text PRIMARY KEY,
    order_id   text NOT NULL,
    fund_id    text NOT NULL,
    code       text NOT NULL,
    gate       text NOT NULL,
    message    text NOT NULL,
    context    jsonb NOT NULL,
    ts         timestamptz NOT NULL
);
CREATE INDEX denials_fund ON denials (fund_id, ts);

CREATE TABLE trading_states (
    scope    text NOT NULL,
    scope_id text NOT NULL,
    state    text NOT NULL,
    actor    text NOT NULL,
    reason   text NOT NULL,
    ts       timestamptz NOT NULL,
    PRIMARY KEY (scope, scope_id)
);

CREATE TABLE fund_nav (
    fund_id    text PRIMARY KEY,
    nav        numeric NOT NULL,
    peak_nav   numeric NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE alerts (
    alert_id text PRIMARY KEY,
    severity text NOT NULL,
    text     text NOT NULL,
    alert    jsonb NOT NULL,
    ts       timestamptz NOT NULL
);

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    msg_id       text NOT NULL UNIQUE,
    subject      text NOT NULL,
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
