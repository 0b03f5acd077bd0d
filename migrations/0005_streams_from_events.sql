-- A stream's head (its version, and the sort_key its next event is raised
-- to) is read from its newest event, through the (stream_id, version)
-- index, and the unique index on those columns is what serialises
-- appenders of one stream. The head table that every append used to update
-- goes. It never held anything the events do not: each append moved it in
-- the same statement that inserted the events.
--
-- Stop every process of an earlier converge version before applying this:
-- they append through the table.

DROP TABLE {{.schema}}.streams;
