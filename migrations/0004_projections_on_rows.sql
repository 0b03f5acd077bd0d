-- Projections run on the engine runtime: their read models, generations and
-- rebuild state are rows (migration 0003), and each generation's progress is
-- its processor's checkpoint. The tables of migration 0002 go, and so do the
-- checkpoints of the projections they held (and of their rebuilds): the read
-- models are rebuilt from the feed by the next Runner, from the beginning.
-- Nothing is lost: read models are derived from the events.

DELETE FROM {{.schema}}.checkpoints c
WHERE c.name IN (SELECT p.name FROM {{.schema}}.projections p)
   OR EXISTS (SELECT FROM {{.schema}}.projections p WHERE starts_with(c.name, p.name || '@rebuild-'));

DROP TABLE {{.schema}}.dead_letters;
DROP TABLE {{.schema}}.inline_applied;
DROP TABLE {{.schema}}.read_models;
DROP TABLE {{.schema}}.projection_halts;
DROP TABLE {{.schema}}.projection_generations;
DROP TABLE {{.schema}}.projections;
