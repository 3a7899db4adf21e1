package cassandra

import (
	"context"
	"errors"
	"reflect"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// executor is the narrow seam between the Store and the driver. The Store
// builds CQL and decides; the executor only runs statements, turns result
// rows into records and says which errors leave a write's outcome unknown.
// Tests wrap it to inject faults; an adapter for another driver (the v1 API
// of github.com/gocql/gocql or its ScyllaDB fork) would implement it too.
type executor interface {
	// cas runs one conditional statement (a lightweight transaction) at the
	// store's serial and commit consistency, never retried or speculated by
	// the driver. When the condition is false, cur holds the row the server
	// returned (cur.found is false when the row is absent).
	cas(ctx context.Context, stmt string, args ...any) (applied bool, cur record, err error)
	// read runs a single-row SELECT of value, version, expires_at and write_id at
	// consistency cl. A missing row is a record with found == false.
	read(ctx context.Context, cl gocql.Consistency, stmt string, args ...any) (record, error)
	// schema runs a schema statement and waits for schema agreement.
	schema(ctx context.Context, stmt string) error
	// uncertain reports whether err, returned by cas, may have come after
	// the statement reached a coordinator, so that it may have been applied.
	// It is false only for errors that prove nothing was executed.
	uncertain(err error) bool
}

// record is one row of the table in driver-neutral form.
type record struct {
	// found: the row is an item, with value, version and expires_at all
	// set (it may have expired). Every write of the Store sets them all.
	found     bool
	value     []byte
	version   int64
	expiresAt int64  // Unix milliseconds; never is math.MaxInt64
	writeID   []byte // the write_id of the write that stored the row
	// stray is set when the row exists but is not an item: value, version
	// or expires_at is NULL, so the row was written outside the Store. It
	// is absent for every operation, and the writes that create an item
	// replace it with a statement whose condition is exactly this row:
	// value, version, expires_at and write_id as bind values, NULL as nil.
	stray []any
}

// gocqlExecutor is the executor over github.com/apache/cassandra-gocql-driver/v2.
type gocqlExecutor struct {
	session *gocql.Session
	serial  gocql.Consistency
	commit  gocql.Consistency
}

func (g *gocqlExecutor) cas(ctx context.Context, stmt string, args ...any) (bool, record, error) {
	q := g.session.Query(stmt, args...).
		Consistency(g.commit).
		SerialConsistency(g.serial).
		Idempotent(false). // the driver must never resend an LWT: see uncertain
		NoSkipMetadata()   // the result's columns differ between executions
	iter := q.IterContext(ctx)
	applied, cur, _ := scanRecord(iter)
	if err := iter.Close(); err != nil {
		return false, record{}, err
	}
	return applied, cur, nil
}

func (g *gocqlExecutor) read(ctx context.Context, cl gocql.Consistency, stmt string, args ...any) (record, error) {
	q := g.session.Query(stmt, args...).Consistency(cl).Idempotent(true)
	iter := q.IterContext(ctx)
	_, cur, _ := scanRecord(iter)
	if err := iter.Close(); err != nil {
		return record{}, err
	}
	return cur, nil
}

func (g *gocqlExecutor) schema(ctx context.Context, stmt string) error {
	if err := g.session.Query(stmt).Idempotent(true).ExecContext(ctx); err != nil {
		return err
	}
	return g.session.AwaitSchemaAgreement(ctx)
}

// scanRecord reads the first row of iter by column name, whatever columns
// the server returned: Cassandra returns only [applied] when a conditional
// write applied or when the row is absent, the condition's columns when it
// failed, and every column for IF NOT EXISTS; ScyllaDB returns the old row
// (with NULLs when absent) even when the write applied. Unknown columns are
// skipped. ok is false when there was no row.
func scanRecord(iter *gocql.Iter) (applied bool, cur record, ok bool) {
	cols := iter.Columns()
	// One allocation for every scan target: the row has at most the
	// table's five columns and [applied] (a sixth for ScyllaDB's key).
	d := new(struct {
		applied            bool
		value, writeID     *[]byte // nil: NULL; a pointer to nil: empty
		version, expiresAt *int64
		buf                [7]any
	})
	dest := d.buf[:0]
	for _, c := range cols {
		switch c.Name {
		case "[applied]":
			dest = append(dest, &d.applied)
		case "value":
			dest = append(dest, &d.value)
		case "version":
			dest = append(dest, &d.version)
		case "expires_at":
			dest = append(dest, &d.expiresAt)
		case "write_id":
			dest = append(dest, &d.writeID)
		default:
			dest = append(dest, reflect.New(reflect.TypeOf(c.TypeInfo.Zero())).Interface())
		}
	}
	if !iter.Scan(dest...) {
		return false, record{}, false
	}
	applied, value, writeID, version, expiresAt := d.applied, d.value, d.writeID, d.version, d.expiresAt
	switch {
	case value != nil && version != nil && expiresAt != nil:
		cur = record{found: true, value: *value, version: *version, expiresAt: *expiresAt}
		if writeID != nil {
			cur.writeID = *writeID
		}
	case value != nil || version != nil || expiresAt != nil || writeID != nil:
		cur.stray = []any{bindBytes(value), version, expiresAt, bindBytes(writeID)}
	}
	return applied, cur, true
}

// bindBytes turns a scanned blob back into a bind value: nil for NULL, a
// non-nil slice (perhaps empty) otherwise.
func bindBytes(b *[]byte) any {
	if b == nil {
		return nil
	}
	return append([]byte{}, *b...)
}

// uncertain classifies the errors of github.com/apache/cassandra-gocql-driver/v2.
// Only errors raised before a request left the client, or by a coordinator
// that refused it before executing anything, prove that nothing was written.
// Everything else is uncertain, notably: WriteTimeout of any write type (a
// commit-phase timeout arrives as SIMPLE on protocol v5), WriteFailure,
// CAS_WRITE_UNKNOWN, Unavailable and read timeouts raised between Paxos
// rounds, client timeouts, a closed connection and a context that expired
// while the driver waited for the answer.
func (g *gocqlExecutor) uncertain(err error) bool { return uncertainGocql(err) }

func uncertainGocql(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, gocql.ErrNoConnections),
		errors.Is(err, gocql.ErrSessionClosed),
		errors.Is(err, gocql.ErrNoStreams),
		errors.Is(err, gocql.ErrUseStmt),
		errors.Is(err, gocql.ErrNoKeyspace),
		errors.Is(err, gocql.ErrKeyspaceDoesNotExist),
		errors.Is(err, gocql.ErrTooManyStmts),
		errors.Is(err, gocql.ErrUnsupported):
		return false
	}
	var (
		syntax    *gocql.RequestErrSyntax
		invalid   *gocql.RequestErrInvalid
		unauth    *gocql.RequestErrUnauthorized
		config    *gocql.RequestErrConfig
		creds     *gocql.RequestErrCredentials
		exists    *gocql.RequestErrAlreadyExists
		unprep    *gocql.RequestErrUnprepared
		overload  *gocql.RequestErrOverloaded
		bootstrap *gocql.RequestErrBootstrapping
		marshal   gocql.MarshalError
	)
	switch {
	case errors.As(err, &syntax), errors.As(err, &invalid), errors.As(err, &unauth),
		errors.As(err, &config), errors.As(err, &creds), errors.As(err, &exists),
		errors.As(err, &unprep), errors.As(err, &overload), errors.As(err, &bootstrap),
		errors.As(err, &marshal):
		return false
	}
	return true
}
