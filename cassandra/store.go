package cassandra

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/kernel"
)

// Store is an idem.Store over one Cassandra table, written only with
// lightweight transactions. Create it with New; it is safe for concurrent
// use and holds no resources of its own (the session is the caller's).
type Store struct {
	exec executor
	cfg  config
	q    statements
}

var _ idem.Store = (*Store)(nil)

// New returns a Store over table, given as "keyspace.table", in the cluster
// session talks to. It sends nothing: the table must exist (see CreateTable)
// when the Store is first used. New rejects an invalid table name or
// options with an error.
//
// For the fewest Paxos conflicts, build the session with a token-aware host
// policy that does not shuffle replicas:
//
//	cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(
//		gocql.RoundRobinHostPolicy(), gocql.DoNotShuffleReplicas())
func New(session *gocql.Session, table string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	if err := cfg.apply(opts); err != nil {
		return nil, err
	}
	name, err := parseTable(table)
	if err != nil {
		return nil, err
	}
	exec := cfg.exec
	if exec == nil {
		if session == nil {
			return nil, errors.New("cassandra: New needs a session")
		}
		exec = &gocqlExecutor{session: session, serial: cfg.serial, commit: cfg.commit}
	}
	return &Store{exec: exec, cfg: cfg, q: newStatements(name)}, nil
}

// CreateTable creates table ("keyspace.table") with the Store's schema if it
// does not exist, and waits until the cluster agrees on the schema. The
// keyspace must exist: its replication is a decision for the operator (use
// NetworkTopologyStrategy with a replication factor of at least 3 in
// production). opts are the options of New; they are checked here so a bad
// configuration fails at setup, but none of them changes the schema:
//
//	CREATE TABLE IF NOT EXISTS keyspace.table (
//		key        text PRIMARY KEY,
//		value      blob,
//		version    bigint,
//		expires_at bigint, -- Unix ms; 9223372036854775807: never
//		write_id   blob    -- 16 random bytes per write: own-write recognition
//	)
func CreateTable(ctx context.Context, session *gocql.Session, table string, opts ...Option) error {
	cfg := defaultConfig()
	if err := cfg.apply(opts); err != nil {
		return err
	}
	name, err := parseTable(table)
	if err != nil {
		return err
	}
	exec := cfg.exec
	if exec == nil {
		if session == nil {
			return errors.New("cassandra: CreateTable needs a session")
		}
		exec = &gocqlExecutor{session: session, serial: cfg.serial, commit: cfg.commit}
	}
	if err := exec.schema(ctx, createTableCQL(name)); err != nil {
		return fmt.Errorf("cassandra: creating table %s: %w", name, err)
	}
	return nil
}

func createTableCQL(table string) string {
	return "CREATE TABLE IF NOT EXISTS " + table + ` (
	key        text PRIMARY KEY,
	value      blob,
	version    bigint,
	expires_at bigint,
	write_id   blob
) WITH comment = 'idemkit idem.Store: write only with lightweight transactions; expires_at is Unix ms, 9223372036854775807 = never'`
}

// The statements, one per kernel step. Every write sets every column with
// one USING TTL, so all cells of a row live and die together and no INSERT
// row marker can outlive them. Conditions name value and expires_at too,
// even where they always hold, because Cassandra returns exactly the
// condition's columns when it fails: the conflict carries the whole item
// without a second round trip.
type statements struct {
	get       string // SELECT
	create    string // the row is absent
	replace   string // the row is an item, expired by the client's clock
	overwrite string // the row is not an item (see record.stray): exactly as read
	swap      string // the row is live at the expected version
	raise     string // the row is live at a lower version
	delete    string // the row is live at the expected version
}

func newStatements(table string) statements {
	const (
		set = "UPDATE %s USING TTL ? SET value = ?, version = ?, expires_at = ?, write_id = ? WHERE key = ? IF "
		// rest holds for every row we wrote; it makes a refusal return the
		// whole row. The write_id it compares with is 17 bytes, one more
		// than any write_id, so the comparison holds for every row: one
		// written by the Store, one whose write_id is NULL, and one whose
		// write_id is empty (written by hand).
		rest = " AND value != null AND write_id != 0x0000000000000000000000000000000000"
	)
	return statements{
		get:       fmt.Sprintf("SELECT value, version, expires_at, write_id FROM %s WHERE key = ?", table),
		create:    fmt.Sprintf(set+"version = null AND value = null AND expires_at = null AND write_id = null", table),
		replace:   fmt.Sprintf(set+"expires_at <= ? AND version != null"+rest, table),
		overwrite: fmt.Sprintf(set+"value = ? AND version = ? AND expires_at = ? AND write_id = ?", table),
		swap:      fmt.Sprintf(set+"version = ? AND expires_at > ?"+rest, table),
		raise:     fmt.Sprintf(set+"version < ? AND expires_at > ?"+rest, table),
		delete:    fmt.Sprintf("DELETE FROM %s WHERE key = ? IF version = ? AND expires_at > ?"+rest, table),
	}
}

// Get implements idem.Store. It reads at the read consistency (SERIAL by
// default, which also completes any write still in flight on the key).
func (s *Store) Get(ctx context.Context, key string) (idem.Item, error) {
	if err := checkKey(key); err != nil {
		return idem.Item{}, err
	}
	if err := ctx.Err(); err != nil {
		return idem.Item{}, fmt.Errorf("cassandra: Get %q: %w", short(key), err)
	}
	cur, err := s.exec.read(ctx, s.cfg.read, s.q.get, key)
	if err != nil {
		return idem.Item{}, fmt.Errorf("cassandra: Get %q: %w", short(key), err)
	}
	if !cur.live(s.cfg.now()) {
		return idem.Item{}, fmt.Errorf("cassandra: Get %q: %w", short(key), idem.ErrNotFound)
	}
	return itemOf(key, cur), nil
}

// PutIfAbsent implements idem.Store.
func (s *Store) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (idem.Item, error) {
	now := s.cfg.now()
	if err := s.checkWrite(key, value, ttl, now); err != nil {
		return idem.Item{}, err
	}
	// The process's clock, not s.cfg.now: kernel.FreshVersion keeps one sequence
	// for the whole process, which a store on a clock of its own (tests)
	// would push ahead of every other store's.
	w := s.newWrite(putIfAbsent, key, value, 0, kernel.FreshVersion(), ttl, now)
	res, err := s.run(ctx, w)
	if err != nil {
		return idem.Item{}, err
	}
	if !res.applied {
		return idem.Item{}, w.conflict(res)
	}
	return res.item, nil
}

// CompareAndSwap implements idem.Store.
func (s *Store) CompareAndSwap(ctx context.Context, key string, version int64, value []byte, ttl time.Duration) (idem.Item, error) {
	now := s.cfg.now()
	if err := s.checkWrite(key, value, ttl, now); err != nil {
		return idem.Item{}, err
	}
	if err := kernel.CheckVersion(key, version); err != nil {
		return idem.Item{}, err
	}
	if version == math.MaxInt64 {
		return idem.Item{}, kernel.Invalid(key, "version would overflow")
	}
	w := s.newWrite(compareAndSwap, key, value, version, version+1, ttl, now)
	res, err := s.run(ctx, w)
	if err != nil {
		return idem.Item{}, err
	}
	if !res.applied {
		return idem.Item{}, w.conflict(res)
	}
	return res.item, nil
}

// CompareAndDelete implements idem.Store.
func (s *Store) CompareAndDelete(ctx context.Context, key string, version int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := kernel.CheckVersion(key, version); err != nil {
		return err
	}
	w := s.newWrite(compareAndDelete, key, nil, version, 0, 0, s.cfg.now())
	res, err := s.run(ctx, w)
	if err != nil {
		return err
	}
	if !res.applied {
		return w.conflict(res)
	}
	return nil
}

// Upsert implements idem.Store.
func (s *Store) Upsert(ctx context.Context, key string, value []byte, version int64, ttl time.Duration) (idem.Item, bool, error) {
	now := s.cfg.now()
	if err := s.checkWrite(key, value, ttl, now); err != nil {
		return idem.Item{}, false, err
	}
	if err := kernel.CheckUpsertVersion(key, version); err != nil {
		return idem.Item{}, false, err
	}
	w := s.newWrite(upsert, key, value, 0, version, ttl, now)
	res, err := s.run(ctx, w)
	if err != nil {
		return idem.Item{}, false, err
	}
	return res.item, res.applied, nil
}

// kind is a kernel write.
type kind uint8

const (
	putIfAbsent kind = iota
	compareAndSwap
	compareAndDelete
	upsert
)

func (k kind) String() string {
	return [...]string{"PutIfAbsent", "CompareAndSwap", "CompareAndDelete", "Upsert"}[k]
}

// write is one kernel write: what it stores and when it may apply.
type write struct {
	kind    kind
	key     string
	value   []byte    // stored value (a private copy, never nil); nil for CompareAndDelete
	expect  int64     // CompareAndSwap, CompareAndDelete: the caller's version
	version int64     // the version written: kernel.FreshVersion, expect+1, or the caller's for Upsert
	id      []byte    // write_id: random per call, for own-write recognition
	ttl     int       // USING TTL, in seconds; 0: none
	expires int64     // expires_at, Unix ms; math.MaxInt64: never
	start   time.Time // the clock when the call began: expires and the first statement's conditions
	bind    [9]any    // the bind values of the statement being sent (see args)
}

// result is a settled write. Not applied, item is the current item when
// exists is true.
type result struct {
	applied bool
	exists  bool
	item    idem.Item
}

func (s *Store) newWrite(k kind, key string, value []byte, expect, version int64, ttl time.Duration, now time.Time) *write {
	w := &write{kind: k, key: key, expect: expect, version: version, start: now}
	if k != compareAndDelete {
		w.value = append(make([]byte, 0, len(value)), value...)
		w.id = newWriteID()
		w.ttl, w.expires = expiry(now, ttl)
	}
	return w
}

func (w *write) conflict(res result) error {
	e := &idem.ConflictError{Key: w.key, Op: w.kind.String(), Exists: res.exists}
	if res.exists {
		e.Current = res.item
	}
	return e
}

// written is the item w stores.
func (w *write) written() idem.Item {
	if w.kind == compareAndDelete {
		return idem.Item{}
	}
	return itemOf(w.key, record{found: true, value: w.value, version: w.version, expiresAt: w.expires, writeID: w.id})
}

// run performs w: one logical attempt, and when its outcome is unknown,
// the SERIAL read that settles it (resolve). Nothing is sent again after a
// statement whose outcome is unknown.
func (s *Store) run(ctx context.Context, w *write) (result, error) {
	if err := ctx.Err(); err != nil {
		return result{}, w.fail(err)
	}
	applied, cur, err := s.attempt(ctx, w)
	if err == nil {
		return s.settled(w, applied, cur), nil
	}
	if !s.uncertain(err) {
		return result{}, w.fail(err)
	}
	return s.resolve(ctx, w, err)
}

// maxStatements bounds the conditional writes of one PutIfAbsent or Upsert
// attempt. Each statement after the first is chosen from the row the
// previous one returned; only a row that keeps being created, deleted or
// expiring under the attempt can use them all up.
const maxStatements = 6

// step names the conditional statement an attempt sends next.
type step uint8

const (
	stepCreate step = iota
	stepReplace
	stepOverwrite
	stepSwap
	stepRaise
	stepDelete
)

// attempt sends the conditional statements of one logical attempt of w. It
// returns whether w applied and, when it did not, the row as the last
// statement saw it. A nil error means the outcome is known.
func (s *Store) attempt(ctx context.Context, w *write) (applied bool, cur record, err error) {
	next := [...]step{putIfAbsent: stepCreate, compareAndSwap: stepSwap, compareAndDelete: stepDelete, upsert: stepRaise}[w.kind]
	for i := range maxStatements {
		now := w.start
		if i > 0 {
			if err := ctx.Err(); err != nil {
				return false, record{}, notSent{err}
			}
			now = s.cfg.now()
		}
		applied, cur, err = s.exec.cas(ctx, s.statement(next), s.args(w, next, cur, now.UnixMilli())...)
		if err != nil || applied {
			return applied, cur, err
		}
		if w.kind == compareAndSwap || w.kind == compareAndDelete {
			return false, cur, nil
		}
		// PutIfAbsent, Upsert: the row decides the next statement.
		switch {
		case cur.live(now):
			if w.kind == upsert && cur.version < w.version {
				next = stepRaise
				continue
			}
			return false, cur, nil
		case cur.found:
			next = stepReplace
		case cur.stray != nil:
			next = stepOverwrite
		default:
			next = stepCreate
		}
	}
	return false, record{}, notSent{fmt.Errorf("%w: the row changed under %d conditional writes", ErrContention, maxStatements)}
}

func (s *Store) statement(st step) string {
	switch st {
	case stepCreate:
		return s.q.create
	case stepReplace:
		return s.q.replace
	case stepOverwrite:
		return s.q.overwrite
	case stepSwap:
		return s.q.swap
	case stepRaise:
		return s.q.raise
	default:
		return s.q.delete
	}
}

// args binds the statement st for w, in w.bind (one statement of w is in
// flight at a time, and nothing is sent again after one whose outcome is
// unknown); prev is the row the previous statement of the attempt returned
// (stepOverwrite names it exactly).
func (s *Store) args(w *write, st step, prev record, nowMs int64) []any {
	if st == stepDelete {
		return append(w.bind[:0], w.key, w.expect, nowMs)
	}
	a := append(w.bind[:0], w.ttl, w.value, w.version, w.expires, w.id, w.key)
	switch st {
	case stepReplace:
		a = append(a, nowMs)
	case stepOverwrite:
		a = append(a, prev.stray...)
	case stepSwap:
		a = append(a, w.expect, nowMs)
	case stepRaise:
		a = append(a, w.version, nowMs)
	}
	return a
}

// settled turns an attempt's known outcome into a result.
func (s *Store) settled(w *write, applied bool, cur record) result {
	if applied {
		return result{applied: true, item: w.written()}
	}
	if cur.live(s.cfg.now()) {
		return result{exists: true, item: itemOf(w.key, cur)}
	}
	return result{}
}

// uncertain reports whether err leaves the outcome of a write unknown.
func (s *Store) uncertain(err error) bool {
	var ns notSent
	if errors.As(err, &ns) {
		return false
	}
	return s.exec.uncertain(err)
}

// notSent marks an error raised by the Store itself before a statement was
// sent.
type notSent struct{ err error }

func (e notSent) Error() string { return e.err.Error() }
func (e notSent) Unwrap() error { return e.err }

func (w *write) fail(err error) error {
	var ns notSent
	if errors.As(err, &ns) {
		err = ns.err
	}
	return fmt.Errorf("cassandra: %s %q: %w", w.kind, short(w.key), err)
}

func (w *write) unknown(err error) error {
	return kernel.Unknown(w.key, w.kind.String(), err)
}

// live reports whether r is a row that has not expired at now.
func (r record) live(now time.Time) bool {
	return r.found && (r.expiresAt == math.MaxInt64 || now.UnixMilli() < r.expiresAt)
}

func itemOf(key string, r record) idem.Item {
	it := idem.Item{Key: key, Value: r.value, Version: r.version}
	if it.Value == nil {
		it.Value = []byte{}
	}
	if r.expiresAt != math.MaxInt64 {
		it.ExpiresAt = time.UnixMilli(r.expiresAt)
	}
	return it
}

// expiry returns the USING TTL seconds and the expires_at column for a
// write at now with ttl. expires_at is now+ttl rounded up to a whole second;
// the Cassandra TTL is a second longer than needed, so the server (which
// counts from the whole second it executes the write in) never deletes the
// row before expires_at. Until it does, expires_at hides the row: every
// read and every condition compares it with the client's clock. ttl <= 0
// means no expiry: USING TTL 0, which also overrides a table's
// default_time_to_live.
func expiry(now time.Time, ttl time.Duration) (ttlSeconds int, expiresAt int64) {
	if ttl <= 0 {
		return 0, math.MaxInt64
	}
	at := now.Add(ttl)
	if t := at.Truncate(time.Second); !t.Equal(at) {
		at = t.Add(time.Second)
	}
	secs := int((at.Sub(now)+time.Second-1)/time.Second) + 1
	return min(secs, int(MaxTTL/time.Second)), at.UnixMilli()
}

// writeIDSize is the length of a write_id: 128 random bits.
const writeIDSize = 16

func newWriteID() []byte {
	b := make([]byte, writeIDSize)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("cassandra: reading random bytes: %v", err)) // crypto/rand does not fail on supported platforms
	}
	return b
}

func checkKey(key string) error {
	if err := kernel.CheckKey(key); err != nil {
		return err
	}
	return kernel.CheckSize(key, "key", len(key), MaxKeySize)
}

func (s *Store) checkWrite(key string, value []byte, ttl time.Duration, now time.Time) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := kernel.CheckSize(key, "value", len(value), s.cfg.maxValue); err != nil {
		return err
	}
	if ttl > MaxTTL {
		return kernel.Invalid(key, fmt.Sprintf("ttl %v is over Cassandra's limit of 20 years", ttl))
	}
	if ttl > 0 {
		secs, _ := expiry(now, ttl)
		if end := now.Add(time.Duration(secs) * time.Second); end.After(latestExpiry) {
			return kernel.Invalid(key, fmt.Sprintf(
				"ttl %v ends after %s, the latest expiry the Store accepts: Cassandra refuses expirations past %s (%v earlier leaves room for clock skew)",
				ttl, latestExpiry.Format(time.RFC3339), serverExpiryLimit.Format(time.RFC3339), expirySkew))
		}
	}
	return nil
}

// short keeps messages readable for long keys.
func short(key string) string { return kernel.Short(key, 256) }

var identRE = regexp.MustCompile(`^(?:[A-Za-z][A-Za-z0-9_]{0,47}|"[A-Za-z0-9_]{1,48}")$`)

// parseTable checks "keyspace.table" and returns it as CQL. Unquoted names
// are case-insensitive, as in CQL; a name in double quotes keeps its case.
func parseTable(table string) (string, error) {
	ks, tbl, ok := strings.Cut(table, ".")
	if !ok || !identRE.MatchString(ks) || !identRE.MatchString(tbl) {
		return "", fmt.Errorf(`cassandra: table %q must be "keyspace.table", each a name of letters, digits and underscores (at most 48, starting with a letter unless quoted)`, table)
	}
	return ks + "." + tbl, nil
}

// ours reports whether cur, read after an unknown outcome, holds w's own
// write: its write_id, random per call, so no other write carries it. The
// row may have expired since; w applied all the same.
func ours(w *write, cur record) bool {
	return cur.found && len(w.id) > 0 && bytes.Equal(cur.writeID, w.id)
}
