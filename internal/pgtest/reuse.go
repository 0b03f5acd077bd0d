package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
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
// A schema is handed on only when its catalog still matches that of a
// schema this process migrated fresh: tables, columns and their
// statistics targets, identity sequences, indexes, constraints, triggers
// (enabled or not), functions with their bodies, types, policies,
// extended statistics, comments, owners, privileges and default
// privileges, options. Any difference (a test that added a table or a
// trigger, changed a privilege) drops it as before. Emptying truncates
// every table but tern's version table and restarts the identity
// columns. One thing stays: the planner's statistics of an ANALYZE a
// test ran (TRUNCATE keeps them); the tests that check plans run ANALYZE
// themselves first.
//
// Kept schemas are named t_k<unix seconds>_<random>, and a process drops
// its own when its tests end. One that dies first (a panic, a -timeout)
// cannot, so ReuseSchemas drops the kept schemas older than keptMaxAge
// that earlier processes left.
var reuse struct {
	mu          sync.Mutex
	on          bool
	url         string
	free        []string
	kept        map[string]bool // every schema this process may hand on, free or in use
	fingerprint string          // of a freshly migrated schema; "" until one is known
	tables      []string        // the tables emptied for reuse, learned with the fingerprint
}

// keptMaxAge is the age past which a kept schema belongs to a process
// that died: go test stops a test binary after 10 minutes unless told
// otherwise, and the longest fault runs ask for 30.
const keptMaxAge = 2 * time.Hour

// ReuseSchemas turns schema reuse on for this test process (see the
// package doc) and returns the function that ends the process once its
// tests have run: it drops the schemas kept, then exits with the code it
// is given. It is made for goleak's Cleanup option, which hands the exit
// to it; from TestMain:
//
//	goleak.VerifyTestMain(m, goleak.Cleanup(pgtest.ReuseSchemas()))
func ReuseSchemas() (dropKeptAndExit func(exitCode int)) {
	reuse.mu.Lock()
	reuse.on = true
	reuse.mu.Unlock()
	if url := os.Getenv("DATABASE_URL"); url != "" {
		sweepKept(url)
	}
	return func(code int) {
		dropKept()
		exit(code)
	}
}

// exit ends the process; a test replaces it.
var exit = os.Exit

// dropKept turns reuse off and drops the schemas this process kept.
func dropKept() {
	reuse.mu.Lock()
	url, kept := reuse.url, reuse.kept
	reuse.on, reuse.free, reuse.kept = false, nil, nil
	reuse.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer closeAdmin(ctx)
	if url == "" {
		return
	}
	for schema := range kept {
		if err := dropSchema(ctx, url, schema); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: drop kept schema %s: %v\n", schema, err)
		}
	}
}

// sweepKept drops the kept schemas older than keptMaxAge, which processes
// that died before their end left behind. Errors are only reported: the
// sweep tidies, and the tests do not depend on it.
func sweepKept(url string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var names []string
	err := withAdmin(ctx, url, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname ~ '^t_k[0-9]+_[0-9a-f]+$'`)
		if err != nil {
			return err
		}
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: list kept schemas: %v\n", err)
		return
	}
	for _, name := range names {
		stamp, _, _ := strings.Cut(strings.TrimPrefix(name, "t_k"), "_")
		sec, err := strconv.ParseInt(stamp, 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)) < keptMaxAge {
			continue
		}
		if err := dropSchema(ctx, url, name); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: drop abandoned schema %s: %v\n", name, err)
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
	schema = fmt.Sprintf("t_k%d_%s", time.Now().Unix(), randomHex(4))
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
func learnFingerprint(ctx context.Context, url, schema string) error {
	reuse.mu.Lock()
	known := reuse.fingerprint != ""
	reuse.mu.Unlock()
	if known {
		return nil
	}
	var (
		fp     string
		tables []string
	)
	err := withAdmin(ctx, url, func(conn *pgx.Conn) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var err error
			if fp, err = fingerprint(ctx, tx, schema); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT relname FROM pg_class
				WHERE relnamespace = $1::regnamespace AND relkind IN ('r', 'p') AND relname <> 'schema_version'
				ORDER BY relname`, pgx.Identifier{schema}.Sanitize())
			if err != nil {
				return err
			}
			tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
	})
	if err != nil {
		return err
	}
	if len(tables) == 0 {
		return errors.New("the migrated schema has no tables")
	}
	reuse.mu.Lock()
	if reuse.fingerprint == "" {
		reuse.fingerprint, reuse.tables = fp, tables
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
	want, tables, on := reuse.fingerprint, reuse.tables, reuse.on && reuse.kept[schema]
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
			// A session still named after the schema (a store's listener
			// that has not ended yet, or leaked) would be counted, or
			// heard, by the next test: drop the schema instead.
			var named bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity
				WHERE pid <> pg_backend_pid() AND strpos(application_name, $1) > 0)`, schema).Scan(&named); err != nil {
				return fmt.Errorf("list its sessions: %w", err)
			}
			if changed = named; changed {
				return nil
			}
			// Same catalog, same tables as the fresh schema's.
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

// fingerprint describes schema's catalog, with the schema's own name
// replaced, so that two schemas migrated alike compare equal. It also
// holds the version tern recorded.
func fingerprint(ctx context.Context, tx pgx.Tx, schema string) (string, error) {
	// Names print qualified or not by the search path: the same one for
	// every fingerprint.
	if _, err := tx.Exec(ctx, "SET LOCAL search_path = pg_catalog"); err != nil {
		return "", err
	}
	var fp string
	err := tx.QueryRow(ctx, `
WITH ns AS (SELECT oid, nspacl FROM pg_namespace WHERE nspname = $1)
SELECT coalesce(string_agg(x, E'\n' ORDER BY x), '') FROM (
	SELECT 'schema acl ' || coalesce((SELECT nspacl::text FROM ns), '')
	UNION ALL
	SELECT 'schema owner ' || (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1)
	UNION ALL
	SELECT format('default acl %s %s', d.defaclobjtype, d.defaclacl) FROM pg_default_acl d
	WHERE d.defaclnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('rel %s %s %s %s %s %s %s %s', c.relname, c.relkind, c.relpersistence, c.relrowsecurity,
		coalesce(c.relacl::text, ''), coalesce(c.reloptions::text, ''), c.relowner::regrole,
		coalesce(obj_description(c.oid, 'pg_class'), ''))
	FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('sequence %s %s %s %s %s %s %s', c.relname, q.seqstart, q.seqincrement, q.seqmax, q.seqmin,
		q.seqcache, q.seqcycle)
	FROM pg_sequence q JOIN pg_class c ON c.oid = q.seqrelid WHERE c.relnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('statistics %s %s', s.stxname, s.stxkeys) FROM pg_statistic_ext s
	WHERE s.stxnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('col %s %s %s %s %s %s %s %s %s %s', c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
		a.attnotnull, a.attidentity, coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attstattarget, a.attcollation,
		coalesce(col_description(c.oid, a.attnum), ''))
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
	SELECT format('trigger %s %s %s', t.tgname, t.tgenabled, pg_get_triggerdef(t.oid))
	FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('function %s %s', p.oid::regprocedure, md5(pg_get_functiondef(p.oid)))
	FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM ns) AND p.prokind IN ('f', 'p')
	UNION ALL
	SELECT format('routine %s %s', p.oid::regprocedure, p.prokind)
	FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('type %s', t.typname) FROM pg_type t WHERE t.typnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('collation %s', c.collname) FROM pg_collation c WHERE c.collnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('operator %s', o.oprname) FROM pg_operator o WHERE o.oprnamespace = (SELECT oid FROM ns)
	UNION ALL
	SELECT format('policy %s %s %s %s %s', p.polname, p.polcmd, p.polpermissive, p.polroles,
		coalesce(pg_get_expr(p.polqual, p.polrelid), '') || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''))
	FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
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
	if err := tx.QueryRow(ctx, q).Scan(&version); err != nil {
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
