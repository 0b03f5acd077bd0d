package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
)

// pgExecer is what the backend runs SQL on: the pool, a transaction or a
// savepoint.
type pgExecer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// pgBackend keeps read models in the tables of migrations/0002, in the
// store's schema. Feed writes go through pgstore.TxFromContext, so they
// commit with the consumer's checkpoint.
type pgBackend struct {
	store *pgstore.Store
	pool  *pgxpool.Pool
	q     pgQueries
}

func newPGBackend(s *pgstore.Store) *pgBackend {
	return &pgBackend{store: s, pool: s.Pool(), q: newPGQueries(s.Schema())}
}

func (b *pgBackend) appliesAtCommit() bool { return true }

// tokenArgs splits a token into the two bigint columns.
func tokenArgs(t events.Token) (int64, int64) { return int64(t.Major()), int64(t.Minor()) }

func makeToken(major, minor int64) events.Token {
	return events.MakeToken(uint64(major), uint64(minor))
}

// pgError explains the errors an operator can fix.
func (b *pgBackend) pgError(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return fmt.Errorf("projections: %s: %w (did you run `converge migrate --schema %s`?)", what, err, b.store.Schema())
	}
	return fmt.Errorf("projections: %s: %w", what, err)
}

func (b *pgBackend) register(ctx context.Context, ps []*compiled) error {
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		for _, c := range ps {
			if _, err := tx.Exec(ctx, b.q.register, c.name, string(c.class)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, b.q.registerGen, c.name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return b.pgError("register projections", err)
	}
	return nil
}

func (b *pgBackend) sweep(ctx context.Context, name string) error {
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		for _, sql := range []string{b.q.sweepRows, b.q.sweepMarkers, b.q.sweepGens} {
			if _, err := tx.Exec(ctx, sql, name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return b.pgError(fmt.Sprintf("drop old generations of %q", name), err)
	}
	return nil
}

// savepoint runs fn in a savepoint of the feed unit's transaction: an error
// rolls back fn's writes and releases the locks fn took, so the unit stays
// usable (for a dead letter) and other transactions are not blocked by a
// failed attempt (a halt).
func (b *pgBackend) savepoint(ctx context.Context, fn func(sp pgx.Tx) error) error {
	tx, err := pgstore.TxFromContext(ctx)
	if err != nil {
		return err
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return b.pgError("savepoint", err)
	}
	if err := fn(sp); err != nil {
		if ctx.Err() == nil {
			// Once the delivery has ended, the feed rolls the whole unit
			// back itself, possibly at this very moment: leave the
			// connection alone then.
			_ = sp.Rollback(ctx)
		}
		return err
	}
	if err := sp.Commit(ctx); err != nil {
		return b.pgError("release savepoint", err)
	}
	return nil
}

// target locks and returns the generation a consumer writes: the active one
// for the live consumer (holding the projection row FOR KEY SHARE, so a
// switch waits for this transaction), or rebuildGen while it is building.
func (b *pgBackend) target(ctx context.Context, db pgExecer, name string, rebuildGen int) (gen int, stale bool, err error) {
	sql := b.q.lockProjection
	if rebuildGen != 0 {
		sql = b.q.readProjection
	}
	var active int
	var building *int32
	if err := db.QueryRow(ctx, sql, name).Scan(&active, &building); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, false, fmt.Errorf("%w: %q", ErrNotRegistered, name)
		}
		return 0, false, b.pgError(fmt.Sprintf("read projection %q", name), err)
	}
	if rebuildGen == 0 {
		return active, false, nil
	}
	return rebuildGen, building == nil || int(*building) != rebuildGen, nil
}

// lockGen locks a generation's row and returns its watermark and state.
func (b *pgBackend) lockGen(ctx context.Context, db pgExecer, name string, gen int) (events.Token, State, error) {
	var major, minor int64
	var status string
	if err := db.QueryRow(ctx, b.q.lockGen, name, gen).Scan(&major, &minor, &status); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return events.Token{}, "", fmt.Errorf("%w: %q has no generation %d", ErrNotRegistered, name, gen)
		}
		return events.Token{}, "", b.pgError(fmt.Sprintf("lock generation %d of %q", gen, name), err)
	}
	return makeToken(major, minor), State(status), nil
}

// maxApplied is the latest event a generation reflects, through the feed
// or inline.
func (b *pgBackend) maxApplied(ctx context.Context, db pgExecer, name string, gen int) (events.Token, error) {
	var major, minor int64
	var mMajor, mMinor *int64
	if err := db.QueryRow(ctx, b.q.maxApplied, name, gen).Scan(&major, &minor, &mMajor, &mMinor); err != nil {
		return events.Token{}, b.pgError(fmt.Sprintf("read watermark of %q", name), err)
	}
	t := makeToken(major, minor)
	if mMajor != nil {
		t = t.Max(makeToken(*mMajor, *mMinor))
	}
	return t, nil
}

func (b *pgBackend) apply(ctx context.Context, a applyArgs) (applyResult, error) {
	var res applyResult
	err := b.savepoint(ctx, func(sp pgx.Tx) error {
		var err error
		res, err = b.applyIn(ctx, sp, a)
		return err
	})
	return res, err
}

func (b *pgBackend) applyIn(ctx context.Context, sp pgx.Tx, a applyArgs) (applyResult, error) {
	name := a.proj.name
	gen, stale, err := b.target(ctx, sp, name, a.rebuildGen)
	if err != nil {
		return applyResult{}, err
	}
	res := applyResult{gen: gen}
	if stale {
		res.stale = true
		return res, nil
	}
	applied, state, err := b.lockGen(ctx, sp, name, gen)
	if err != nil {
		return res, err
	}
	if state == StateHalted {
		return res, errGenHalted
	}
	tok := a.env.Token
	if tok.After(applied) && a.handler != nil {
		marked := false
		if a.proj.strong() {
			tag, err := sp.Exec(ctx, b.q.takeMarker, name, gen, a.env.ID)
			if err != nil {
				return res, b.pgError("take inline marker", err)
			}
			marked = tag.RowsAffected() > 0
		}
		if !marked {
			tx := &Tx{
				projection: name, generation: gen, token: tok, pg: sp,
				rows: &pgRows{db: sp, q: &b.q, proj: name, gen: gen, tok: tok},
			}
			if err := callHandler(ctx, a.handler, tx, a.env); err != nil {
				return res, err
			}
			res.applied, res.updates = true, tx.updates
		}
		major, minor := tokenArgs(tok)
		if _, err := sp.Exec(ctx, b.q.setApplied, name, gen, major, minor); err != nil {
			return res, b.pgError("move watermark", err)
		}
	}
	if a.checkSwitch && a.rebuildGen != 0 {
		if err := b.trySwitch(ctx, sp, name, gen, tok, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// trySwitch makes gen active when the live generation reflects nothing
// after tok, the rebuild's position: everything the live generation
// applied, the rebuild applied too.
func (b *pgBackend) trySwitch(ctx context.Context, sp pgx.Tx, name string, gen int, tok events.Token, res *applyResult) error {
	var active int
	var building *int32
	if err := sp.QueryRow(ctx, b.q.readProjection, name).Scan(&active, &building); err != nil {
		return b.pgError("read projection", err)
	}
	// A cheap look first, so a rebuild far behind never locks the
	// projection row, which would hold up the live consumer and appends.
	live, err := b.maxApplied(ctx, sp, name, active)
	if err != nil || live.After(tok) {
		return err
	}
	if err := sp.QueryRow(ctx, b.q.lockProjectionUpdate, name).Scan(&active, &building); err != nil {
		return b.pgError("lock projection for switch", err)
	}
	if building == nil || int(*building) != gen {
		res.stale = true
		return nil
	}
	if live, err = b.maxApplied(ctx, sp, name, active); err != nil || live.After(tok) {
		return err
	}
	major, minor := tokenArgs(tok)
	if _, err := sp.Exec(ctx, b.q.raiseApplied, name, gen, major, minor); err != nil {
		return b.pgError("move watermark", err)
	}
	if _, err := sp.Exec(ctx, b.q.switchGen, name, gen); err != nil {
		return b.pgError("switch generation", err)
	}
	res.switched, res.oldGen = true, active
	return nil
}

func (b *pgBackend) deadLetter(ctx context.Context, a applyArgs, reason string, attempts int) (DeadLetter, bool, error) {
	var dl DeadLetter
	stored := false
	err := b.savepoint(ctx, func(sp pgx.Tx) error {
		name := a.proj.name
		gen, stale, err := b.target(ctx, sp, name, a.rebuildGen)
		if err != nil || stale {
			return err
		}
		applied, _, err := b.lockGen(ctx, sp, name, gen)
		if err != nil || !a.env.Token.After(applied) {
			return err
		}
		major, minor := tokenArgs(a.env.Token)
		dl = DeadLetter{
			Projection: name, Generation: gen, EventID: a.env.ID, StreamID: a.env.StreamID,
			Version: a.env.Version, Token: a.env.Token, Type: a.env.Type,
			Payload: append(json.RawMessage(nil), a.env.Payload...), Reason: reason, Attempts: attempts,
		}
		if err := sp.QueryRow(ctx, b.q.insertDeadLetter, name, gen, a.env.ID, a.env.StreamID, a.env.Version,
			major, minor, a.env.Type, string(a.env.Payload), reason, attempts).Scan(&dl.ID, &dl.CreatedAt); err != nil {
			return b.pgError("store dead letter", err)
		}
		if _, err := sp.Exec(ctx, b.q.setApplied, name, gen, major, minor); err != nil {
			return b.pgError("move watermark", err)
		}
		stored = true
		return nil
	})
	return dl, stored, err
}

func (b *pgBackend) halt(ctx context.Context, name string, gen int, eventID, reason string) error {
	if _, err := b.pool.Exec(ctx, b.q.halt, name, gen, reason, eventID); err != nil {
		return b.pgError(fmt.Sprintf("halt %q", name), err)
	}
	return nil
}

func (b *pgBackend) running(ctx context.Context, name string, rebuildGen int) (bool, error) {
	var running bool
	if err := b.pool.QueryRow(ctx, b.q.running, name, rebuildGen).Scan(&running); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("%w: %q", ErrNotRegistered, name)
		}
		return false, b.pgError(fmt.Sprintf("read state of %q", name), err)
	}
	return running, nil
}

func (b *pgBackend) resume(ctx context.Context, name string) error {
	if _, err := b.pool.Exec(ctx, b.q.resume, name); err != nil {
		return b.pgError(fmt.Sprintf("resume %q", name), err)
	}
	return nil
}

func (b *pgBackend) status(ctx context.Context, name string) (Status, error) {
	var (
		s                       Status
		class, state            string
		reason, eventID         *string
		major, minor            int64
		bGen                    *int32
		bState, bReason, bEvent *string
		bMajor, bMinor          *int64
	)
	err := b.pool.QueryRow(ctx, b.q.status, name).Scan(&class, &s.Generation, &state, &reason, &eventID, &major, &minor,
		&bGen, &bState, &bReason, &bEvent, &bMajor, &bMinor)
	if errors.Is(err, pgx.ErrNoRows) {
		return Status{}, fmt.Errorf("%w: %q", ErrNotRegistered, name)
	}
	if err != nil {
		return Status{}, b.pgError(fmt.Sprintf("read status of %q", name), err)
	}
	s.Name, s.Class, s.State, s.Applied = name, consistency.Class(class), State(state), makeToken(major, minor)
	s.HaltedReason, s.HaltedEventID = deref(reason), deref(eventID)
	if bGen != nil && bMajor != nil {
		s.Rebuild = &RebuildStatus{
			Generation: int(*bGen), State: State(*bState), HaltedReason: deref(bReason),
			HaltedEventID: deref(bEvent), Applied: makeToken(*bMajor, *bMinor),
		}
	}
	return s, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (b *pgBackend) generations(ctx context.Context, name string) (int, int, error) {
	var active int
	var building *int32
	if err := b.pool.QueryRow(ctx, b.q.readProjection, name).Scan(&active, &building); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, 0, fmt.Errorf("%w: %q", ErrNotRegistered, name)
		}
		return 0, 0, b.pgError(fmt.Sprintf("read generations of %q", name), err)
	}
	if building == nil {
		return active, 0, nil
	}
	return active, int(*building), nil
}

func (b *pgBackend) startRebuild(ctx context.Context, name string) (gen int, switched bool, oldGen int, err error) {
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var active int
		var building *int32
		if err := tx.QueryRow(ctx, b.q.lockProjectionUpdate, name).Scan(&active, &building); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("%w: %q", ErrNotRegistered, name)
			}
			return b.pgError("lock projection", err)
		}
		if building != nil {
			return fmt.Errorf("%w: %q is building generation %d", ErrRebuildInProgress, name, *building)
		}
		if err := tx.QueryRow(ctx, b.q.nextGen, name, active).Scan(&gen); err != nil {
			return b.pgError("next generation", err)
		}
		if _, err := tx.Exec(ctx, b.q.insertGen, name, gen); err != nil {
			return b.pgError("create generation", err)
		}
		live, err := b.maxApplied(ctx, tx, name, active)
		if err != nil {
			return err
		}
		if live.IsZero() {
			// Nothing applied yet: the empty generation is already up to date.
			if _, err := tx.Exec(ctx, b.q.switchGen, name, gen); err != nil {
				return b.pgError("switch generation", err)
			}
			switched, oldGen = true, active
			return nil
		}
		if _, err := tx.Exec(ctx, b.q.setBuilding, name, gen); err != nil {
			return b.pgError("start rebuild", err)
		}
		return nil
	})
	return gen, switched, oldGen, err
}

func (b *pgBackend) reset(ctx context.Context, name string, tok events.Token) error {
	tx, err := pgstore.TxFromContext(ctx)
	if err != nil {
		return err
	}
	var active int
	var building *int32
	if err := tx.QueryRow(ctx, b.q.lockProjectionUpdate, name).Scan(&active, &building); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q", ErrNotRegistered, name)
		}
		return b.pgError("lock projection", err)
	}
	major, minor := tokenArgs(tok)
	if _, err := tx.Exec(ctx, b.q.resetGen, name, active, major, minor); err != nil {
		return b.pgError("reset watermark", err)
	}
	if _, err := tx.Exec(ctx, b.q.unhalt, name, active); err != nil {
		return b.pgError("resume", err)
	}
	return nil
}

func (b *pgBackend) reader(name string) rowStore {
	return &pgRows{db: b.pool, q: &b.q, proj: name, view: true}
}

func (b *pgBackend) deadLetters(ctx context.Context, name string) ([]DeadLetter, error) {
	rows, err := b.pool.Query(ctx, b.q.listDeadLetters, name)
	if err != nil {
		return nil, b.pgError("list dead letters", err)
	}
	defer rows.Close()
	out := []DeadLetter{}
	for rows.Next() {
		var dl DeadLetter
		var major, minor int64
		var payload []byte
		if err := rows.Scan(&dl.ID, &dl.Projection, &dl.Generation, &dl.EventID, &dl.StreamID, &dl.Version,
			&major, &minor, &dl.Type, &payload, &dl.Reason, &dl.Attempts, &dl.CreatedAt); err != nil {
			return nil, b.pgError("scan dead letter", err)
		}
		dl.Token, dl.Payload = makeToken(major, minor), payload
		out = append(out, dl)
	}
	if err := rows.Err(); err != nil {
		return nil, b.pgError("list dead letters", err)
	}
	return out, nil
}

// pgRows reads and writes one generation's rows through db, or reads the
// active generation (view) in single statements, so a reader sees either
// the old generation or the new one across a switch, never neither.
type pgRows struct {
	db   pgExecer
	q    *pgQueries
	proj string
	gen  int
	tok  events.Token
	view bool
}

func (r *pgRows) get(ctx context.Context, table, key string) (json.RawMessage, events.Token, bool, error) {
	sql, args := r.q.getRow, []any{r.proj, r.gen, table, key}
	if r.view {
		sql, args = r.q.viewGetRow, []any{r.proj, table, key}
	}
	var v []byte
	var major, minor int64
	err := r.db.QueryRow(ctx, sql, args...).Scan(&v, &major, &minor)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, events.Token{}, false, nil
	}
	if err != nil {
		return nil, events.Token{}, false, fmt.Errorf("projections: get %q/%q: %w", table, key, err)
	}
	return v, makeToken(major, minor), true, nil
}

func (r *pgRows) list(ctx context.Context, table string, q listQuery) ([]Row, error) {
	var to *string
	if q.hasTo {
		to = &q.to
	}
	sql, args := r.q.listRows, []any{r.proj, r.gen, table, q.after, q.from, to, q.limit}
	if r.view {
		sql, args = r.q.viewListRows, []any{r.proj, table, q.after, q.from, to, q.limit}
	}
	rows, err := r.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("projections: list %q: %w", table, err)
	}
	defer rows.Close()
	out := []Row{}
	for rows.Next() {
		var row Row
		var v []byte
		var major, minor int64
		if err := rows.Scan(&row.Key, &v, &major, &minor); err != nil {
			return nil, fmt.Errorf("projections: list %q: %w", table, err)
		}
		row.Value, row.Token = v, makeToken(major, minor)
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("projections: list %q: %w", table, err)
	}
	return out, nil
}

func (r *pgRows) put(ctx context.Context, table, key string, value json.RawMessage) error {
	if r.view {
		return ErrReadOnly
	}
	major, minor := tokenArgs(r.tok)
	if _, err := r.db.Exec(ctx, r.q.putRow, r.proj, r.gen, table, key, string(value), major, minor); err != nil {
		return fmt.Errorf("projections: put %q/%q: %w", table, key, err)
	}
	return nil
}

func (r *pgRows) del(ctx context.Context, table, key string) error {
	if r.view {
		return ErrReadOnly
	}
	if _, err := r.db.Exec(ctx, r.q.delRow, r.proj, r.gen, table, key); err != nil {
		return fmt.Errorf("projections: delete %q/%q: %w", table, key, err)
	}
	return nil
}

// pgQueries is the backend's SQL with the schema baked in.
type pgQueries struct {
	register, registerGen                      string
	sweepRows, sweepMarkers, sweepGens         string
	readProjection, lockProjection             string
	lockProjectionUpdate                       string
	lockGen, setApplied, raiseApplied          string
	maxApplied, takeMarker, insertMarker       string
	switchGen, nextGen, insertGen, setBuilding string
	halt, unhalt, running, resume, resetGen    string
	status                                     string
	insertDeadLetter, listDeadLetters          string
	getRow, listRows, putRow, delRow           string
	viewGetRow, viewListRows                   string
}

func newPGQueries(schema string) pgQueries {
	t := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	projs, gens, rows, markers, dls := t("projections"), t("projection_generations"), t("read_models"), t("inline_applied"), t("dead_letters")
	halts := t("projection_halts")
	stale := func(table string) string {
		return fmt.Sprintf(`DELETE FROM %s x USING %s p WHERE x.projection = $1 AND p.name = $1
AND x.generation <> p.active_generation AND x.generation IS DISTINCT FROM p.building_generation`, table, projs)
	}
	active := fmt.Sprintf(`(SELECT active_generation FROM %s WHERE name = $1)`, projs)
	return pgQueries{
		register: fmt.Sprintf(`INSERT INTO %[1]s (name, class) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET class = EXCLUDED.class, updated_at = now() WHERE %[1]s.class <> EXCLUDED.class`, projs),
		registerGen: fmt.Sprintf(`INSERT INTO %s (projection, generation) SELECT name, active_generation FROM %s WHERE name = $1
ON CONFLICT DO NOTHING`, gens, projs),
		sweepRows:            stale(rows),
		sweepMarkers:         stale(markers),
		sweepGens:            stale(gens),
		readProjection:       fmt.Sprintf(`SELECT active_generation, building_generation FROM %s WHERE name = $1`, projs),
		lockProjection:       fmt.Sprintf(`SELECT active_generation, building_generation FROM %s WHERE name = $1 FOR KEY SHARE`, projs),
		lockProjectionUpdate: fmt.Sprintf(`SELECT active_generation, building_generation FROM %s WHERE name = $1 FOR UPDATE`, projs),
		lockGen: fmt.Sprintf(`SELECT g.applied_major, g.applied_minor, CASE WHEN h.projection IS NULL THEN 'running' ELSE 'halted' END
FROM %s g LEFT JOIN %s h ON h.projection = g.projection AND h.generation = g.generation
WHERE g.projection = $1 AND g.generation = $2 FOR NO KEY UPDATE OF g`, gens, halts),
		setApplied: fmt.Sprintf(`UPDATE %s SET applied_major = $3, applied_minor = $4, updated_at = now()
WHERE projection = $1 AND generation = $2`, gens),
		raiseApplied: fmt.Sprintf(`UPDATE %s SET applied_major = $3, applied_minor = $4, updated_at = now()
WHERE projection = $1 AND generation = $2 AND (applied_major, applied_minor) < ($3, $4)`, gens),
		maxApplied: fmt.Sprintf(`SELECT g.applied_major, g.applied_minor, m.major, m.minor FROM %s g
LEFT JOIN LATERAL (SELECT major, minor FROM %s i WHERE i.projection = g.projection AND i.generation = g.generation
	ORDER BY major DESC, minor DESC LIMIT 1) m ON true
WHERE g.projection = $1 AND g.generation = $2`, gens, markers),
		takeMarker:   fmt.Sprintf(`DELETE FROM %s WHERE projection = $1 AND generation = $2 AND event_id = $3::uuid`, markers),
		insertMarker: fmt.Sprintf(`INSERT INTO %s (projection, generation, event_id, major, minor) VALUES ($1, $2, $3::uuid, $4, $5)`, markers),
		switchGen: fmt.Sprintf(`UPDATE %s SET active_generation = $2, building_generation = NULL, updated_at = now()
WHERE name = $1`, projs),
		nextGen:     fmt.Sprintf(`SELECT greatest($2::int, coalesce(max(generation), 0)) + 1 FROM %s WHERE projection = $1`, gens),
		insertGen:   fmt.Sprintf(`INSERT INTO %s (projection, generation) VALUES ($1, $2)`, gens),
		setBuilding: fmt.Sprintf(`UPDATE %s SET building_generation = $2, updated_at = now() WHERE name = $1`, projs),
		halt: fmt.Sprintf(`INSERT INTO %s (projection, generation, event_id, reason) VALUES ($1, $2, $4::uuid, $3)
ON CONFLICT (projection, generation) DO UPDATE SET event_id = EXCLUDED.event_id, reason = EXCLUDED.reason, halted_at = now()`, halts),
		running: fmt.Sprintf(`SELECT CASE
	WHEN $2::int <> 0 AND p.building_generation IS DISTINCT FROM $2::int THEN true
	ELSE NOT EXISTS (SELECT FROM %[2]s h WHERE h.projection = p.name
		AND h.generation = CASE WHEN $2::int = 0 THEN p.active_generation ELSE $2::int END)
END FROM %[1]s p WHERE p.name = $1`, projs, halts),
		resume:   fmt.Sprintf(`DELETE FROM %s WHERE projection = $1`, halts),
		resetGen: fmt.Sprintf(`UPDATE %s SET applied_major = $3, applied_minor = $4, updated_at = now() WHERE projection = $1 AND generation = $2`, gens),
		unhalt:   fmt.Sprintf(`DELETE FROM %s WHERE projection = $1 AND generation = $2`, halts),
		status: fmt.Sprintf(`SELECT p.class, p.active_generation,
	CASE WHEN gh.projection IS NULL THEN 'running' ELSE 'halted' END, gh.reason, gh.event_id::text, g.applied_major, g.applied_minor,
	p.building_generation, CASE WHEN bh.projection IS NULL THEN 'running' ELSE 'halted' END, bh.reason, bh.event_id::text, b.applied_major, b.applied_minor
FROM %[1]s p JOIN %[2]s g ON g.projection = p.name AND g.generation = p.active_generation
LEFT JOIN %[3]s gh ON gh.projection = g.projection AND gh.generation = g.generation
LEFT JOIN %[2]s b ON b.projection = p.name AND b.generation = p.building_generation
LEFT JOIN %[3]s bh ON bh.projection = b.projection AND bh.generation = b.generation
WHERE p.name = $1`, projs, gens, halts),
		insertDeadLetter: fmt.Sprintf(`INSERT INTO %s (projection, generation, event_id, stream_id, version, major, minor, type, payload, reason, attempts)
VALUES ($1, $2, $3::uuid, $4, $5, $6, $7, $8, $9::jsonb, $10, $11) RETURNING id, created_at`, dls),
		listDeadLetters: fmt.Sprintf(`SELECT id, projection, generation, event_id::text, stream_id, version, major, minor, type, payload, reason, attempts, created_at
FROM %s WHERE projection = $1 ORDER BY id`, dls),
		getRow: fmt.Sprintf(`SELECT value, major, minor FROM %s WHERE projection = $1 AND generation = $2 AND tbl = $3 AND key = $4`, rows),
		listRows: fmt.Sprintf(`SELECT key, value, major, minor FROM %s WHERE projection = $1 AND generation = $2 AND tbl = $3
AND key > $4 AND key >= $5 AND ($6::text IS NULL OR key < $6::text) ORDER BY key LIMIT $7`, rows),
		putRow: fmt.Sprintf(`INSERT INTO %s (projection, generation, tbl, key, value, major, minor) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
ON CONFLICT (projection, generation, tbl, key) DO UPDATE SET value = EXCLUDED.value, major = EXCLUDED.major, minor = EXCLUDED.minor, updated_at = now()`, rows),
		delRow:     fmt.Sprintf(`DELETE FROM %s WHERE projection = $1 AND generation = $2 AND tbl = $3 AND key = $4`, rows),
		viewGetRow: fmt.Sprintf(`SELECT value, major, minor FROM %s WHERE projection = $1 AND generation = %s AND tbl = $2 AND key = $3`, rows, active),
		viewListRows: fmt.Sprintf(`SELECT key, value, major, minor FROM %s WHERE projection = $1 AND generation = %s AND tbl = $2
AND key > $3 AND key >= $4 AND ($5::text IS NULL OR key < $5::text) ORDER BY key LIMIT $6`, rows, active),
	}
}
