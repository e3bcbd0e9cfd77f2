-- The alert router's state: every alert it knows by fingerprint, the groups it notifies, the
-- silences people set, the heartbeats it watches, and the outbox of notifications to deliver.
CREATE TABLE alerts (
    fingerprint   text PRIMARY KEY,
    group_key     text NOT NULL,
    labels        jsonb NOT NULL,
    alert         jsonb NOT NULL,          -- the latest Alert, with the status the router holds
    status        text NOT NULL CHECK (status IN ('firing', 'resolved')),
    updated_at    timestamptz NOT NULL,    -- the last raising (resolve_timeout counts from it)
    last_alert_id text NOT NULL,
    flips         jsonb NOT NULL DEFAULT '[]',  -- times of status changes, within the flap window
    flapping      boolean NOT NULL DEFAULT false,
    notified      text,                    -- the status last sent to people; NULL: never sent
    acked_at      timestamptz,
    acked_by      text
);
CREATE INDEX alerts_group ON alerts (group_key);

CREATE TABLE alert_groups (
    group_key        text PRIMARY KEY,
    labels           jsonb NOT NULL,
    next_flush_at    timestamptz,          -- NULL: nothing to evaluate
    last_notified_at timestamptz
);
CREATE INDEX alert_groups_due ON alert_groups (next_flush_at) WHERE next_flush_at IS NOT NULL;

CREATE TABLE silences (
    silence_id text PRIMARY KEY,
    matchers   jsonb NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    created_by text NOT NULL,
    comment    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE heartbeats (
    service     text NOT NULL,
    instance    text NOT NULL,
    interval_s  double precision NOT NULL,
    last_ts     timestamptz NOT NULL,
    started_at  timestamptz NOT NULL,
    missing     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (service, instance)
);

-- One row per notification and receiver, written in the transaction that decides to notify;
-- delivered_at is set only after the receiver took it, so a crash in between sends it again
-- (at least once) and never loses it.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    receiver        text NOT NULL,
    group_key       text NOT NULL,
    alerts          jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    last_error      text,
    permanent       boolean NOT NULL DEFAULT false  -- the last failure cannot pass by itself
);
CREATE INDEX outbox_pending ON outbox (receiver, id) WHERE delivered_at IS NULL;
