package pgtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Migrating a schema takes tern's database-wide lock and about 0.1 s of
// the server's work, then dropping it more; with some 700 schemas in a
// full test run, tests of every package queued behind one another's
// migrations for minutes. A test process that turns reuse on hands the
// schema of a test that passed, emptied, to its next test instead: only
// as many schemas are migrated as its tests ever ran at once.
//
// A schema is handed on only when it is exactly as migration left it:
// its catalog (tables, columns, indexes, constraints, triggers, functions,
// types, privileges, options) is compared with that of a schema this
// process migrated fresh, and any difference (a test that added a table, a
// trigger, or changed a privilege) drops it as before. Emptying truncates
// every table but tern's version table and restarts the identity columns,
// so the next test sees what a fresh migration gives.
var reuse struct {
	mu          sync.Mutex
	on          bool
	url         string
	free        []string
	kept        map[string]bool // every schema this process may hand on, free or in use
	fingerprint string          // of a freshly migrated schema; "" until one is known
}

// ReuseSchemas turns schema reuse on for this test process (see the
// package doc) and returns the function that drops the schemas kept, to
// call once the tests have run. From TestMain:
//
//	goleak.VerifyTestMain(m, goleak.Cleanup(pgtest.ReuseSchemas()))
func ReuseSchemas() (dropKept func(exitCode int)) {
	reuse.mu.Lock()
	reuse.on = true
	reuse.mu.Unlock()
	return func(int) {
		reuse.mu.Lock()
		url, kept := reuse.url, reuse.kept
		reuse.on, reuse.free, reuse.kept = false, nil, nil
		reuse.mu.Unlock()
		if url == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		defer closeAdmin(ctx)
		for schema := range kept {
			if err := dropSchema(ctx, url, schema); err != nil {
				fmt.Printf("pgtest: drop kept schema %s: %v\n", schema, err)
			}
		}
	}
}

// takeSchema returns a kept schema that is free, if reuse is on and there
// is one; otherwise a new name, and whether reuse may keep it.
func takeSchema(url string) (schema string, reused, keep bool) {
	reuse.mu.Lock()
	defer reuse.mu.Unlock()
	if !reuse.on {
		return "t_" + randomHex(6), false, false
	}
	reuse.url = url
	if n := len(reuse.free); n > 0 {
		schema = reuse.free[n-1]
		reuse.free = reuse.free[:n-1]
		return schema, true, true
	}
	schema = "t_" + randomHex(6)
	if reuse.kept == nil {
		reuse.kept = map[string]bool{}
	}
	reuse.kept[schema] = true
	return schema, false, true
}

// forget takes schema off the kept list before it is dropped.
func forget(schema string) {
	reuse.mu.Lock()
	defer reuse.mu.Unlock()
	delete(reuse.kept, schema)
}

// learnFingerprint records the catalog of a schema just migrated fresh,
// once per process.
func learnFingerprint(ctx context.Context, conn querier, schema string) error {
	reuse.mu.Lock()
	known := reuse.fingerprint != ""
	reuse.mu.Unlock()
	if known {
		return nil
	}
	fp, err := fingerprint(ctx, conn, schema)
	if err != nil {
		return err
	}
	reuse.mu.Lock()
	if reuse.fingerprint == "" {
		reuse.fingerprint = fp
	}
	reuse.mu.Unlock()
	return nil
}

// release empties schema and makes it free for the next test when its
// catalog is as migration left it, and reports whether it did; on false
// the caller drops it.
func release(tb testing.TB, url, schema string) bool {
	tb.Helper()
	reuse.mu.Lock()
	want, on := reuse.fingerprint, reuse.on && reuse.kept[schema]
	reuse.mu.Unlock()
	if !on || want == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var changed bool
	err := withAdmin(ctx, url, func(conn *pgx.Conn) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// A session the test left behind that still holds one of the
			// tables makes TRUNCATE wait: drop the schema instead, as
			// before.
			if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '2s'"); err != nil {
				return err
			}
			got, err := fingerprint(ctx, tx, schema)
			if err != nil {
				return fmt.Errorf("read its catalog: %w", err)
			}
			if changed = got != want; changed {
				return nil
			}
			rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_class c
				WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p') AND c.relname <> 'schema_version'
				ORDER BY c.relname`, pgx.Identifier{schema}.Sanitize())
			if err != nil {
				return fmt.Errorf("list its tables: %w", err)
			}
			tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("list its tables: %w", err)
			}
			if len(tables) == 0 {
				return errors.New("it has no tables")
			}
			quoted := make([]string, len(tables))
			for i, t := range tables {
				quoted[i] = pgx.Identifier{schema, t}.Sanitize()
			}
			if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(quoted, ", ")+" RESTART IDENTITY"); err != nil {
				return fmt.Errorf("empty it: %w", err)
			}
			return nil
		})
	})
	if err != nil {
		tb.Logf("pgtest: reuse schema %s: %v", schema, err)
		return false
	}
	if changed {
		return false
	}
	schemaEnded(ctx, url)
	reuse.mu.Lock()
	defer reuse.mu.Unlock()
	if !reuse.on {
		return false
	}
	reuse.free = append(reuse.free, schema)
	return true
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// fingerprint describes schema's catalog, with the schema's own name
// replaced, so that two schemas migrated alike compare equal. It also
// holds the version tern recorded.
func fingerprint(ctx context.Context, conn querier, schema string) (string, error) {
	var fp string
	err := conn.QueryRow(ctx, `
WITH ns AS (SELECT oid, nspacl FROM pg_namespace WHERE nspname = $1)
SELECT coalesce(string_agg(x, E'\n' ORDER BY x), '') FROM (
	SELECT 'schema acl ' || coalesce((SELECT nspacl::text FROM ns), '')
	UNION ALL
	SELECT format('rel %s %s %s %s %s %s', c.relname, c.relkind, c.relpersistence, c.relrowsecurity,
		coalesce(c.relacl::text, ''), coalesce(c.reloptions::text, ''))
	FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('col %s %s %s %s %s %s %s', c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
		a.attnotnull, a.attidentity, coalesce(pg_get_expr(d.adbin, d.adrelid), ''))
	FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	WHERE c.relnamespace = (SELECT oid FROM ns) AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT format('index %s', pg_get_indexdef(i.indexrelid))
	FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('constraint %s %s', conname, pg_get_constraintdef(oid))
	FROM pg_constraint WHERE connamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('trigger %s %s', t.tgname, pg_get_triggerdef(t.oid))
	FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('function %s', p.oid::regprocedure) FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('type %s', t.typname) FROM pg_type t WHERE t.typnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('policy %s', p.polname) FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
	WHERE c.relnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('rule %s', r.rulename) FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
	WHERE c.relnamespace = (SELECT oid FROM ns)
) AS s(x)`, schema).Scan(&fp)
	if err != nil {
		return "", err
	}
	var version int32
	q := "SELECT version FROM " + pgx.Identifier{schema, "schema_version"}.Sanitize()
	if err := conn.QueryRow(ctx, q).Scan(&version); err != nil {
		return "", err
	}
	fp = strings.ReplaceAll(fp, schema, "\x00")
	return fmt.Sprintf("%s\nversion %d", fp, version), nil
}

// dropSchema drops schema on the process's clean-up connection.
func dropSchema(ctx context.Context, url, schema string) error {
	return withAdmin(ctx, url, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		return err
	})
}
