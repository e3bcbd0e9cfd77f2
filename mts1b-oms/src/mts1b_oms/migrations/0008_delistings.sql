-- Delistings (issue #20): a delisted symbol's positions are closed at its last close,
-- effective at the open of the first session without it. Booked as a split of ratio 1 whose
-- close_price is set: the same once-per-(action_id, fund) row, and a sleeve rebuilt from its
-- fills later (a bust, a late fill) is closed there again. NULL: a split.
ALTER TABLE splits ADD COLUMN close_price numeric;
