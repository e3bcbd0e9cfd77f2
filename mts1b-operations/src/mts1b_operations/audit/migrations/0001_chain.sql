-- The audit chain: append-only entries and the signed checkpoints over them.
--
-- seq is the entry's place in the chain (0, 1, 2, ...); (domain, msg_id) is the event's
-- Nats-Msg-Id within its stream, unique, so a redelivered or replayed event is never a second
-- entry. entry holds the RFC 8785 bytes the hash covers, event the event's own canonical JSON;
-- the other columns repeat what the entry says so that lookups use indexes (verify checks
-- they still agree with the entry).
CREATE TABLE audit_entries (
    seq          bigint      PRIMARY KEY CHECK (seq >= 0),
    domain       text        NOT NULL,
    msg_id       text        NOT NULL,
    subject      text        NOT NULL,
    ids          text[]      NOT NULL,
    producer_ts  timestamptz NOT NULL,
    recorded_ts  timestamptz NOT NULL,
    prev_hash    bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash         bytea       NOT NULL CHECK (length(hash) = 32),
    entry        bytea       NOT NULL,
    event        bytea       NOT NULL,
    UNIQUE (domain, msg_id)
);
CREATE INDEX audit_entries_ids ON audit_entries USING gin (ids);

CREATE TABLE audit_checkpoints (
    tree_size    bigint      PRIMARY KEY CHECK (tree_size >= 1),
    root_hash    bytea       NOT NULL CHECK (length(root_hash) = 32),
    chain_hash   bytea       NOT NULL CHECK (length(chain_hash) = 32),
    checkpoint   bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Write once: no role, the owner included, may change or remove a row. (A superuser can still
-- disable the triggers; that is what verify and the signed checkpoints are for.)
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit chain is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_entries, audit_checkpoints FROM PUBLIC;
