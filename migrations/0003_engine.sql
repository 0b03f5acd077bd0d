-- Storage for converge's engine runtime: rows beside the events, group
-- membership, and the index a type-filtered feed read needs.

-- Rows (feed.Rows): transactional key-value storage that commits in the
-- same transaction as the appends and the checkpoint that caused it.
-- Names and keys sort byte-wise (COLLATE "C"), as in memory, so List pages
-- the same way on both stores. major/minor is the token of the event that
-- last wrote the row.
CREATE TABLE {{.schema}}.rows (
    namespace  text COLLATE "C" NOT NULL,
    tbl        text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    value      jsonb NOT NULL,
    major      bigint NOT NULL,
    minor      bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, tbl, key)
);

-- Membership of consumer groups (CheckpointStore.Heartbeat): a row per
-- live member with its expiry. Rows rather than session advisory locks,
-- because a session lock outlives its holder on a pooled connection that
-- is never closed, while a row simply expires.
CREATE TABLE {{.schema}}.members (
    grp        text COLLATE "C" NOT NULL,
    member     text COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (grp, member)
);

-- A type-filtered feed read walks the events of its types in feed order.
CREATE INDEX events_type_idx ON {{.schema}}.events (type, sort_key, seq);
