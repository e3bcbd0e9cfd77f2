-- The kill switch's sweeps are durable. A HALTED or REDUCING change writes, in the same
-- transaction as the state, the intent to cancel (kill_sweeps) and one row per order to cancel
-- with its cancel status (kill_sweep_orders, outcome NULL while outstanding). An instance that
-- dies mid-sweep leaves the outstanding rows behind, and the instance that next holds the
-- fund's advisory lock finishes them.

CREATE TABLE kill_sweeps (
    sweep_id    text PRIMARY KEY,
    scope       text NOT NULL,
    scope_id    text NOT NULL,
    state       text NOT NULL,
    actor       text NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL,
    finished_at timestamptz
);
CREATE INDEX kill_sweeps_unfinished ON kill_sweeps (created_at) WHERE finished_at IS NULL;

CREATE TABLE kill_sweep_orders (
    sweep_id   text NOT NULL REFERENCES kill_sweeps (sweep_id),
    order_id   text NOT NULL,
    fund_id    text NOT NULL,
    outcome    text,
    status     text,
    detail     text,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (sweep_id, order_id)
);
-- An order is outstanding in at most one sweep: a second halt leaves it to the first.
CREATE UNIQUE INDEX kill_sweep_orders_outstanding ON kill_sweep_orders (order_id)
    WHERE outcome IS NULL;
CREATE INDEX kill_sweep_orders_fund ON kill_sweep_orders (fund_id) WHERE outcome IS NULL;
