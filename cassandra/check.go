package cassandra

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// Check reports whether the Store's table is ready, for a readiness probe
// or at startup: its keyspace and the table exist, the primary key is the
// text column key alone, and the columns the Store writes have the types
// CreateTable gives them (other regular columns are allowed). It reads
// system_schema.keyspaces, tables and columns at consistency ONE, and
// writes nothing.
//
// A missing keyspace gives an error matching ErrKeyspaceNotFound and
// ErrTableNotFound, a missing table one matching ErrTableNotFound, another
// schema one matching ErrSchemaMismatch. Each error names keyspace.table
// and the hosts the session knows, and says what to run (CreateKeyspace,
// CreateTable). Check needs the Store to have been made by New with a
// session.
func (s *Store) Check(ctx context.Context) error {
	table := s.tableName()
	g, ok := s.exec.(*gocqlExecutor)
	if !ok || g.session == nil {
		return fmt.Errorf("cassandra: Check %s: the Store has no gocql session to read the schema with", table)
	}
	ksName, tblName, _ := strings.Cut(table, ".")
	c := schemaCheck{
		session:     g.session,
		where:       table + " (hosts " + hosts(g.session) + ")",
		ks:          schemaName(ksName),
		tbl:         schemaName(tblName),
		createTable: fmt.Sprintf("cassandra.CreateTable(ctx, session, %q) or the CQL in its documentation", table),
	}
	if found, err := c.exists(ctx, "keyspaces", `SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?`, c.ks); err != nil {
		return err
	} else if !found {
		return fmt.Errorf("cassandra: Check %s: %w: %w: create keyspace %s (in production with NetworkTopologyStrategy and a replication factor of at least 3; for development cassandra.CreateKeyspace(ctx, session, %q, 1)), then the table with %s",
			c.where, ErrKeyspaceNotFound, ErrTableNotFound, ksName, ksName, c.createTable)
	}
	if found, err := c.exists(ctx, "tables", `SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?`, c.ks, c.tbl); err != nil {
		return err
	} else if !found {
		return fmt.Errorf("cassandra: Check %s: %w in keyspace %s: create it with %s", c.where, ErrTableNotFound, ksName, c.createTable)
	}
	return c.columns(ctx)
}

// schemaCheck reads the Store's keyspace and table in system_schema.
type schemaCheck struct {
	session     *gocql.Session
	where       string // the table and the hosts, for errors
	ks, tbl     string // as system_schema spells them
	createTable string // how to create the table, for errors
}

func (c schemaCheck) query(ctx context.Context, stmt string, args ...any) *gocql.Iter {
	return c.session.Query(stmt, args...).Consistency(gocql.One).Idempotent(true).IterContext(ctx)
}

// exists reports whether stmt finds a row in system_schema's what.
func (c schemaCheck) exists(ctx context.Context, what, stmt string, args ...any) (bool, error) {
	var name string
	iter := c.query(ctx, stmt, args...)
	found := iter.Scan(&name)
	if err := iter.Close(); err != nil {
		return false, fmt.Errorf("cassandra: Check %s: reading system_schema.%s: %w", c.where, what, err)
	}
	return found, nil
}

// columns checks the table's columns: the five the Store writes, with their
// kinds and types, and no other key column.
func (c schemaCheck) columns(ctx context.Context) error {
	type column struct{ kind, typ string }
	got := map[string]column{}
	iter := c.query(ctx, `SELECT column_name, kind, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?`, c.ks, c.tbl)
	var col, kind, typ string
	for iter.Scan(&col, &kind, &typ) {
		got[col] = column{kind, typ}
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("cassandra: Check %s: reading system_schema.columns: %w", c.where, err)
	}
	var wrong []string
	for _, want := range []struct{ name, kind, typ string }{
		{"key", "partition_key", "text"},
		{"value", "regular", "blob"},
		{"version", "regular", "bigint"},
		{"expires_at", "regular", "bigint"},
		{"write_id", "regular", "blob"},
	} {
		switch g, ok := got[want.name]; {
		case !ok:
			wrong = append(wrong, fmt.Sprintf("no column %s (%s)", want.name, want.typ))
		case g.typ != want.typ || g.kind != want.kind:
			wrong = append(wrong, fmt.Sprintf("column %s is %s %s, not %s %s", want.name, g.kind, g.typ, want.kind, want.typ))
		}
	}
	var extra []string
	for n, col := range got {
		if n != "key" && (col.kind == "partition_key" || col.kind == "clustering") {
			extra = append(extra, fmt.Sprintf("%s column %s", col.kind, n))
		}
	}
	slices.Sort(extra)
	if wrong = append(wrong, extra...); len(wrong) > 0 {
		return fmt.Errorf("cassandra: Check %s: %w: %s; the Store needs key text PRIMARY KEY, value blob, version bigint, expires_at bigint, write_id blob: give the Store a table made by %s",
			c.where, ErrSchemaMismatch, strings.Join(wrong, ", "), c.createTable)
	}
	return nil
}

// CreateKeyspace creates keyspace name with SimpleStrategy and
// replicationFactor replicas, if it does not exist, and waits until the
// cluster agrees on the schema: for development and tests. An existing
// keyspace is left as it is, whatever its replication. In production the
// keyspace is the operator's: NetworkTopologyStrategy with a replication
// factor of at least 3 per datacenter. CreateKeyspace rejects an invalid
// name or a replication factor below 1 before sending anything.
func CreateKeyspace(ctx context.Context, session *gocql.Session, name string, replicationFactor int) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("cassandra: CreateKeyspace: keyspace name %q must be letters, digits and underscores (at most 48, starting with a letter unless quoted)", name)
	}
	if replicationFactor < 1 {
		return fmt.Errorf("cassandra: CreateKeyspace %s: replication factor %d is below 1", name, replicationFactor)
	}
	if session == nil {
		return errors.New("cassandra: CreateKeyspace needs a session")
	}
	stmt := fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': %d}", name, replicationFactor)
	if err := (&gocqlExecutor{session: session}).schema(ctx, stmt); err != nil {
		return fmt.Errorf("cassandra: creating keyspace %s: %w", name, err)
	}
	return nil
}

// tableName returns the Store's "keyspace.table" as New checked it. The
// Store keeps it only inside its statements.
func (s *Store) tableName() string {
	_, rest, _ := strings.Cut(s.q.get, " FROM ")
	name, _, _ := strings.Cut(rest, " ")
	return name
}

// schemaName is how system_schema spells a CQL name: a quoted one as
// written, an unquoted one in lower case.
func schemaName(n string) string {
	if len(n) >= 2 && n[0] == '"' {
		return n[1 : len(n)-1]
	}
	return strings.ToLower(n)
}

// hosts lists the hosts session knows.
func hosts(session *gocql.Session) string {
	var hs []string
	for _, h := range session.GetHosts() {
		hs = append(hs, h.ConnectAddressAndPort())
	}
	if len(hs) == 0 {
		return "none known"
	}
	slices.Sort(hs)
	return strings.Join(hs, ", ")
}
