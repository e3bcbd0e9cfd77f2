-- The relay now deletes an outbox row once the bus has it (Store.mark_published) instead of
-- setting published_at: the outbox is a queue, and every event is kept in its own table
-- (order_events, fills, positions, alerts, trading_states). Rows that earlier versions marked
-- published are removed here, so the table holds only what is still to be published;
-- published_at stays (always NULL) for the partial index the sweep reads.
DELETE FROM outbox WHERE published_at IS NOT NULL;
