-- Events, streams and consumer checkpoints.
--
-- sort_key is the ordering key of the global feed: the appending
-- transaction's id, raised to the stream's previous sort_key when that is
-- larger (see pgstore's package doc). Readers only read rows whose sort_key
-- is below the snapshot's xmin, which is what makes the feed gap-free.

CREATE TABLE {{.schema}}.streams (
    stream_id  text PRIMARY KEY,
    version    bigint NOT NULL CHECK (version >= 0),
    sort_key   bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {{.schema}}.events (
    seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sort_key       bigint NOT NULL,
    event_id       uuid NOT NULL UNIQUE,
    stream_id      text NOT NULL,
    version        bigint NOT NULL CHECK (version >= 1),
    type           text NOT NULL,
    schema_version int NOT NULL DEFAULT 1,
    payload        jsonb NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    category       text NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE UNIQUE INDEX events_feed_idx ON {{.schema}}.events (sort_key, seq);
CREATE INDEX events_category_idx ON {{.schema}}.events (category, sort_key, seq);

CREATE TABLE {{.schema}}.checkpoints (
    name         text PRIMARY KEY,
    major        bigint NOT NULL DEFAULT 0,
    minor        bigint NOT NULL DEFAULT 0,
    owner        text,
    generation   bigint NOT NULL DEFAULT 0,
    lease_until  timestamptz,
    heartbeat_at timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
