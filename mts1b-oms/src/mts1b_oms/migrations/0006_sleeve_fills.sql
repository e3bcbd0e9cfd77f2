-- Sleeve ownership (issue #17). Each fill is split across the sleeves (strategies) its order
-- serves (mts1b_foundation.sleeves: pro rata to what each still has to trade, exact, the
-- largest taking the rounding remainder); each sleeve's signed credit and its part of the
-- commission are written here in the same transaction as the fill, and the sleeve's position
-- (positions, keyed by strategy_id) moves by that credit. A bust marks the fill busted (its
-- credits then count for nothing); a correction overwrites the credits. An order without
-- sleeves credits its whole fill to its strategy_id, as every fill before this migration did:
-- those are copied in, so each sleeve's fills are one query (Store.fills_for).
CREATE TABLE sleeve_fills (
    trade_id    text NOT NULL,
    strategy_id text NOT NULL,
    order_id    text NOT NULL,
    fund_id     text NOT NULL,
    symbol      text NOT NULL,
    quantity    numeric NOT NULL,
    commission  numeric NOT NULL,
    PRIMARY KEY (trade_id, strategy_id)
);
CREATE INDEX sleeve_fills_position ON sleeve_fills (fund_id, strategy_id, symbol);

INSERT INTO sleeve_fills (trade_id, strategy_id, order_id, fund_id, symbol, quantity, commission)
SELECT trade_id, strategy_id, order_id, fund_id, symbol,
       CASE side WHEN 'buy' THEN quantity ELSE -quantity END, commission
FROM fills;

-- A symbol whose sleeve deltas net to exactly zero sends nothing to the venue: its shares only
-- change owner. Such an internal transfer is booked here at the reference price, its credits in
-- sleeve_fills (trade_id = order_id = transfer_id), in one transaction with the positions it
-- moves; a transfer id is booked once.
CREATE TABLE sleeve_transfers (
    transfer_id text PRIMARY KEY,
    fund_id     text NOT NULL,
    symbol      text NOT NULL,
    price       numeric NOT NULL,
    ts          timestamptz NOT NULL
);
