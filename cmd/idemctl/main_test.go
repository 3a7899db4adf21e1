package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestIdemctl builds idemctl once and runs it as a subprocess: its usage,
// then get and evict on every DynamoDB server and on Cassandra, on records
// written by idem.Do and idem.Claim through the real Store.
func TestIdemctl(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "idemctl")
	build := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", bin, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("usage", func(t *testing.T) {
		tool := &tool{bin: bin}
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"no command", []string{"-store", "dynamodb", "-table", "t"}},
			{"no key", []string{"-store", "dynamodb", "-table", "t", "get"}},
			{"two keys", []string{"-store", "dynamodb", "-table", "t", "get", "a", "b"}},
			{"unknown command", []string{"-store", "dynamodb", "-table", "t", "drop", "k"}},
			{"unknown flag", []string{"-store", "dynamodb", "-table", "t", "-bogus", "get", "k"}},
			{"no store", []string{"-table", "t", "get", "k"}},
			{"memory store", []string{"-store", "memory", "-table", "t", "get", "k"}},
			{"no table", []string{"-store", "cassandra", "get", "k"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := tool.run(t, tc.args...)
				if r.code != exitError || !strings.Contains(r.stderr, "Usage:") || r.stdout != "" {
					t.Errorf("got exit %d, stdout %q, stderr %q; want exit %d and the usage on stderr", r.code, r.stdout, r.stderr, exitError)
				}
			})
		}
		r := tool.run(t, "-h")
		for _, want := range []string{"Usage:", "Examples:", "evict", "-show-result", "-force", "IDEM_DYNAMODB_ENDPOINT", "IDEM_CASSANDRA_HOSTS", "Exit status", "Lease.Fence"} {
			if r.code != exitOK || !strings.Contains(r.stderr, want) {
				t.Errorf("-h: got exit %d, want 0 and %q in:\n%s", r.code, want, r.stderr)
			}
		}
	})

	t.Run("dynamodb", func(t *testing.T) {
		for _, srv := range testenv.DynamoDBServers(t) {
			t.Run(srv.Name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				client := srv.Client(t)
				table := testenv.UniqueName(t, "idemctl")
				testenv.DeleteTableOnCleanup(t, client, table)
				if err := dynamo.CreateTable(ctx, client, table); err != nil {
					t.Fatal(err)
				}
				s, err := dynamo.New(client, table)
				if err != nil {
					t.Fatal(err)
				}
				env := []string{"IDEM_DYNAMODB_ENDPOINT=" + srv.Endpoint, "AWS_REGION=us-east-1",
					"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_EC2_METADATA_DISABLED=true"}
				testBackend(t, s, &tool{bin: bin, env: env, args: []string{"-store", "dynamodb", "-table", table}})
				t.Run("missing table", func(t *testing.T) {
					r := (&tool{bin: bin, env: env}).run(t, "-store", "dynamodb", "-table", table+"_none", "get", "k")
					if r.code != exitError || !strings.Contains(r.stderr, dynamo.ErrTableNotFound.Error()) || !strings.Contains(r.stderr, "CreateTable") {
						t.Errorf("got exit %d, stderr %q; want %d and Check's error", r.code, r.stderr, exitError)
					}
				})
			})
		}
	})

	t.Run("cassandra", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		session, ks := testenv.Cassandra(t)
		if err := cassandra.CreateTable(ctx, session, ks+".idem"); err != nil {
			t.Fatal(err)
		}
		s, err := cassandra.New(session, ks+".idem")
		if err != nil {
			t.Fatal(err)
		}
		env := []string{"IDEM_CASSANDRA_HOSTS=" + strings.Join(testenv.CassandraHosts(t), ",")}
		testBackend(t, s, &tool{bin: bin, env: env, args: []string{"-store", "cassandra", "-keyspace", ks, "-table", "idem"}})
		t.Run("missing table", func(t *testing.T) {
			r := (&tool{bin: bin, env: env}).run(t, "-store", "cassandra", "-table", ks+".none", "get", "k")
			if r.code != exitError || !strings.Contains(r.stderr, cassandra.ErrTableNotFound.Error()) || !strings.Contains(r.stderr, "CreateTable") {
				t.Errorf("got exit %d, stderr %q; want %d and Check's error", r.code, r.stderr, exitError)
			}
		})
	})
}

// testStore is a Store idemctl opens, as the test writes to it.
type testStore interface {
	idem.Store
	Check(ctx context.Context) error
}

// testBackend runs idemctl's commands on records the test writes to s.
func testBackend(t *testing.T, s testStore, tool *tool) {
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	result := map[string]int{"id": 42} // stored as {"id":42}
	done := func(t *testing.T, key string, opts ...idem.Option) {
		t.Helper()
		if _, err := idem.Do(ctx, s, key, func(context.Context) (map[string]int, error) { return result, nil }, opts...); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(t *testing.T, key string, opts ...idem.Option) {
		t.Helper()
		if _, _, err := idem.Claim(ctx, s, key, opts...); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(t *testing.T, key string) (idem.Item, kernel.RecordInfo) {
		t.Helper()
		it, err := s.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get %q: %v", key, err)
		}
		info, err := kernel.DescribeRecord(it.Value)
		if err != nil {
			t.Fatal(err)
		}
		return it, info
	}
	gone := func(t *testing.T, key string) {
		t.Helper()
		if it, err := s.Get(ctx, key); !errors.Is(err, idem.ErrNotFound) {
			t.Errorf("Get %q after evict: got %+v, %v; want ErrNotFound", key, it, err)
		}
	}

	t.Run("get completed", func(t *testing.T) {
		done(t, "done", idem.WithFingerprint([]byte{0xfe, 0xed}))
		it, info := stored(t, "done")
		r := tool.ok(t, "get", "done")
		for _, want := range []string{"status:       completed", "owner token:  " + info.Token, "fingerprint:  feed", "result:       9 bytes", "attempt:      1"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, `{"id":42}`) {
			t.Errorf("the result is shown without -show-result:\n%s", r.stdout)
		}
		if r := tool.ok(t, "-show-result", "get", "done"); !strings.Contains(r.stdout, "\n{\"id\":42}\n") {
			t.Errorf("-show-result: stdout lacks the result:\n%s", r.stdout)
		}
		v := tool.getJSON(t, "get", "-json", "done") // a flag after the command
		if v.Key != "done" || v.Status != "completed" || v.Failed || v.Version != it.Version || v.Token != info.Token ||
			v.Fingerprint != "feed" || v.ResultSize != 9 || v.Result != nil || v.Attempt != 1 || v.CompletedAt.IsZero() ||
			!v.ExpiresAt.Equal(it.ExpiresAt) || v.LeasePassed {
			t.Errorf("-json: got %+v; want the stored record, version %d", v, it.Version)
		}
		if v := tool.getJSON(t, "-json", "-show-result", "get", "done"); v.Result == nil || *v.Result != `{"id":42}` {
			t.Errorf("-json -show-result: got result %v, want {\"id\":42}", v.Result)
		}
	})

	t.Run("get in progress", func(t *testing.T) {
		claim(t, "live", idem.WithLease(time.Hour))
		it, info := stored(t, "live")
		v := tool.getJSON(t, "-json", "get", "live")
		if v.Status != "in_progress" || v.Version != it.Version || !v.LeaseUntil.Equal(info.LeaseUntil) ||
			v.LeaseUntil.Before(time.Now().Add(50*time.Minute)) || v.LeasePassed || v.ResultSize != 0 || !v.CompletedAt.IsZero() {
			t.Errorf("got %+v; want in progress, leased for about an hour, version %d", v, it.Version)
		}
		if r := tool.ok(t, "get", "live"); !strings.Contains(r.stdout, "status:       in_progress") || !strings.Contains(r.stdout, "lease until:") {
			t.Errorf("stdout:\n%s", r.stdout)
		}
	})

	t.Run("get failed", func(t *testing.T) {
		_, err := idem.Do(ctx, s, "failed", func(context.Context) (int, error) {
			return 0, &idem.PermanentError{Code: "card_declined", Err: errors.New("the card was declined")}
		})
		if !errors.As(err, new(*idem.PermanentError)) {
			t.Fatalf("Do: got %v, want a PermanentError", err)
		}
		v := tool.getJSON(t, "-json", "get", "failed")
		if v.Status != "completed" || !v.Failed || v.ErrorCode != "card_declined" || v.ErrorMessage != "the card was declined" || v.ResultSize != 0 {
			t.Errorf("got %+v; want a permanent failure", v)
		}
		if r := tool.ok(t, "get", "failed"); !strings.Contains(r.stdout, "status:       failed") || !strings.Contains(r.stdout, `code "card_declined": the card was declined`) {
			t.Errorf("stdout:\n%s", r.stdout)
		}
	})

	t.Run("not found", func(t *testing.T) {
		for _, cmd := range []string{"get", "evict"} {
			if r := tool.run(t, cmd, "absent"); r.code != exitNotFound || r.stdout != "" || !strings.Contains(r.stderr, "not in") {
				t.Errorf("%s: got exit %d, stdout %q, stderr %q; want %d", cmd, r.code, r.stdout, r.stderr, exitNotFound)
			}
		}
	})

	t.Run("evict completed", func(t *testing.T) {
		runs := 0
		do := func() {
			if _, err := idem.Do(ctx, s, "evictme", func(context.Context) (int, error) { runs++; return runs, nil }); err != nil {
				t.Fatal(err)
			}
		}
		do()
		do() // a replay
		r := tool.ok(t, "evict", "evictme")
		if !strings.Contains(r.stdout, "evicted") || !strings.Contains(r.stderr, "lets its work run again") {
			t.Errorf("got stdout %q, stderr %q", r.stdout, r.stderr)
		}
		gone(t, "evictme")
		do()
		if runs != 2 {
			t.Errorf("fn ran %d times; want 2: once, and again after the evict", runs)
		}
	})

	t.Run("evict json", func(t *testing.T) {
		done(t, "evictjson")
		it, _ := stored(t, "evictjson")
		r := tool.ok(t, "-json", "evict", "evictjson")
		var got struct {
			Evicted, Forced bool
			Record          recordView
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("%v in %q", err, r.stdout)
		}
		if !got.Evicted || got.Forced || got.Record.Status != "completed" || got.Record.Version != it.Version {
			t.Errorf("got %+v; want evicted, version %d", got, it.Version)
		}
		gone(t, "evictjson")
	})

	t.Run("evict live in progress", func(t *testing.T) {
		claim(t, "busy", idem.WithLease(time.Hour))
		before, _ := stored(t, "busy")
		r := tool.run(t, "evict", "busy")
		if r.code != exitError || !strings.Contains(r.stderr, "in progress") || !strings.Contains(r.stderr, "-force") || r.stdout != "" {
			t.Errorf("got exit %d, stdout %q, stderr %q; want a refusal, exit %d", r.code, r.stdout, r.stderr, exitError)
		}
		if after, _ := stored(t, "busy"); after.Version != before.Version {
			t.Errorf("version %d after the refusal, want %d", after.Version, before.Version)
		}
		r = tool.ok(t, "-force", "evict", "busy")
		if !strings.Contains(r.stderr, "warning") || !strings.Contains(r.stderr, "may still be running") {
			t.Errorf("-force: stderr lacks the warning: %q", r.stderr)
		}
		gone(t, "busy")
	})

	t.Run("evict after the lease passed", func(t *testing.T) {
		// Claimed an hour ago, for a minute: the lease has passed, and the
		// record is kept for the retention.
		claim(t, "stale", idem.WithLease(time.Minute), idem.WithClock(func() time.Time { return past }))
		if v := tool.getJSON(t, "-json", "get", "stale"); !v.LeasePassed {
			t.Errorf("get: got %+v, want lease_passed", v)
		}
		tool.ok(t, "evict", "stale")
		gone(t, "stale")
	})

	t.Run("evict young record warns", func(t *testing.T) {
		done(t, "young")
		if r := tool.ok(t, "evict", "young"); !strings.Contains(r.stderr, "young record") {
			t.Errorf("stderr lacks the young-record warning: %q", r.stderr)
		}
	})

	t.Run("not a claim record", func(t *testing.T) {
		if _, err := s.PutIfAbsent(ctx, "junk", []byte("not a record"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if r := tool.run(t, "get", "junk"); r.code != exitError || !strings.Contains(r.stdout, "not a claim record") || !strings.Contains(r.stderr, idem.ErrCorrupt.Error()) {
			t.Errorf("get: got exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if r := tool.run(t, "evict", "junk"); r.code != exitError || !strings.Contains(r.stderr, "-force") {
			t.Errorf("evict: got exit %d, stderr %q; want a refusal", r.code, r.stderr)
		}
		tool.ok(t, "-force", "evict", "junk")
		gone(t, "junk")
	})

	// The fence: a record that changes between evict's read and its delete
	// stays. The subprocess cannot be paused there, so this runs the evict
	// the main calls in process, with its hook.
	t.Run("changed after read", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			setup  func(t *testing.T, key string)
			change func(t *testing.T, key string)
		}{
			{"taken over", func(t *testing.T, key string) {
				claim(t, key, idem.WithLease(time.Minute), idem.WithClock(func() time.Time { return past }))
			}, func(t *testing.T, key string) {
				claim(t, key, idem.WithLease(time.Hour)) // takes the passed lease over
			}},
			{"deleted and done again", func(t *testing.T, key string) { done(t, key) }, func(t *testing.T, key string) {
				it, _ := stored(t, key)
				if err := s.CompareAndDelete(ctx, key, it.Version); err != nil {
					t.Fatal(err)
				}
				done(t, key)
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				key := "changed-" + strings.ReplaceAll(tc.name, " ", "-")
				tc.setup(t, key)
				read, _ := stored(t, key)
				var stdout, stderr bytes.Buffer
				c := &ctl{store: s, stdout: &stdout, stderr: &stderr, now: time.Now, afterRead: func() { tc.change(t, key) }}
				err := c.evict(ctx, key)
				var ce *idem.ConflictError
				if !errors.As(err, &ce) || !ce.Exists || errors.Is(err, idem.ErrNotFound) {
					t.Fatalf("evict: got %v; want a conflict with the changed record", err)
				}
				if !strings.Contains(err.Error(), "changed after it was read") || stdout.Len() != 0 {
					t.Errorf("got %q, stdout %q", err, stdout.String())
				}
				if now, _ := stored(t, key); now.Version == read.Version {
					t.Errorf("the record is at version %d, the one evict read: want the changed record", now.Version)
				}
			})
		}
	})
}

// tool runs the idemctl binary.
type tool struct {
	bin  string
	env  []string // on top of the test's environment without its AWS_ and IDEM_ variables
	args []string // before each call's own
}

type result struct {
	code           int
	stdout, stderr string
}

func (tl *tool) run(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(tl.bin, append(append([]string(nil), tl.args...), args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "IDEM_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	cmd.Env = append(cmd.Env, tl.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running idemctl: %v", err)
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

// ok runs idemctl and fails the test unless it exits 0.
func (tl *tool) ok(t *testing.T, args ...string) result {
	t.Helper()
	r := tl.run(t, args...)
	if r.code != exitOK {
		t.Fatalf("idemctl %q: exit %d, stderr:\n%s", args, r.code, r.stderr)
	}
	return r
}

// getJSON runs a get with -json among args and parses its output.
func (tl *tool) getJSON(t *testing.T, args ...string) recordView {
	t.Helper()
	r := tl.ok(t, args...)
	var v recordView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("parsing %q: %v", r.stdout, err)
	}
	return v
}
