-- The treasury's double-entry ledger (mts1b_treasury.ledger).
--
-- Accounts are per fund and named by a fixed scheme (ledger_accounts.account):
--   cash             asset      money at the broker
--   reserved_cash    asset      cash set aside by pending reservations (open orders)
--   positions:<SYM>  asset      book cost of the open lots of <SYM> (quantity kept beside it)
--   realized_pnl     income     realised gains (credit) and losses (debit) of disposals
--   dividends        income     dividends received (credit) and paid on shorts (debit)
--   commissions      expense    every commission, expensed when the fill posts
--   borrow           expense    stock-borrow fees of shorts
--   capital          equity     contributions (credit) and withdrawals (debit): the flows
--   transfers        equity     capital moved to (debit) or from (credit) another fund
-- Amounts are numeric (exact) and signed: a debit is positive, a credit negative, so every
-- entry's lines sum to zero and every fund's accounts sum to zero.
--
-- Integrity does not rest on the Python code: a deferred constraint trigger refuses at COMMIT
-- any entry whose lines do not sum to zero, lines are never updated or deleted, and an entry
-- only ever changes from pending to posted or voided.

CREATE TABLE ledger_funds (
    fund_id     text PRIMARY KEY,
    lot_method  text NOT NULL CHECK (lot_method IN
                    ('fifo', 'lifo', 'hifo', 'average_cost', 'specific_id')),
    opened_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_accounts (
    fund_id      text NOT NULL REFERENCES ledger_funds (fund_id),
    account      text NOT NULL CHECK (account ~ '^(cash|reserved_cash|realized_pnl|dividends|commissions|borrow|capital|transfers|positions:[A-Za-z0-9^][A-Za-z0-9.=^&_-]*)$'),
    account_type text NOT NULL CHECK (account_type IN
                     ('asset', 'liability', 'equity', 'income', 'expense')),
    PRIMARY KEY (fund_id, account)
);

-- Fills and splits share one sequence: it is the order in which lots are replayed.
CREATE SEQUENCE ledger_event_seq;

CREATE TABLE journal_entries (
    entry_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fund_id    text NOT NULL REFERENCES ledger_funds (fund_id),
    kind       text NOT NULL CHECK (kind IN ('fill', 'bust', 'correction', 'restatement',
                   'reservation', 'flow', 'transfer', 'dividend', 'borrow', 'split')),
    key        text NOT NULL,
    effective  date NOT NULL,
    ts         timestamptz NOT NULL,
    status     text NOT NULL CHECK (status IN ('posted', 'pending', 'voided')),
    memo       text NOT NULL DEFAULT '',
    reverses   bigint REFERENCES journal_entries (entry_id),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, key, fund_id)
);
CREATE INDEX journal_entries_fund_ts ON journal_entries (fund_id, ts);

CREATE TABLE journal_lines (
    entry_id bigint NOT NULL,
    line_no  smallint NOT NULL CHECK (line_no >= 0),
    fund_id  text NOT NULL,    -- the entry's fund (checked at COMMIT with the balance)
    account  text NOT NULL CHECK (account ~ '^(cash|reserved_cash|realized_pnl|dividends|commissions|borrow|capital|transfers|positions:[A-Za-z0-9^][A-Za-z0-9.=^&_-]*)$'),
    amount   numeric NOT NULL,
    quantity numeric,
    PRIMARY KEY (entry_id, line_no),
    CHECK (quantity IS NULL OR account LIKE 'positions:%')
);
CREATE INDEX journal_lines_fund_account ON journal_lines (fund_id, account);

-- The balance rule, checked at COMMIT (deferred) so that an entry and its lines can be written
-- in separate statements of one transaction: the lines of an entry must sum to zero, the entry
-- must exist, and every line must be of the entry's fund (so each fund's books balance on their
-- own). It runs once per entry, on its line 0, which costs a quarter of running it on every
-- line (bench/treasury_ledger.py: 25% more fills/s). That is enough because of the second rule:
-- every statement that inserts lines of an entry inserts its line 0, which the primary key lets
-- happen once - so all of an entry's lines are written by the statement whose line 0 queues the
-- check, and no line can be added to an entry later.
-- Why no foreign keys on journal_lines: the check covers what they would, and each would cost
-- another lookup per line. Account names are checked by the CHECK above; ledger_accounts lists
-- each fund's accounts with their type.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
    strays bigint;
BEGIN
    SELECT coalesce(sum(l.amount), 0),
           count(*) FILTER (WHERE e.fund_id IS DISTINCT FROM l.fund_id)
      INTO total, strays
      FROM journal_lines l LEFT JOIN journal_entries e ON e.entry_id = l.entry_id
     WHERE l.entry_id = NEW.entry_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'journal entry % does not balance: its lines sum to %',
            NEW.entry_id, total USING ERRCODE = 'check_violation';
    END IF;
    IF strays <> 0 THEN
        RAISE EXCEPTION 'journal entry % is missing or has lines of another fund', NEW.entry_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER journal_lines_balanced AFTER INSERT ON journal_lines
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.line_no = 0)
    EXECUTE FUNCTION ledger_check_balanced();

CREATE FUNCTION ledger_lines_with_line_zero() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    stray bigint;
BEGIN
    SELECT entry_id INTO stray FROM new_lines GROUP BY entry_id
    HAVING bool_and(line_no <> 0) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'lines of journal entry % come without its line 0: an entry''s lines '
            'are all written by one statement', stray USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER journal_lines_whole_entries AFTER INSERT ON journal_lines
    REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT
    EXECUTE FUNCTION ledger_lines_with_line_zero();

-- Lines are never edited: a mistake is corrected by a reversing entry, a reservation is
-- released by voiding its (pending) entry.
CREATE FUNCTION ledger_refuse_line_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal lines are immutable: post a reversing entry instead'
        USING ERRCODE = 'object_not_in_prerequisite_state';
END $$;

CREATE TRIGGER journal_lines_immutable BEFORE UPDATE OR DELETE ON journal_lines
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_line_change();

-- An entry only changes status, and only from pending (to posted or voided).
CREATE FUNCTION ledger_guard_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = 'pending' AND NEW.status IN ('posted', 'voided')
       AND (NEW.entry_id, NEW.fund_id, NEW.kind, NEW.key, NEW.effective, NEW.ts, NEW.memo,
            NEW.reverses)
           IS NOT DISTINCT FROM
           (OLD.entry_id, OLD.fund_id, OLD.kind, OLD.key, OLD.effective, OLD.ts, OLD.memo,
            OLD.reverses) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'a % journal entry cannot be changed or deleted', OLD.status
        USING ERRCODE = 'object_not_in_prerequisite_state';
END $$;

CREATE TRIGGER journal_entries_guard BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_entry();

-- Every revision of every fill: revision 0 is the fill as first posted, n > 0 its n-th
-- correction. At most one revision of a trade is 'posted'; busted and superseded revisions
-- stay for the record. Corrections keep the original's sequence (their place in the replay).
CREATE TABLE ledger_fills (
    trade_id    text NOT NULL,
    revision    integer NOT NULL,
    status      text NOT NULL CHECK (status IN ('posted', 'busted', 'corrected')),
    entry_id    bigint NOT NULL,  -- written with its entry, in one transaction
    sequence    bigint NOT NULL,
    fund_id     text NOT NULL,
    order_id    text NOT NULL,
    symbol      text NOT NULL,
    side        text NOT NULL,
    quantity    numeric NOT NULL,
    price       numeric NOT NULL,
    commission  numeric NOT NULL,
    ts          timestamptz NOT NULL,
    venue       text,
    sleeve_ids  text[] NOT NULL,
    sleeve_qty  numeric[] NOT NULL,
    lot_ids     text[],
    PRIMARY KEY (trade_id, revision)
);
CREATE UNIQUE INDEX ledger_fills_one_posted ON ledger_fills (trade_id) WHERE status = 'posted';
CREATE INDEX ledger_fills_fund_symbol ON ledger_fills (fund_id, symbol, sequence);
CREATE INDEX ledger_fills_fund_ts ON ledger_fills (fund_id, ts);

CREATE TABLE ledger_splits (
    fund_id   text NOT NULL REFERENCES ledger_funds (fund_id),
    symbol    text NOT NULL,
    key       text NOT NULL,
    ratio     numeric NOT NULL CHECK (ratio > 0),
    effective date NOT NULL,
    sequence  bigint NOT NULL,
    entry_id  bigint NOT NULL REFERENCES journal_entries (entry_id),
    PRIMARY KEY (fund_id, key)
);
-- One row per split applied (the idempotency record, also when no fund held the symbol).
CREATE TABLE ledger_split_actions (
    key       text PRIMARY KEY,
    symbol    text NOT NULL,
    ratio     numeric NOT NULL,
    effective date NOT NULL
);
CREATE INDEX ledger_splits_fund_symbol ON ledger_splits (fund_id, symbol, sequence);

-- Derived state: each posting writes the lots it changed; a bust or correction rewrites the
-- (fund, symbol) it touches from a replay. Lots are read back in (acquired, sequence) order,
-- the order mts1b_treasury.lots keeps them in.
CREATE TABLE ledger_lots (
    fund_id  text NOT NULL,
    symbol   text NOT NULL,
    lot_id   text NOT NULL,
    quantity numeric NOT NULL,
    cost     numeric NOT NULL,
    fees     numeric NOT NULL,
    acquired date NOT NULL,
    sequence bigint NOT NULL,
    PRIMARY KEY (fund_id, symbol, lot_id)
);

CREATE TABLE ledger_disposals (
    fund_id   text NOT NULL,
    symbol    text NOT NULL,
    trade_id  text NOT NULL,
    lot_id    text NOT NULL,
    quantity  numeric NOT NULL,
    cost      numeric NOT NULL,
    fees      numeric NOT NULL,
    proceeds  numeric NOT NULL,
    sale_fees numeric NOT NULL,
    realized  numeric NOT NULL,
    acquired  date NOT NULL,
    disposed  date NOT NULL,
    sequence  bigint NOT NULL
);
CREATE INDEX ledger_disposals_fund_symbol ON ledger_disposals (fund_id, symbol, sequence);

CREATE TABLE ledger_sleeve_positions (
    fund_id     text NOT NULL,
    strategy_id text NOT NULL,
    symbol      text NOT NULL,
    quantity    numeric NOT NULL,
    PRIMARY KEY (fund_id, strategy_id, symbol)
);
