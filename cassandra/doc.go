// Package cassandra is an idem.Store over Apache Cassandra lightweight
// transactions (LWT), with github.com/apache/cassandra-gocql-driver/v2. It
// passes idemtest.Run against Cassandra 5.0, so Do, Claim, Update, Once and
// Counter work on it unchanged. This comment is the Store's specification;
// cassandra/README.md has the operator's side (consistency settings,
// ScyllaDB, running the tests, benchmarks).
//
//	session, _ := cluster.CreateSession()
//	_ = cassandra.CreateTable(ctx, session, "payments.idem")
//	store, _ := cassandra.New(session, "payments.idem")
//	charge, err := idem.Do(ctx, store, key, chargeCard)
//
// # Schema
//
// One row per key, created by CreateTable (the keyspace is the operator's):
//
//	CREATE TABLE IF NOT EXISTS keyspace.table (
//		key        text PRIMARY KEY,  -- at most 65535 bytes of UTF-8
//		value      blob,              -- the caller's bytes (1 MiB by default)
//		version    bigint,            -- idem.Item.Version
//		expires_at bigint,            -- Unix ms; 9223372036854775807: never
//		write_id   blob               -- 16 random bytes per write
//	)
//
// # One kernel operation, one lightweight transaction
//
// Every write is a conditional statement that sets every column, with its
// own USING TTL:
//
//	PutIfAbsent       UPDATE ... IF version = null AND value = null AND ...
//	CompareAndSwap    UPDATE ... IF version = ? AND expires_at > now AND ...
//	CompareAndDelete  DELETE ... IF version = ? AND expires_at > now AND ...
//	Upsert            UPDATE ... IF version < ? AND expires_at > now AND ...
//	                  (then the PutIfAbsent statement if the key is absent)
//
// PutIfAbsent writes the version kernel.FreshVersion gives (microseconds
// since 1970, above every version this process returned before), so a key
// deleted or expired and created again never gets back a version it had:
// a caller holding a version of the old row can never act on the new one.
// CompareAndSwap adds exactly one; Upsert writes the caller's version. The
// bound is kernel.FreshVersion's: the new row starts above the old one as
// long as the clock of the client that creates it is not behind the clock
// of the client that created the old one by more than the time between the
// two creations (for claims, at least the lease or the retention).
//
// A refused statement returns the current row (Cassandra returns the columns
// its condition names, so every condition names them all), and that row is
// the *idem.ConflictError's Current: a conflict costs one round trip. A key
// whose row is absent comes back with no columns, Exists == false. Get is
// one read at SERIAL.
//
// A row counts as an item only when its value, version and expires_at are
// all set, as every write of the Store sets them. A row written outside
// the Store with one of them NULL (a plain INSERT without expires_at, say)
// is absent for every operation: Get reports ErrNotFound, CompareAndSwap
// and CompareAndDelete a conflict with Exists == false, and PutIfAbsent
// and Upsert replace it, with a statement whose condition is that row
// exactly as they read it. The first idem.Do on a key is two LWTs (claim,
// complete), a duplicate is one; an Upsert of an absent key is two.
//
// Writes use UPDATE, never INSERT: an INSERT also writes a row marker whose
// TTL is fixed at insert time and which no later conditional UPDATE can
// change. An item stored without TTL and later swapped to a short one would
// leave an empty row behind when its cells expire, and INSERT ... IF NOT
// EXISTS would be refused on that key forever. With UPDATE, all of a row's
// cells are written together with one TTL and expire together, so no remains
// are left behind.
//
// # Expiry
//
// ExpiresAt is now+ttl rounded up to a whole second. The Cassandra TTL is a
// second longer, so the server, counting from the whole second in which it
// executes the write, never deletes the row before ExpiresAt. Until it does,
// expires_at hides the row: every read and every condition compares it with
// the client's clock (the conditions carry the client's "now"), so an
// expired item is absent for every operation whatever the server has
// purged. Keep client clocks in sync (NTP): a client whose clock runs ahead
// sees items expire early (a claim's lease passes for it while the owner's
// clock still counts it live, so the two can overlap by the skew), and one
// that runs behind sees them until the server deletes them. ttl <= 0 means
// no expiry: USING TTL 0, which also overrides a table's
// default_time_to_live. Each write sets a fresh TTL, so there is never a
// remaining TTL to carry over. A CompareAndDelete leaves a tombstone for
// gc_grace_seconds.
//
// Cassandra caps TTLs at 20 years (MaxTTL), and Cassandra 5.0 in its
// default storage_compatibility_mode (and every earlier version) keeps
// expirations as 32-bit seconds: it refuses a TTL that ends after
// 2038-01-19T03:14:06Z. The Store rejects a ttl ending after
// 2038-01-18T03:14:06Z with an error matching idem.ErrInvalid before
// sending anything; the day between leaves room for a server clock ahead of
// the client's. It does not shorten such a TTL on the server instead: the
// server would delete the row before its ExpiresAt, and a claim could
// vanish while its owner still works.
//
// # Unknown outcomes
//
// A lightweight transaction can fail after it reached a coordinator:
// WriteTimeout of any write type (on protocol v5 a commit-phase timeout
// arrives as SIMPLE, not CAS), WriteFailure, CAS_WRITE_UNKNOWN, Unavailable
// or a read timeout between Paxos rounds, a client timeout, a closed
// connection, a context that expired while the driver waited. The write may
// have applied, and the Store never sends it again: neither the driver
// (each statement is marked Idempotent(false), whatever
// ClusterConfig.DefaultIdempotence says) nor the Store itself. Between the
// first attempt and a resend the key can be deleted and created again so
// that the write's condition holds once more, and the resend would apply a
// second time, or delete a newcomer's row.
//
// The Store settles the outcome by proof only, with one read of the row at
// the serial consistency, which finishes or forecloses any Paxos round of
// the write that a replica accepted:
//
//   - The row carries the write's own write_id (16 random bytes per call,
//     written with the item): the write applied and the call succeeds,
//     even if the item has expired since.
//   - Anything else (the row absent, as the condition requires, another
//     write's, expired) proves nothing: the write may have applied and been
//     overwritten or deleted since, or, after a client-side timeout, still
//     be on its way, because the coordinator may go on working on a request
//     the client has given up on, and apply it after the read. The call
//     returns an error matching idem.ErrUnknownOutcome, naming the key
//     and wrapping the driver's error, as it does when the read fails three
//     times.
//   - A CompareAndDelete leaves nothing to recognise: its unknown outcome is
//     reported at once, without a read. (idem's claims never delete: a
//     released claim is a tombstone written by CompareAndSwap, which its
//     write_id settles.)
//
// Every idem helper can be retried on an unknown outcome, and settles it by
// its own tokens. The settling read runs even if the caller's context is
// done, detached from its cancellation and bounded by WithResolveTimeout
// (10s). Errors that prove nothing was executed (no connection, syntax,
// invalid, unauthorized, overloaded, bootstrapping, a value the driver
// cannot marshal, a context already done) are returned as they are.
// Settling relies on linearizable SERIAL reads: do not run the Paxos
// variants "*_without_linearizable_reads*" or set
// cassandra.unsafe.disable-serial-reads-linearizability.
//
// With these rules the five operations are linearizable under lost
// responses, timeouts and cut connections, counting an unknown outcome as
// "may or may not have happened" (TestLinearizableLossyWire checks it
// through a proxy that loses responses and cuts connections).
//
// # Consistency and datacenters
//
// The defaults, SERIAL for Paxos and QUORUM for the commit, are linearizable
// across datacenters. WithSerialConsistency(gocql.LocalSerial) with
// WithCommitConsistency(gocql.LocalQuorum) is linearizable only if every
// writer of a key is in one datacenter: LOCAL_SERIAL in two datacenters runs
// two independent Paxos instances on one row. One option sets the level of
// the writes and of the settling reads, and New rejects a serial read
// consistency that differs from it, so SERIAL and LOCAL_SERIAL never mix.
// Get reads at the serial level by default; WithReadConsistency can make it a
// QUORUM or LOCAL_QUORUM read, which may miss a write still in its Paxos
// round (the writes never rely on Get). The README says how to set up the
// session and the cluster (token-aware policy, paxos_variant: v2).
//
// # Never mix lightweight transactions and plain writes
//
// Write the table only through the Store. A plain INSERT, UPDATE or DELETE
// is timestamped by a clock, not by a Paxos ballot, and does not see a Paxos
// round in flight: with any clock skew it can overwrite a later transaction
// or be overwritten by an earlier one, which breaks claims, fencing and
// own-write recognition. Remove a key with CompareAndDelete; empty the table
// with TRUNCATE or DROP while nothing runs. Plain reads are harmless, but only
// SERIAL reads see transactions still in their Paxos round.
//
// # ScyllaDB
//
// The Store reads result rows by column name, so ScyllaDB's shape of an LWT
// result works too, but it is not tested against ScyllaDB; the README says
// what to check first and why its driver cannot replace the v2 one.
//
// # Limits
//
// Keys are non-empty UTF-8 of at most 65535 bytes (a partition key's limit);
// values are at most 1 MiB unless WithMaxValueSize says otherwise (up to
// 15 MiB: a mutation must fit in half a commit log segment, and every Paxos
// round reads and writes the whole row, so keep values small). idem.Do
// keeps its result after a record header of about 60 bytes, as it is: with
// the default limit the largest result it stores is 786,384 bytes for a
// []byte (base64 in JSON) and 1,048,514 for an ASCII string
// (TestLargestResult); beyond that Do stores a
// permanent idem.CodeResultNotStored answer, so fn does not run again.
// Larger input, a negative version, and a ttl over 20 years or ending after
// 2038-01-18T03:14:06Z are rejected with an error matching idem.ErrInvalid
// before anything is sent.
//
// # Fencing your own rows
//
// A claim fences the idem record only. A worker that stalls past its lease
// and wakes after a takeover still has fn's writes to make, and a write to
// the caller's own table would land over the new owner's. FencedUpdate
// fences a row of the caller's own table: the table has a bigint fence
// column, and each write to the row is one lightweight transaction bound
// with the claim's idem.Lease.Fence,
//
//	UPDATE ks.t SET ..., fence = ? WHERE <the row's whole primary key> IF fence <= ?
//
// refused with a *FencedError (ErrFenced) that carries the row's fence.
//
// What is guaranteed: once a write with fence f has landed on a row, no
// write with a lower fence lands on it, as long as the row is written only
// this way and not deleted (an absent row takes any fence). The writes of
// one claim share its fence and all land, so a claim may write its row
// more than once, and may send a write whose outcome is unknown again
// (before it writes the row anything else). Fencing orders writes; it
// does not undo them: a stalled owner's write that landed before the
// takeover's is overwritten by it, not refused (A then B: both land). The
// bound is Lease.Fence's: fences rise by construction within a record's
// life, and across a record deleted or expired and claimed afresh as long
// as the claimers' clocks differ by less than the old record's age (for
// Do, Claim and Once at least the retention).
//
// Single partition only. A lightweight transaction, and a conditional
// BATCH as well, covers one partition of one table, so Cassandra cannot
// commit the caller's row and the idem record atomically: they are in
// different partitions. A worker can write its row and crash before Do
// stores its result; the takeover runs fn again with a higher fence, and
// its write lands over the first. So write state, not deltas (the entry's
// amount, not "add 10 to the balance"), and the second write leaves the
// row as one would; or keep fn's result in the caller's own partition,
// next to the row, and have fn read it at SERIAL before acting again. Each
// FencedUpdate writes one row: several rows are several fenced writes,
// each ordered on its own, none atomic with another.
//
// A row that is absent or has a NULL fence (written before the column was
// fenced) counts as fence 0, below every fence: the first fenced write
// takes it. Cost: a write to a row that has a fence, landing or refused,
// is one LWT, one round trip from the client, and inside the cluster four
// round trips between the coordinator and the replicas with Paxos v1
// (prepare, read, propose, commit), two with paxos_variant: v2. An absent
// or NULL-fenced row takes two LWTs: the first statement's refusal, then
// the same write IF fence = null. An unknown outcome is reported as
// idem.ErrUnknownOutcome and never resent by FencedUpdate or the driver.
// The rule of the Store's table holds for the caller's: write a fenced row
// only with lightweight transactions, since a plain write does not see a
// Paxos round and can undo the fencing.
//
// # Readiness
//
// New sends nothing, so a missing table would show only at the first
// request. Call Store.Check at startup or from a readiness probe: it reads
// system_schema to confirm that the keyspace and the table exist with the
// primary key and column types above. Its errors match
// ErrKeyspaceNotFound, ErrTableNotFound or ErrSchemaMismatch, name
// keyspace.table and the hosts, and say what to run: CreateKeyspace
// (SimpleStrategy, for development; production keyspaces are the
// operator's) and CreateTable. For unit tests on memstore,
// memstore.WithLimits(memstore.CassandraLimits) refuses the keys, values
// and ttls this Store refuses.
package cassandra
