// Package idemsqs consumes an Amazon SQS queue (aws-sdk-go-v2's sqs client)
// and runs a handler at most once per message, on any idem.Store: Consume
// receives with long polling, runs each message under idem.Once keyed by
// its message ID or a key function, deletes it only after the outcome is
// stored, extends its visibility while the handler runs, and leaves
// transient failures for SQS to redeliver.
//
// SQS delivers at least once. A message comes back when its consumer dies
// after the work and before the delete, when the work outlives the
// visibility timeout, and, on a standard queue, now and then for no reason;
// a producer that retries a send makes a second message with a new ID, and
// a FIFO queue's de-duplication lasts five minutes. What happens to each:
//
//   - A consumer dies after the handler and before the delete: idem.Once
//     stored the outcome first, so the redelivered copy is skipped and
//     deleted (WithOnReplay reports it).
//   - The handler runs longer than the visibility timeout: Consume extends
//     the visibility every third of it (WithVisibility), so the message is
//     not redelivered mid-work. If the extension fails (SQS unreachable) and
//     a copy reaches another consumer, the key is still claimed there: the
//     copy is left (idem.ErrInProgress) and skipped once the first is done.
//   - A consumer dies mid-handler: its claim's lease (WithLease) holds off
//     the redeliveries until it runs out, then the handler runs again. Make
//     its side effects idempotent where a re-run after a crash would hurt,
//     with the key passed on (idem.LeaseFrom(ctx).Key()).
//   - The same event sent as two messages: key it by an event ID the
//     producer sets (WithKey(Attribute("event-id")) or a field of the body)
//     and the second is skipped.
//   - The handler fails: the key is released and the message left; SQS
//     redelivers it after the visibility timeout, then to the dead-letter
//     queue after the redrive policy's maxReceiveCount. A permanent error
//     (idem.Permanent) is stored and the message deleted.
//
// Consume handles a batch's messages one at a time, in order; run several
// Consume calls for concurrency. On a FIFO queue, a message left for
// redelivery holds its group back, as SQS does. For a Lambda function fed by
// an event source mapping, use idemlambda.SQS instead: Lambda receives,
// deletes and extends for you.
//
//	store, err := dynamo.New(dynamodb.NewFromConfig(cfg), "idem")
//	err = idemsqs.Consume(ctx, sqs.NewFromConfig(cfg), queueURL, store,
//		func(ctx context.Context, m types.Message) error { return applyOrderEvent(ctx, m) },
//		idemsqs.WithKey(idemsqs.Attribute("event-id")),
//		idemsqs.WithKeyPrefix("orders/events/"))
package idemsqs
