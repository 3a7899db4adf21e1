// Package idemkafka consumes Kafka topics with franz-go
// (github.com/twmb/franz-go/pkg/kgo) and runs a record handler at most once
// per record, on any idem.Store, with idem.Once: a record redelivered after
// a crash or a rebalance, or an event produced twice, is skipped.
//
// Kafka delivers at least once. A consumer group resumes each partition at
// its last committed offset, so every record after it comes again when a
// consumer dies between its work and its commit, when a partition moves to
// another consumer before the commit, or when offsets are reset; a producer
// that retries a send (or an outbox relayed twice) writes the same event
// again at a new offset. Kafka's transactions cover reading and writing
// Kafka, not a write to DynamoDB or Cassandra. What happens to each:
//
//   - A consumer dies after fn and before the commit: idem.Once stored the
//     outcome first, so the redelivered record is a replay (WithOnReplay
//     reports it), committed without running fn.
//   - A rebalance while a batch is handled: Consume's client blocks
//     rebalances while it holds a fetch (ClientOpts). When one waits,
//     Consume starts no new record, lets those in flight finish, commits
//     them, rewinds each partition to its first record not done, and only
//     then lets the partitions go: the next owner starts after the last
//     record done here, and nothing done is delivered again.
//   - A handler that outlives the group's rebalance timeout gets its
//     consumer thrown out of the group, and its partitions reach another
//     consumer mid-work. The record's key is still claimed there (its lease
//     extended while fn runs): the new owner finds it in progress, tries
//     again with backoff, and replays it once the first is done.
//   - A consumer dies mid-handler: its claim's lease (WithLease) holds the
//     next owner off until it runs out, then fn runs again. Make its side
//     effects idempotent where a re-run after a crash would hurt, with the
//     key passed on (idem.LeaseFrom(ctx).Key()).
//   - The same event produced twice: key it by an event ID the producer
//     sets (WithKey(Header("event-id")), or a field of the value) and the
//     second is skipped. The default key, Offset (topic, partition and
//     offset), tells the two copies apart.
//   - fn fails: the key is released, the record left uncommitted, and its
//     partition rewound to it and paused for a backoff (WithBackoff,
//     doubling with each failure in a row), then fetched again from it:
//     the rest of that partition waits, the other partitions go on, and
//     so does their commit. It is tried again until it succeeds or fails
//     permanently, here or at the partition's next owner. A permanent error
//     (idem.Permanent) is stored, logged and committed: Kafka has no
//     dead-letter queue, so return one for a record that can never succeed,
//     or it holds its partition for good.
//
// # The guarantee
//
// fn's effects happen at most once per record key while the key's record is
// kept (WithRetention, 24 hours by default, counted from completion). fn
// runs again, after the claim's lease, for a record whose outcome was never
// stored: its consumer died mid-handler, or fn succeeded and the store then
// failed to store the outcome (idem never releases a key whose fn
// succeeded: the claim holds until its lease passes). That is
// effectively once for work that is idempotent across such a crash. Delivery
// stays at least once: every record is handled (done) before its offset is
// committed, and none after a record not done is committed. Within a
// partition, records are handled in offset order, each after the one
// before it is done, on whichever consumer owns the partition; partitions
// run concurrently (WithConcurrency). A record delivered again after its
// key's retention runs fn again: keep the retention above the longest a
// group may fall behind or have its offsets reset.
//
// # Keys
//
// A key is the prefix (WithKeyPrefix; Consume's default is
// "idemkafka/GROUP/") and the key function's answer. Offset names a record
// for as long as its topic lives; a topic deleted and created again starts
// its offsets over, so give it a new prefix (or key by event ID). Two
// consumer groups doing different work on one topic must have different
// prefixes: Consume's default has the group in it.
//
// # Use
//
// Consume is the poll loop; give its client ClientOpts' options:
//
//	cl, err := kgo.NewClient(append([]kgo.Opt{
//		kgo.SeedBrokers("127.0.0.1:9092"),
//		kgo.ConsumerGroup("order-projector"),
//		kgo.ConsumeTopics("order-events"),
//	}, idemkafka.ClientOpts()...)...)
//	store, err := dynamo.New(dynamodb.NewFromConfig(cfg), "idem")
//	err = idemkafka.Consume(ctx, cl, store, applyOrderEvent,
//		idemkafka.WithKey(idemkafka.Header("event-id")))
//
// Handler is the wrapper alone, for a poll loop of your own: Handle says
// whether a record may be committed. Commit only up to the first record it
// refuses on each partition, and rewind the partition to that record.
package idemkafka
