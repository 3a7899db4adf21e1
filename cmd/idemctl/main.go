// Command idemctl shows and evicts one key's claim record in the DynamoDB
// table or Cassandra table an idem.Store keeps, for an operator looking at a
// stuck or wrong key. Run idemctl -h for its flags; the usage text below is
// what it prints.
//
// get reads the key (one Get) and decodes its record with
// kernel.DescribeRecord. evict reads it, decides, and deletes it with
// CompareAndDelete on the version it read, so a record that changed in
// between (a takeover, a completion, a new claim) is never deleted.
package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

const usage = `idemctl shows or evicts one key of an idemkit table.

Usage:
  idemctl [flags] get KEY     show the key's claim record
  idemctl [flags] evict KEY   delete it, fenced by the version just read

Examples:
  idemctl -store dynamodb -table idem get orders/42
  idemctl -store cassandra -table app.idem get orders/42
  idemctl -store cassandra -keyspace app -table idem -json get orders/42
  idemctl -store dynamodb -table idem evict orders/42
  IDEM_DYNAMODB_ENDPOINT=http://127.0.0.1:5000 idemctl -store dynamodb -table idem -show-result get orders/42

KEY is the stored key, with any prefix (idem.WithKeyPrefix, idemhttp's
scope) included. get shows the status (in_progress, completed, released;
completed with a permanent error shows as failed), the owner token, the
lease deadline, the attempt, the version (the fence evict checks; a claim's
Lease.Fence is the version of its first write, so at most this), the
fingerprint, the result's size (-show-result prints it: as text when it is
UTF-8, else in hex) and the expiry.

evict deletes a completed, failed or released record, or an in-progress one
whose lease has passed; -force also deletes a live in-progress one (its
owner may still be running) and a value that is not a claim record. The
delete is a CompareAndDelete on the version get read: a record that changed
in between is left alone (exit 2). Evicting lets the key's work run again:
the next request with the key runs as new and the stored answer is lost. Do
not evict a young record of a key in use: a claim still on its way to the
database can then start the key below the deleted record's fence (see
idem.Lease.Fence).

DynamoDB: credentials and region from the AWS default chain (environment,
~/.aws, instance role); endpoint -endpoint, else IDEM_DYNAMODB_ENDPOINT, else
AWS_ENDPOINT_URL(_DYNAMODB), else AWS. Cassandra: -hosts, else
IDEM_CASSANDRA_HOSTS, else 127.0.0.1:9042. The table options must be those
the application's Store uses (the defaults are the Stores' defaults).

Exit status: 0 done, 1 the key is absent or expired, 2 any error (a bad
flag, a refused or fenced-out evict, a missing table, a corrupt record).

Flags:
`

// Exit statuses.
const (
	exitOK       = 0
	exitNotFound = 1
	exitError    = 2
)

// youngAge is the age below which evict warns that the record is young:
// about the clock skew the next claim's fence must outlast.
const youngAge = time.Minute

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// flags are idemctl's settings.
type flags struct {
	store, table, region, endpoint, hosts, keyspace string
	keyAttr, sortKey, partition, valAttr, verAttr   string
	expAttr, tokAttr                                string
	json, showResult, force                         bool
	timeout                                         time.Duration
}

// run is idemctl with args, writing to stdout and stderr; it returns the
// exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f flags
	fs := newFlagSet(&f, stderr)
	pos, err := parse(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitError
	}
	if problem := check(pos, f); problem != "" {
		fmt.Fprintf(stderr, "idemctl: %s\n\n", problem)
		fs.Usage()
		return exitError
	}

	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	s, closeStore, err := open(ctx, f)
	if err != nil {
		fmt.Fprintf(stderr, "idemctl: %v\n", err)
		return exitError
	}
	defer closeStore()
	c := &ctl{store: s, stdout: stdout, stderr: stderr, now: time.Now, json: f.json, showResult: f.showResult, force: f.force}
	if pos[0] == "get" {
		err = c.get(ctx, pos[1])
	} else {
		err = c.evict(ctx, pos[1])
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, idem.ErrNotFound):
		fmt.Fprintf(stderr, "idemctl: key %q is not in %s (absent or expired)\n", pos[1], f.table)
		return exitNotFound
	}
	if !errors.Is(err, errRefused) && !errors.Is(err, idem.ErrConflict) && !errors.Is(err, idem.ErrCorrupt) {
		// The table may be missing or have another schema: Check says so,
		// and what to run.
		if cerr := s.Check(ctx); cerr != nil {
			err = cerr
		}
	}
	fmt.Fprintf(stderr, "idemctl: %v\n", err)
	return exitError
}

// newFlagSet returns idemctl's flags, set into f, with errors and usage
// written to stderr.
func newFlagSet(f *flags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("idemctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.store, "store", "", "the backend: dynamodb or cassandra (required)")
	fs.StringVar(&f.table, "table", "", "the table: a DynamoDB table name, or Cassandra keyspace.table (or a table with -keyspace) (required)")
	fs.StringVar(&f.region, "region", "", "DynamoDB: the AWS region (default: the AWS config's)")
	fs.StringVar(&f.endpoint, "endpoint", "", "DynamoDB: the endpoint URL (default $IDEM_DYNAMODB_ENDPOINT, else the AWS config's)")
	fs.StringVar(&f.hosts, "hosts", "", "Cassandra: contact points, host:port,... (default $IDEM_CASSANDRA_HOSTS, else 127.0.0.1:9042)")
	fs.StringVar(&f.keyspace, "keyspace", "", "Cassandra: the keyspace, when -table names no keyspace")
	fs.StringVar(&f.keyAttr, "key-attribute", dynamo.DefaultKeyAttribute, "DynamoDB: the partition key attribute (dynamo.WithKeyAttribute)")
	fs.StringVar(&f.sortKey, "sort-key", "", "DynamoDB: the sort key attribute of a single-table layout, with -partition (dynamo.WithSortKey)")
	fs.StringVar(&f.partition, "partition", "", "DynamoDB: the static partition value of a single-table layout, with -sort-key")
	fs.StringVar(&f.valAttr, "value-attribute", dynamo.DefaultValueAttribute, "DynamoDB: the value attribute (dynamo.WithValueAttribute)")
	fs.StringVar(&f.verAttr, "version-attribute", dynamo.DefaultVersionAttribute, "DynamoDB: the version attribute (dynamo.WithVersionAttribute)")
	fs.StringVar(&f.expAttr, "expiry-attribute", dynamo.DefaultExpiryAttribute, "DynamoDB: the expiry (time to live) attribute (dynamo.WithExpiryAttribute)")
	fs.StringVar(&f.tokAttr, "token-attribute", dynamo.DefaultTokenAttribute, "DynamoDB: the write token attribute (dynamo.WithTokenAttribute)")
	fs.BoolVar(&f.json, "json", false, "print the record (get) or the evicted record (evict) as one JSON object")
	fs.BoolVar(&f.showResult, "show-result", false, "print the stored result too")
	fs.BoolVar(&f.force, "force", false, "evict: delete a live in-progress record, or a value that is not a claim record")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")

	return fs
}

// parse parses args and returns the positional arguments: flags may come
// before or after the command and the key; "--" ends them, for a key that
// starts with "-".
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// check says what is wrong with the command line, or "".
func check(pos []string, f flags) string {
	switch {
	case len(pos) != 2:
		return fmt.Sprintf("want a command and a key, got %q", pos)
	case pos[0] != "get" && pos[0] != "evict":
		return fmt.Sprintf("unknown command %q (want get or evict)", pos[0])
	case f.store != "dynamodb" && f.store != "cassandra":
		return fmt.Sprintf("-store is %q, want dynamodb or cassandra", f.store)
	case f.table == "":
		return "-table is required"
	}
	return ""
}

// store is what idemctl uses of a Store.
type store interface {
	Get(ctx context.Context, key string) (idem.Item, error)
	CompareAndDelete(ctx context.Context, key string, version int64) error
	Check(ctx context.Context) error
}

// open returns the Store f names and a function that releases it.
func open(ctx context.Context, f flags) (store, func(), error) {
	if f.store == "dynamodb" {
		var opts []func(*config.LoadOptions) error
		if f.region != "" {
			opts = append(opts, config.WithRegion(f.region))
		}
		cfg, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("dynamodb: loading the AWS config: %w", err)
		}
		client := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
			if e := cmp.Or(f.endpoint, os.Getenv("IDEM_DYNAMODB_ENDPOINT")); e != "" {
				o.BaseEndpoint = aws.String(e)
			}
		})
		dopts := []dynamo.Option{dynamo.WithKeyAttribute(f.keyAttr), dynamo.WithValueAttribute(f.valAttr),
			dynamo.WithVersionAttribute(f.verAttr), dynamo.WithExpiryAttribute(f.expAttr), dynamo.WithTokenAttribute(f.tokAttr)}
		if f.sortKey != "" || f.partition != "" {
			dopts = append(dopts, dynamo.WithSortKey(f.sortKey, f.partition))
		}
		s, err := dynamo.New(client, f.table, dopts...)
		return s, func() {}, err
	}
	table := f.table
	if f.keyspace != "" && !strings.Contains(table, ".") {
		table = f.keyspace + "." + table
	}
	hosts := strings.Split(cmp.Or(f.hosts, os.Getenv("IDEM_CASSANDRA_HOSTS"), "127.0.0.1:9042"), ",")
	cluster := gocql.NewCluster(hosts...)
	cluster.Timeout = 12 * time.Second
	cluster.ConnectTimeout = 10 * time.Second
	session, err := cluster.CreateSession()
	if err != nil {
		return nil, nil, fmt.Errorf("cassandra: connecting to %v: %w", hosts, err)
	}
	s, err := cassandra.New(session, table)
	if err != nil {
		session.Close()
		return nil, nil, err
	}
	return s, session.Close, nil
}

// ctl runs the commands on one store.
type ctl struct {
	store                   store
	stdout, stderr          io.Writer
	now                     func() time.Time
	json, showResult, force bool
	// afterRead, if set, runs between evict's Get and its
	// CompareAndDelete: tests change the record there.
	afterRead func()
}

// errRefused: evict would not delete the record.
var errRefused = errors.New("not evicted")

// get prints key's record.
func (c *ctl) get(ctx context.Context, key string) error {
	it, err := c.store.Get(ctx, key)
	if err != nil {
		return err
	}
	info, derr := kernel.DescribeRecord(it.Value)
	c.print(it, info, derr)
	if derr != nil {
		return fmt.Errorf("key %q, version %d: %w", key, it.Version, derr)
	}
	return nil
}

// evict deletes key's record when it may, fenced by the version it read.
func (c *ctl) evict(ctx context.Context, key string) error {
	it, err := c.store.Get(ctx, key)
	if err != nil {
		return err
	}
	info, derr := kernel.DescribeRecord(it.Value)
	now := c.now()
	switch {
	case derr != nil && !c.force:
		return fmt.Errorf("%w: key %q, version %d: %w; -force deletes it anyway", errRefused, key, it.Version, derr)
	case derr != nil:
		c.warn("%q is not a claim record (%v); deleting it anyway (-force)", key, derr)
	case info.Status == kernel.StatusInProgress && !info.LeasePassed(now) && !c.force:
		return fmt.Errorf("%w: %q is in progress, leased until %s (for %s more): its owner may still be running it; wait for the lease to pass, or -force",
			errRefused, key, stamp(info.LeaseUntil), info.LeaseUntil.Sub(now).Round(time.Millisecond))
	case info.Status == kernel.StatusInProgress && !info.LeasePassed(now):
		c.warn("%q is in progress, leased until %s: its owner may still be running it, and the next claim runs the work again beside it; deleting it anyway (-force)",
			key, stamp(info.LeaseUntil))
	}
	c.warn("evicting %q lets its work run again: the next request with the key runs as new, and the stored answer is gone", key)
	if age := now.Sub(info.CreatedAt); derr == nil && age < youngAge {
		c.warn("the record is only %s old: do not delete a young record of a key in use (a claim on its way to the database could start the key below this record's fence; see idem.Lease.Fence)",
			age.Round(time.Millisecond))
	}
	if c.afterRead != nil {
		c.afterRead()
	}
	if err := c.store.CompareAndDelete(ctx, key, it.Version); err != nil {
		var ce *idem.ConflictError
		switch {
		case errors.As(err, &ce) && ce.Exists:
			return fmt.Errorf("%q changed after it was read (version %d, now %d): not evicted; run get and decide again: %w", key, it.Version, ce.Current.Version, err)
		case errors.As(err, &ce):
			return fmt.Errorf("%q vanished after it was read (expired, or deleted by someone else): %w", key, err)
		case errors.Is(err, idem.ErrUnknownOutcome):
			return fmt.Errorf("the delete of %q may or may not have been applied; run get to see: %w", key, err)
		}
		return err
	}
	if c.json {
		return c.writeJSON(map[string]any{"evicted": true, "forced": c.force, "record": c.view(it, info, derr)})
	}
	fmt.Fprintf(c.stdout, "evicted %q (%s, version %d)\n", key, cmp.Or(statusText(info), "not a claim record"), it.Version)
	return nil
}

func (c *ctl) warn(format string, a ...any) {
	fmt.Fprintf(c.stderr, "idemctl: warning: "+format+"\n", a...)
}

// recordView is a record as -json prints it.
type recordView struct {
	Key          string    `json:"key"`
	Version      int64     `json:"version"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	Corrupt      string    `json:"corrupt,omitempty"` // why the value is not a claim record
	Status       string    `json:"status,omitempty"`
	Failed       bool      `json:"failed,omitempty"`
	Token        string    `json:"token,omitempty"`
	Attempt      int       `json:"attempt,omitempty"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
	LeaseUntil   time.Time `json:"lease_until,omitzero"`
	LeasePassed  bool      `json:"lease_passed,omitempty"`
	CompletedAt  time.Time `json:"completed_at,omitzero"`
	Fingerprint  string    `json:"fingerprint,omitempty"` // hex
	ResultSize   int       `json:"result_size"`
	Result       *string   `json:"result,omitempty"`        // -show-result, a UTF-8 result
	ResultBase64 []byte    `json:"result_base64,omitempty"` // -show-result, any other
	ErrorCode    string    `json:"error_code,omitempty"`
	ErrorMessage string    `json:"error_message,omitempty"`
}

func (c *ctl) view(it idem.Item, info kernel.RecordInfo, derr error) recordView {
	v := recordView{Key: it.Key, Version: it.Version, ExpiresAt: it.ExpiresAt}
	if derr != nil {
		v.Corrupt = derr.Error()
		return v
	}
	v.Status, v.Failed, v.Token, v.Attempt = info.Status, info.Failed, info.Token, info.Attempt
	v.CreatedAt, v.LeaseUntil, v.CompletedAt = info.CreatedAt, info.LeaseUntil, info.CompletedAt
	v.LeasePassed = info.LeasePassed(c.now())
	if info.Fingerprint != nil {
		v.Fingerprint = hex.EncodeToString(info.Fingerprint)
	}
	v.ResultSize, v.ErrorCode, v.ErrorMessage = len(info.Result), info.ErrorCode, info.ErrorMessage
	if c.showResult && info.Result != nil {
		if utf8.Valid(info.Result) {
			s := string(info.Result)
			v.Result = &s
		} else {
			v.ResultBase64 = info.Result
		}
	}
	return v
}

// print shows a record, as JSON with -json, else a line per field.
func (c *ctl) print(it idem.Item, info kernel.RecordInfo, derr error) {
	if c.json {
		_ = c.writeJSON(c.view(it, info, derr))
		return
	}
	w, now := c.stdout, c.now()
	line := func(name, format string, a ...any) {
		fmt.Fprintf(w, "%-13s "+format+"\n", append([]any{name + ":"}, a...)...)
	}
	when := func(t time.Time) string {
		if d := t.Sub(now).Round(time.Second); d < 0 {
			return fmt.Sprintf("%s (%s ago)", stamp(t), -d)
		}
		return fmt.Sprintf("%s (in %s)", stamp(t), t.Sub(now).Round(time.Second))
	}
	line("key", "%q", it.Key)
	line("version", "%d (the fence evict checks)", it.Version)
	if derr != nil {
		line("value", "%d bytes, not a claim record: %v", len(it.Value), derr)
	} else {
		line("status", "%s", statusText(info))
		line("owner token", "%s", info.Token)
		line("attempt", "%d", info.Attempt)
		line("created", "%s", when(info.CreatedAt))
		if !info.LeaseUntil.IsZero() {
			passed := ""
			if info.LeasePassed(now) {
				passed = ", passed: the next claim takes the key over"
			}
			line("lease until", "%s%s", when(info.LeaseUntil), passed)
		}
		if !info.CompletedAt.IsZero() {
			line("completed", "%s", when(info.CompletedAt))
		}
		if info.Fingerprint != nil {
			line("fingerprint", "%x", info.Fingerprint)
		}
		if info.Failed {
			line("error", "code %q: %s", info.ErrorCode, info.ErrorMessage)
		}
		line("result", "%d bytes", len(info.Result))
	}
	if it.ExpiresAt.IsZero() {
		line("expires", "never")
	} else {
		line("expires", "%s", when(it.ExpiresAt))
	}
	if c.showResult && derr == nil && info.Result != nil {
		if printable(info.Result) {
			fmt.Fprintf(w, "%s\n", info.Result)
		} else {
			fmt.Fprint(w, hex.Dump(info.Result))
		}
	}
}

func (c *ctl) writeJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// statusText is the record's status, "failed" for one completed with a
// permanent error.
func statusText(info kernel.RecordInfo) string {
	if info.Failed {
		return "failed (completed with a permanent error)"
	}
	return info.Status
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// printable reports whether b is UTF-8 text without control characters
// other than newlines and tabs.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}
