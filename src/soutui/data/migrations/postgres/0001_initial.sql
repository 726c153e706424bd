-- soutui schema version 1: every dataset's tables as rows keyed by `dataset` (the normalised name).
-- Applied once, in one transaction, by soutui.data.postgres_store.migrate; never edit a released
-- file: change the schema in a new NNNN_*.sql file instead, so existing databases upgrade in place.

CREATE TABLE soutui_datasets (
    dataset text PRIMARY KEY,  -- normalised name: my-shop is stored as my_shop
    name    text NOT NULL      -- the name as imported (collision check)
);

CREATE TABLE soutui_meta (
    dataset text NOT NULL,
    key     text NOT NULL,
    value   text,
    PRIMARY KEY (dataset, key)
);

-- `pos` keeps the order rows were written in, so reads return them as the importer wrote them.
CREATE TABLE soutui_items (
    pos         bigint GENERATED ALWAYS AS IDENTITY,
    dataset     text NOT NULL,
    item_id     text,
    title       text,
    description text,
    category    text,
    brand       text,
    price       double precision,
    attributes  text,
    in_stock    boolean
);
CREATE INDEX soutui_items_dataset ON soutui_items (dataset, pos);

CREATE TABLE soutui_users (
    pos        bigint GENERATED ALWAYS AS IDENTITY,
    dataset    text NOT NULL,
    user_id    text,
    attributes text
);
CREATE INDEX soutui_users_dataset ON soutui_users (dataset, pos);

-- One row per event id and dataset: live ingest is INSERT ... ON CONFLICT DO NOTHING, so a
-- replayed or doubly-posted event is stored once, whichever process posts it.
CREATE TABLE soutui_events (
    pos        bigint GENERATED ALWAYS AS IDENTITY,
    dataset    text NOT NULL,
    event_id   text NOT NULL,
    user_id    text,
    item_id    text,
    event_type text,
    query      text,
    session_id text,
    ts         bigint,
    relevance  double precision,
    PRIMARY KEY (dataset, event_id)
);
CREATE INDEX soutui_events_dataset ON soutui_events (dataset, pos);

CREATE TABLE soutui_quarantine (
    pos     bigint GENERATED ALWAYS AS IDENTITY,
    dataset text NOT NULL,
    "table" text,
    "row"   text,
    reason  text,
    data    text
);
CREATE INDEX soutui_quarantine_dataset ON soutui_quarantine (dataset, pos);

-- Right-to-be-forgotten: a salted hash of the subject, never the id itself.
CREATE TABLE soutui_forget_audit (
    dataset      text NOT NULL,
    salt         text NOT NULL,
    subject_hash text NOT NULL,
    events       bigint,
    quarantine   bigint,
    users        bigint,
    forgotten_at bigint
);

CREATE TABLE soutui_pending_forget (
    dataset      text NOT NULL,
    salt         text NOT NULL,
    subject_hash text NOT NULL,
    requested_at bigint
);
