-- Read models built by projections (package projections).
--
-- A projection writes its rows under a generation. Readers always read the
-- generation named by projections.active_generation, in one statement, so a
-- rebuild can write the next generation beside the live one and switch to it
-- in one transaction: readers see either the old rows or the new ones, never
-- neither. The old generation's rows are deleted after the switch.

CREATE TABLE {{.schema}}.projections (
    name                text PRIMARY KEY,
    class               text NOT NULL CHECK (class IN ('eventual', 'strong')),
    active_generation   int NOT NULL DEFAULT 1 CHECK (active_generation >= 1),
    -- The generation a rebuild is writing beside the active one, if any.
    building_generation int CHECK (building_generation > active_generation),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- One row per live generation of a projection. applied_major/applied_minor
-- is the generation's watermark: the token of the last event the feed
-- applied to it, written in the same transaction as the rows (and with the
-- feed checkpoint). An event at or before the watermark is skipped, which
-- makes replays and duplicated deliveries harmless.
CREATE TABLE {{.schema}}.projection_generations (
    projection    text NOT NULL REFERENCES {{.schema}}.projections (name) ON DELETE CASCADE,
    generation    int NOT NULL,
    applied_major bigint NOT NULL DEFAULT 0,
    applied_minor bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, generation)
);

-- A row here halts a generation: an event failed too often under the halt
-- policy. It is kept apart from projection_generations, whose row the
-- consumer's open transaction holds locked while the failure is recorded.
CREATE TABLE {{.schema}}.projection_halts (
    projection text NOT NULL,
    generation int NOT NULL,
    event_id   uuid NOT NULL,
    reason     text NOT NULL,
    halted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, generation),
    FOREIGN KEY (projection, generation) REFERENCES {{.schema}}.projection_generations (projection, generation) ON DELETE CASCADE
);

-- Read-model rows: a key-value table per (projection, generation, tbl).
-- Keys and table names sort byte-wise (COLLATE "C"), as in memory, so
-- List pages the same way on both backends. major/minor is the token of
-- the event that last wrote the row.
CREATE TABLE {{.schema}}.read_models (
    projection text NOT NULL,
    generation int NOT NULL,
    tbl        text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    value      jsonb NOT NULL,
    major      bigint NOT NULL,
    minor      bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, generation, tbl, key)
);

-- Events a strong projection applied inside their append's transaction and
-- whose place in the feed the projection's feed consumer has not passed yet.
-- The consumer deletes the marker instead of applying the event again.
CREATE TABLE {{.schema}}.inline_applied (
    projection text NOT NULL,
    generation int NOT NULL,
    event_id   uuid NOT NULL,
    major      bigint NOT NULL,
    minor      bigint NOT NULL,
    PRIMARY KEY (projection, generation, event_id)
);

-- Events a projection gave up on after its retries (OnFailure: DeadLetter).
-- The projection's checkpoint moved past them in the same transaction.
CREATE TABLE {{.schema}}.dead_letters (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection text NOT NULL,
    generation int NOT NULL,
    event_id   uuid NOT NULL,
    stream_id  text NOT NULL,
    version    bigint NOT NULL,
    major      bigint NOT NULL,
    minor      bigint NOT NULL,
    type       text NOT NULL,
    payload    jsonb NOT NULL,
    reason     text NOT NULL,
    attempts   int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX dead_letters_projection_idx ON {{.schema}}.dead_letters (projection, id);
