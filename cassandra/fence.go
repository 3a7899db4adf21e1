package cassandra

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

// DefaultFenceColumn is the fence column of a FencedWrite whose Column is
// empty.
const DefaultFenceColumn = "fence"

// FencedWrite is a write to one row of the caller's own table, for
// FencedUpdate. Column names are CQL names: unquoted ones are
// case-insensitive, as in CQL; one in double quotes keeps its case.
type FencedWrite struct {
	Table  string         // "keyspace.table", as for New
	Key    map[string]any // the row's whole primary key: column -> value
	Set    map[string]any // the columns to write: column -> value (nil writes NULL)
	Column string         // the fence column, a bigint; DefaultFenceColumn if empty
}

// FencedUpdate writes w to its row, fenced by fence, a claim's
// idem.Lease.Fence: the write lands if the row's fence is not above fence,
// and then sets the row's fence to fence; if it is above, nothing is
// written and FencedUpdate returns a *FencedError (ErrFenced) that carries
// it. "Not above", not "below": the claim that wrote a row may write it
// again, and send a write again after a timeout. No two claims of a key
// share a fence, so once a later claim's write has landed on the row, no
// earlier claim's write lands after it.
//
// The table needs a bigint fence column:
//
//	CREATE TABLE payments.ledger (
//		account text,
//		entry   text,
//		amount  bigint,
//		fence   bigint,  -- written by FencedUpdate only
//		PRIMARY KEY (account, entry)
//	)
//
// Each write is one lightweight transaction on one row, with the values
// sorted by column name:
//
//	UPDATE "payments"."ledger" SET "amount" = ?, "fence" = ?
//		WHERE "account" = ? AND "entry" = ? IF "fence" <= ?
//
// A row that is absent, or that has a NULL fence (a row written before the
// fence column existed, or by a plain write), counts as fence 0, below
// every fence: the first statement's refusal then says so, and the write is
// sent again with IF "fence" = null, which holds on an absent row too and
// creates it. That costs a second round trip; a write to a row that has a
// fence, landing or refused, costs one. Like the Store, FencedUpdate
// writes with UPDATE, never INSERT, so the row gets no row marker and
// lives exactly as long as its cells.
//
// The row must be written only through FencedUpdate (or other lightweight
// transactions): a plain write does not see a Paxos round and can undo the
// fencing. Key must name the whole primary key, so the write is on a
// single partition; the server refuses a partial one. The statement runs
// at SERIAL and QUORUM unless opts says otherwise: only
// WithSerialConsistency and WithCommitConsistency apply, the other options
// of the Store do not.
//
// Invalid input is an error matching idem.ErrInvalid before anything is
// sent: a bad table or column name, an empty Key or Set, a column named
// twice, the fence column in Key or Set, a fence that is not positive
// (every Lease.Fence is). A write whose outcome is unknown (a write
// timeout, a lost response, a cut connection: the classes the Store
// treats as unknown) returns an error matching idem.ErrUnknownOutcome, and
// is not sent again by FencedUpdate or by the driver. Sending the same
// write with the same fence again is safe: if the first copy landed, the
// copy writes the same values over it; if a later claim has written since,
// the copy is refused. Fences order claims, not the writes of one claim:
// send it again before the claim writes the row anything else, or the copy
// undoes the newer write (and after a client-side timeout the first copy
// may itself still be on its way to a coordinator, and land later).
// ErrContention reports a row that kept changing, between absent, NULL and
// fenced, under every statement FencedUpdate allows itself.
func FencedUpdate(ctx context.Context, session *gocql.Session, w FencedWrite, fence int64, opts ...Option) error {
	cfg := defaultConfig()
	if err := cfg.apply(opts); err != nil {
		return err
	}
	st, err := w.statements()
	if err != nil {
		return err
	}
	row := describeRow(w.Table, w.Key)
	if fence <= 0 {
		return fmt.Errorf("cassandra: fenced update of %s: fence %d is not positive: %w", row, fence, idem.ErrInvalid)
	}
	if session == nil {
		return errors.New("cassandra: FencedUpdate needs a session")
	}
	notAbove := true // the statement to send: IF fence <= ?, or IF fence = null
	for range maxStatements {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cassandra: fenced update of %s: %w", row, err)
		}
		stmt, args := st.null, st.args(fence)
		if notAbove {
			stmt, args = st.notAbove, append(args, fence)
		}
		applied, cur, err := casFence(ctx, session, cfg, stmt, st.column, args)
		switch {
		case err != nil && uncertainGocql(err):
			return kernel.Unknown(row, "fenced update", err)
		case err != nil:
			// Nothing executed this statement, and any before it was
			// refused: nothing was written.
			return fmt.Errorf("cassandra: fenced update of %s: %w", row, err)
		case applied:
			return nil
		case cur > fence:
			return &FencedError{Table: w.Table, Key: maps.Clone(w.Key), Fence: fence, Current: cur}
		}
		// IF fence <= ? refused, the fence not above ours: the row is
		// absent or its fence NULL. IF fence = null refused: it has a
		// fence now, not above ours. Either way the other statement holds,
		// unless the row changes again in between.
		notAbove = !notAbove
	}
	return fmt.Errorf("cassandra: fenced update of %s: %w: the row changed under %d conditional writes", row, ErrContention, maxStatements)
}

// casFence runs one conditional statement and returns whether it applied
// and, if not, the row's fence as the server returned it. MapScanCAS reads
// a NULL bigint, and a row that is absent, as 0: below every fence, as
// FencedUpdate counts them.
func casFence(ctx context.Context, session *gocql.Session, cfg config, stmt, column string, args []any) (applied bool, fence int64, err error) {
	q := session.Query(stmt, args...).
		Consistency(cfg.commit).
		SerialConsistency(cfg.serial).
		Idempotent(false). // an LWT is never resent by the driver: see uncertainGocql
		NoSkipMetadata()   // the result's columns differ between executions
	cur := map[string]any{}
	applied, err = q.MapScanCASContext(ctx, cur)
	if err != nil {
		return false, 0, err
	}
	fence, _ = cur[column].(int64)
	return applied, fence, nil
}

// fencedStatements are the two statements of a FencedWrite, and the bind
// values they share.
type fencedStatements struct {
	notAbove string // IF fence <= ?
	null     string // IF fence = null
	column   string // the fence column's name as the server returns it
	set, key []any  // the values of Set and Key, in the statements' order
}

// args returns the bind values of a statement without its condition.
func (s *fencedStatements) args(fence int64) []any {
	args := make([]any, 0, len(s.set)+1+len(s.key)+1)
	args = append(args, s.set...)
	args = append(args, fence)
	return append(args, s.key...)
}

// statements checks w and builds its statements. Every name is quoted, so
// a column named like a CQL keyword works too.
func (w FencedWrite) statements() (*fencedStatements, error) {
	name, err := parseTable(w.Table)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, idem.ErrInvalid)
	}
	ks, tbl, _ := strings.Cut(name, ".")
	row := describeRow(w.Table, w.Key)
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("cassandra: fenced update of %s: %s: %w", row, fmt.Sprintf(format, a...), idem.ErrInvalid)
	}
	switch {
	case len(w.Key) == 0:
		return nil, invalid("Key is empty: it must name the row's whole primary key")
	case len(w.Set) == 0:
		return nil, invalid("Set is empty: there is nothing to write")
	}
	column := w.Column
	if column == "" {
		column = DefaultFenceColumn
	}
	fenceName, ok := columnName(column)
	if !ok {
		return nil, invalid("fence column %q is not a CQL name", column)
	}
	cols := fencedColumns{seen: map[string]string{fenceName: "the fence column"}, invalid: invalid}
	key, err := cols.collect("Key", w.Key)
	if err != nil {
		return nil, err
	}
	set, err := cols.collect("Set", w.Set)
	if err != nil {
		return nil, err
	}
	return buildFenced(quote(unquote(ks))+"."+quote(unquote(tbl)), fenceName, key, set), nil
}

// fencedColumns checks the column names of a FencedWrite: each a CQL name,
// none named twice (seen: the names so far, and what each is).
type fencedColumns struct {
	seen    map[string]string
	invalid func(format string, a ...any) error
}

type fencedColumn struct {
	name  string
	value any
}

// collect returns the columns of m, the FencedWrite's part (Key or Set),
// sorted by name so that the statement is the same for the same columns.
func (fc fencedColumns) collect(part string, m map[string]any) ([]fencedColumn, error) {
	cols := make([]fencedColumn, 0, len(m))
	for c, v := range m {
		n, ok := columnName(c)
		if !ok {
			return nil, fc.invalid("%s column %q is not a CQL name (letters, digits and underscores, starting with a letter unless quoted)", part, c)
		}
		if other, dup := fc.seen[n]; dup {
			return nil, fc.invalid("%s column %q is also %s", part, c, other)
		}
		fc.seen[n] = part + " column " + fmt.Sprintf("%q", c)
		cols = append(cols, fencedColumn{n, v})
	}
	slices.SortFunc(cols, func(a, b fencedColumn) int { return strings.Compare(a.name, b.name) })
	return cols, nil
}

// buildFenced writes the two statements of a fenced update of table (its
// quoted keyspace.table): set the columns and the fence where the key's
// row has a fence not above ours, or none.
func buildFenced(table, fence string, key, set []fencedColumn) *fencedStatements {
	s := &fencedStatements{column: fence}
	var b strings.Builder
	fmt.Fprintf(&b, "UPDATE %s SET ", table)
	for _, c := range set {
		fmt.Fprintf(&b, "%s = ?, ", quote(c.name))
		s.set = append(s.set, c.value)
	}
	fmt.Fprintf(&b, "%s = ? WHERE ", quote(fence))
	for i, c := range key {
		if i > 0 {
			b.WriteString(" AND ")
		}
		fmt.Fprintf(&b, "%s = ?", quote(c.name))
		s.key = append(s.key, c.value)
	}
	fmt.Fprintf(&b, " IF %s ", quote(fence))
	s.notAbove, s.null = b.String()+"<= ?", b.String()+"= null"
	return s
}

var columnRE = regexp.MustCompile(`^(?:[A-Za-z][A-Za-z0-9_]{0,254}|"[A-Za-z0-9_]{1,255}")$`)

// columnName checks a CQL column name and returns it as the server knows
// it: an unquoted name in lower case, a quoted one without its quotes.
func columnName(c string) (string, bool) {
	if !columnRE.MatchString(c) {
		return "", false
	}
	return unquote(c), true
}

// unquote returns a name checked by identRE or columnRE as the server
// knows it.
func unquote(name string) string {
	if strings.HasPrefix(name, `"`) {
		return strings.Trim(name, `"`)
	}
	return strings.ToLower(name)
}

func quote(name string) string { return `"` + name + `"` }

// describeRow names a row in messages: keyspace.table (column=value, ...),
// the columns sorted.
func describeRow(table string, key map[string]any) string {
	cols := make([]string, 0, len(key))
	for c := range key {
		cols = append(cols, c)
	}
	slices.Sort(cols)
	var b strings.Builder
	b.WriteString(table)
	b.WriteString(" (")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%v", c, key[c])
	}
	b.WriteString(")")
	return short(b.String())
}
