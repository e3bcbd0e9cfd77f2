-- Strict idempotency (issue #15). Each order keeps the canonical hash of its content (every
-- field but order_id, created_at and tags; mts1b_oms.idempotency), so a repeat of its key is
-- told apart from a different order under the same key (IDEMPOTENCY_CONFLICT). A key whose
-- order ended denied or rejected may be submitted again: the new attempt takes the key over
-- and names the attempt before it in previous_order_id, so the chain of attempts of a key is
-- the holder and its predecessors (Store.attempts). Orders written before this migration
-- have neither; their content is hashed from the stored order when it is needed.
ALTER TABLE orders ADD COLUMN content_hash text;
ALTER TABLE orders ADD COLUMN previous_order_id text;
