// Package examples_test builds every example program and runs it the way
// its documentation says (go run ./examples/NAME -store=KIND): every
// example on the embedded store, and one (the quickest) on each real server
// internal/testenv finds, through the flags and environment variables of
// examples/internal/backend, which all examples share. Each example checks
// its own promises and exits non-zero if one is broken, so a passing run
// here is the example's own verdict. Every example's scenarios run on every
// server in-process too, in its package's TestDemo; running each binary
// there again would double that time and test nothing more.
package examples_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idemkit/idemkit/internal/testenv"
)

// examples lists the example programs and the promise each prints last
// when it succeeds.
var examples = []struct {
	dir     string
	success string
	servers bool // also run on each real server
}{
	{"payments", "every payment was charged exactly once", false},
	{"lambda", "every payment was charged once and every event credited once", false},
	{"cassandra-service", "every order was created exactly once", true},
	{"saga", "every trip was booked or undone exactly once", false},
	{"orders", "every order was written exactly once", true},
}

func TestExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs every example")
	}
	bin := t.TempDir()
	build := append([]string{"build", "-o", bin + string(filepath.Separator)}, buildFlags...)
	for _, ex := range examples {
		build = append(build, "./"+ex.dir)
	}
	if out, err := exec.Command("go", build...).CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", build, err, out)
	}
	run := func(t *testing.T, name, success string, env []string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("examples/%s %v: %v\n%s", name, args, err, out)
		}
		if !strings.Contains(string(out), success) {
			t.Fatalf("examples/%s %v exited 0 without %q:\n%s", name, args, success, out)
		}
		t.Logf("examples/%s %v:\n%s", name, args, out)
	}

	for _, ex := range examples {
		t.Run(ex.dir, func(t *testing.T) {
			t.Parallel()
			t.Run("memory", func(t *testing.T) { run(t, ex.dir, ex.success, nil, "-store=memory") })
			if !ex.servers {
				return
			}
			t.Run("dynamodb", func(t *testing.T) {
				for _, srv := range testenv.DynamoDBServers(t) {
					t.Run(srv.Name, func(t *testing.T) {
						// A table of the test's own, which the example
						// creates (examples/internal/backend) and the test
						// deletes, with the orders example's table next
						// to it.
						table := testenv.UniqueName(t, "example")
						testenv.DeleteTableOnCleanup(t, srv.Client(t), table)
						testenv.DeleteTableOnCleanup(t, srv.Client(t), table+"_orders")
						run(t, ex.dir, ex.success, []string{
							"IDEM_DYNAMODB_ENDPOINTS=" + srv.Name + "=" + srv.Endpoint,
							"IDEM_DYNAMODB_ENDPOINT=" + srv.Endpoint,
							"IDEM_TABLE=" + table,
							"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
						}, "-store=dynamodb")
					})
				}
			})
			t.Run("cassandra", func(t *testing.T) {
				// A keyspace of the test's own, dropped when it ends.
				_, ks := testenv.Cassandra(t)
				run(t, ex.dir, ex.success, []string{
					"IDEM_CASSANDRA_HOSTS=" + strings.Join(testenv.CassandraHosts(t), ","),
					"IDEM_KEYSPACE=" + ks,
				}, "-store=cassandra")
			})
		})
	}
}
