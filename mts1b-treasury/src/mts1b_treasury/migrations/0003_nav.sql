-- NAV strikes: one row per strike of a fund's session, never edited. The canonical inputs and
-- the FundNav are kept as the exact text that was digested / published (text, not jsonb: jsonb
-- would reorder keys and the bytes would no longer match their digests). At most one row of a
-- (fund, session) is current; a restatement keeps the rows before it (current = false) and
-- names the row it replaces in `restates`.
CREATE TABLE nav_strikes (
    strike_id       bigserial PRIMARY KEY,
    fund_id         text NOT NULL,
    session         date NOT NULL,
    inputs_json     text NOT NULL,
    inputs_sha256   text NOT NULL CHECK (inputs_sha256 ~ '^[0-9a-f]{64}$'),
    nav_json        text NOT NULL,
    outputs_sha256  text NOT NULL CHECK (outputs_sha256 ~ '^[0-9a-f]{64}$'),
    nav             numeric NOT NULL,
    struck_at       timestamptz NOT NULL,
    current         boolean NOT NULL DEFAULT true,
    restates        bigint REFERENCES nav_strikes (strike_id)
);
CREATE UNIQUE INDEX nav_strikes_one_current ON nav_strikes (fund_id, session) WHERE current;
CREATE INDEX nav_strikes_by_session ON nav_strikes (fund_id, session, strike_id);

-- History cannot be rewritten: a row may only stop being current; nothing is deleted.
CREATE FUNCTION nav_strikes_keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'nav_strikes rows are history: they are never deleted';
    END IF;
    IF (NEW.strike_id, NEW.fund_id, NEW.session, NEW.inputs_json, NEW.inputs_sha256,
        NEW.nav_json, NEW.outputs_sha256, NEW.nav, NEW.struck_at, NEW.restates)
       IS DISTINCT FROM
       (OLD.strike_id, OLD.fund_id, OLD.session, OLD.inputs_json, OLD.inputs_sha256,
        OLD.nav_json, OLD.outputs_sha256, OLD.nav, OLD.struck_at, OLD.restates)
       OR (NEW.current AND NOT OLD.current) THEN
        RAISE EXCEPTION 'nav_strikes rows are history: only current may go from true to false';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER nav_strikes_keep_history BEFORE UPDATE OR DELETE ON nav_strikes
    FOR EACH ROW EXECUTE FUNCTION nav_strikes_keep_history();
