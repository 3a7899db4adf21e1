package idemlambda

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// SQS returns a handler for an SQS event source mapping that processes each
// record at most once, with partial batch responses. Enable them on the
// mapping (FunctionResponseTypes: ReportBatchItemFailures), or SQS ignores
// the response and redelivers the whole batch on any error.
//
// Records are handled in order, each under its own key (the message ID,
// or WithMessageKey), with idem.Once:
//
//   - A record handled before, in this batch or an earlier one, is skipped
//     (WithOnReplay reports it) and counts as a success.
//   - fn returning nil: success, remembered for the retention
//     (WithRetention).
//   - fn returning an error: the key is released and the record is listed
//     in BatchItemFailures, so SQS redelivers it after its visibility
//     timeout (and to the dead-letter queue after maxReceiveCount).
//   - fn returning a permanent error (idem.Permanent): stored and logged;
//     the record counts as handled and is not redelivered, since a retry
//     would fail the same way.
//   - A record whose key another invocation is handling right now is
//     listed as a failure: by its redelivery, the other one has finished.
//   - When the invocation's context ends, the records not yet started are
//     listed as failures.
//   - On a FIFO queue (the source ARN ends in ".fifo"), processing stops at
//     the first failure and every later record is listed too, so that
//     messages of a group are never handled out of order.
//
// The returned error is always nil: every failure is a batch item failure.
// Options: every Option, WithMessageKey, WithLogger and WithValidation (of
// an events.SQSMessage). SQS rejects a nil store or handler and invalid options with
// an error matching idem.ErrInvalid.
func SQS(s idem.Store, fn func(ctx context.Context, msg events.SQSMessage) error, opts ...SQSOption) (func(context.Context, events.SQSEvent) (events.SQSEventResponse, error), error) {
	if keyproto.NilStore(s) || fn == nil {
		return nil, invalid("SQS needs a store and a handler")
	}
	cfg, v, err := newSQSConfig(opts)
	if err != nil {
		return nil, err
	}
	cfg.named("idemlambda.SQS")
	h := &sqsHandler{store: s, cfg: cfg, validation: v, keyOf: cfg.messageKey, required: cfg.isRequired(true), fn: fn}
	if h.keyOf == nil {
		h.keyOf = func(m events.SQSMessage) (string, error) { return m.MessageId, nil }
	}

	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		var resp events.SQSEventResponse
		fail := func(m events.SQSMessage) {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
		}
		for i, m := range ev.Records {
			if ctx.Err() != nil {
				for _, rest := range ev.Records[i:] {
					fail(rest)
				}
				break
			}
			err := h.handle(ctx, m)
			if err == nil {
				continue
			}
			cfg.logger.WarnContext(ctx, "idemlambda: SQS record failed; it will be redelivered",
				"messageId", m.MessageId, "err", err)
			fail(m)
			if strings.HasSuffix(m.EventSourceARN, ".fifo") {
				for _, rest := range ev.Records[i+1:] {
					fail(rest)
				}
				break
			}
		}
		return resp, nil
	}, nil
}

// sqsHandler is what SQS's handler needs for each record.
type sqsHandler struct {
	store      idem.Store
	cfg        *sqsConfig
	validation validation[events.SQSMessage]
	keyOf      func(events.SQSMessage) (string, error)
	required   bool
	fn         func(context.Context, events.SQSMessage) error
}

// handle handles one record; an error means "redeliver it".
func (h *sqsHandler) handle(ctx context.Context, m events.SQSMessage) error {
	cfg, fn := h.cfg, h.fn
	k, err := h.keyOf(m)
	if err != nil {
		return fmt.Errorf("idemlambda: reading the key of message %s: %w", m.MessageId, err)
	}
	if k == "" {
		if h.required {
			return fmt.Errorf("message %s: %w", m.MessageId, ErrNoKey)
		}
		return fn(ctx, m)
	}
	fp, err := h.validation.fingerprint(m)
	if err != nil {
		return err
	}
	ran, err := idem.Once(ctx, h.store, k, func(ctx context.Context) error { return fn(ctx, m) }, cfg.idemOptions(ctx, fp)...)
	if replayed(ran, err) {
		cfg.replayed(ctx, k)
	}
	if perm, ok := errors.AsType[*idem.PermanentError](err); ok {
		cfg.logger.ErrorContext(ctx, "idemlambda: SQS record failed permanently; it will not be redelivered",
			"messageId", m.MessageId, "key", cfg.prefix+k, "err", err, "replayed", perm.Replayed)
		return nil
	}
	return err
}

// DeduplicationID is a key function for WithMessageKey: the message's
// MessageDeduplicationId, set on every message of a FIFO queue. Two
// messages sent with the same deduplication ID more than five minutes
// apart are both delivered by SQS; this key handles only the first.
func DeduplicationID(m events.SQSMessage) (string, error) {
	id := m.Attributes["MessageDeduplicationId"]
	if id == "" {
		return "", fmt.Errorf("idemlambda: message %s has no MessageDeduplicationId (not from a FIFO queue?)", m.MessageId)
	}
	return id, nil
}
