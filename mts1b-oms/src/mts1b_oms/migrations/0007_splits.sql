-- Corporate actions (issue #20): a split changes every position in its symbol - quantity x
-- ratio, average cost / ratio - effective at the ex-date's open. It is applied once per
-- (action_id, fund): the row below is written in the same transaction as the positions it
-- moves and their outbox rows, and a repeat of the action finds it and changes nothing.
-- Rebuilding a sleeve's position from its fills (a bust, a correction) replays these splits at
-- effective_at beside the fills, so a later bust does not undo a split.
CREATE TABLE splits (
    action_id    text NOT NULL,
    fund_id      text NOT NULL,
    symbol       text NOT NULL,
    ex_date      date NOT NULL,
    ratio        numeric NOT NULL,
    effective_at timestamptz NOT NULL,
    applied_at   timestamptz NOT NULL,
    PRIMARY KEY (action_id, fund_id)
);
CREATE INDEX splits_position ON splits (fund_id, symbol, effective_at);

-- What a sleeve gave up as cash in lieu when a (reverse) split left the fund's position off
-- the instrument's lot (signed, new terms) and the adjusted price it was closed at (NULL: at
-- its average cost); the cash itself is the venue's and the treasury's.
CREATE TABLE split_in_lieu (
    action_id   text NOT NULL,
    fund_id     text NOT NULL,
    strategy_id text NOT NULL,
    quantity    numeric NOT NULL,
    price       numeric,
    PRIMARY KEY (action_id, fund_id, strategy_id)
);
