-- The strategy registry (mts1b_research.registry).
--
-- strategies            one row per strategy name: its current version and state, and the
--                       state it held before it was disabled (what enable restores).
-- strategy_versions     every spec ever registered under a name (never updated or deleted):
--                       the spec as JSON (its version field set, its state field draft), who
--                       registered it, when and why.
-- strategy_transitions  every state change: from, to, the actor and the roles they held, when,
--                       why, and for promotions the rule's verdict and the evidence it judged.
--                       Written in the same transaction as the state change.

CREATE TABLE strategies (
    name                 text PRIMARY KEY,
    version              integer NOT NULL CHECK (version >= 1),
    state                text NOT NULL CHECK (state IN
                             ('draft', 'shadow', 'paper', 'live', 'disabled', 'retired')),
    state_before_disable text CHECK (state_before_disable IN ('draft', 'shadow', 'paper', 'live')),
    updated_at           timestamptz NOT NULL,
    updated_by           text NOT NULL,
    CHECK ((state = 'disabled') = (state_before_disable IS NOT NULL))
);

CREATE TABLE strategy_versions (
    name          text NOT NULL REFERENCES strategies (name),
    version       integer NOT NULL CHECK (version >= 1),
    spec          jsonb NOT NULL,
    registered_at timestamptz NOT NULL,
    registered_by text NOT NULL,
    reason        text,
    PRIMARY KEY (name, version)
);

CREATE TABLE strategy_transitions (
    transition_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL REFERENCES strategies (name),
    version       integer NOT NULL,
    from_state    text NOT NULL,
    to_state      text NOT NULL,
    actor         text NOT NULL,
    roles         text[] NOT NULL DEFAULT '{}',
    ts            timestamptz NOT NULL,
    reason        text,
    verdict       jsonb,
    evidence      jsonb,
    FOREIGN KEY (name, version) REFERENCES strategy_versions (name, version)
);
CREATE INDEX strategy_transitions_name ON strategy_transitions (name, transition_id);

-- The history is an audit record: rows are never changed or removed.
CREATE FUNCTION strategy_history_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER strategy_versions_append_only BEFORE UPDATE OR DELETE ON strategy_versions
    FOR EACH ROW EXECUTE FUNCTION strategy_history_is_append_only();
CREATE TRIGGER strategy_transitions_append_only BEFORE UPDATE OR DELETE ON strategy_transitions
    FOR EACH ROW EXECUTE FUNCTION strategy_history_is_append_only();
