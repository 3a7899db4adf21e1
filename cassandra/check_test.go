package cassandra_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestCheck: Check passes on a table CreateTable made, and on every other
// table says what is wrong, naming keyspace.table and the hosts and what
// to run.
func TestCheck(t *testing.T) {
	t.Parallel()
	session, ks := testenv.Cassandra(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	upper := ks + ".UpperCase" // unquoted: stored as uppercase
	quoted := ks + `."MixedCase"`
	for _, tb := range []string{upper, quoted} {
		if err := cassandra.CreateTable(ctx, session, tb); err != nil {
			t.Fatal(err)
		}
	}
	other := ks + ".other"
	if err := session.Query(`CREATE TABLE ` + other + ` (key text, n int, value blob, version int, expires_at bigint, PRIMARY KEY (key, n))`).ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	missingKS := testenv.UniqueName(t, "missing")
	host := testenv.CassandraHosts(t)[0]

	for _, tc := range []struct {
		name  string
		table string
		want  []error // nil: Check passes
		hints []string
	}{
		{"good table", newTable(t, session, ks), nil, nil},
		{"unquoted upper-case name", upper, nil, nil},
		{"quoted mixed-case name", quoted, nil, nil},
		{"missing table", ks + ".missing", []error{cassandra.ErrTableNotFound},
			[]string{`cassandra.CreateTable(ctx, session, "` + ks + `.missing")`}},
		{"missing keyspace", missingKS + ".t", []error{cassandra.ErrKeyspaceNotFound, cassandra.ErrTableNotFound},
			[]string{`cassandra.CreateKeyspace(ctx, session, "` + missingKS + `", 1)`, "NetworkTopologyStrategy", "cassandra.CreateTable"}},
		{"other schema", other, []error{cassandra.ErrSchemaMismatch},
			[]string{"no column write_id (blob)", "column version is regular int, not regular bigint", "clustering column n", "cassandra.CreateTable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := newStore(t, session, tc.table).Check(ctx)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("Check: got %v, want %v", err, w)
				}
			}
			if err == nil {
				return
			}
			if tc.want[0] == cassandra.ErrTableNotFound && errors.Is(err, cassandra.ErrKeyspaceNotFound) {
				t.Errorf("Check: a missing table in an existing keyspace matches ErrKeyspaceNotFound: %v", err)
			}
			for _, s := range append([]string{tc.table, host}, tc.hints...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Check: the error does not say %q: %v", s, err)
				}
			}
			t.Log(err)
		})
	}
}

// TestCreateKeyspace: CreateKeyspace creates a keyspace a Store's table can
// live in, succeeds again on it, and refuses bad input before sending.
func TestCreateKeyspace(t *testing.T) {
	t.Parallel()
	session, _ := testenv.Cassandra(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := testenv.UniqueName(t, "ks")
	t.Cleanup(func() {
		if err := session.Query(`DROP KEYSPACE IF EXISTS ` + name).Exec(); err != nil {
			t.Errorf("dropping keyspace %s: %v", name, err)
		}
	})
	for i := range 2 { // the second time, it exists
		if err := cassandra.CreateKeyspace(ctx, session, name, 1); err != nil {
			t.Fatalf("CreateKeyspace #%d: %v", i+1, err)
		}
	}
	var class, rf string
	var repl map[string]string
	if err := session.Query(`SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?`, name).ScanContext(ctx, &repl); err != nil {
		t.Fatal(err)
	}
	class, rf = repl["class"], repl["replication_factor"]
	if !strings.HasSuffix(class, "SimpleStrategy") || rf != "1" {
		t.Errorf("replication: got %v, want SimpleStrategy with factor 1", repl)
	}
	table := name + ".idem"
	if err := cassandra.CreateTable(ctx, session, table); err != nil {
		t.Fatal(err)
	}
	if err := newStore(t, session, table).Check(ctx); err != nil {
		t.Errorf("Check on a table in the new keyspace: %v", err)
	}
}

// TestCreateKeyspaceInvalid: bad names and factors are refused without a
// session, so before anything could be sent.
func TestCreateKeyspaceInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, ks string
		rf       int
	}{
		{"empty", "", 1},
		{"starts with a digit", "1ks", 1},
		{"dash", "my-ks", 1},
		{"injection", "ks WITH replication = {} AND durable_writes = false; --", 1},
		{"49 characters", "k" + strings.Repeat("s", 48), 1},
		{"dotted", "ks.tbl", 1},
		{"factor 0", "ks", 0},
		{"negative factor", "ks", -3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := cassandra.CreateKeyspace(context.Background(), nil, tc.ks, tc.rf)
			if err == nil || strings.Contains(err.Error(), "needs a session") {
				t.Errorf("CreateKeyspace(%q, %d): got %v, want it refused for its input", tc.ks, tc.rf, err)
			}
		})
	}
	if err := cassandra.CreateKeyspace(context.Background(), nil, "ks", 1); err == nil {
		t.Error("CreateKeyspace without a session: got no error")
	}
}
