package idemsqs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// Client is the part of *sqs.Client that Consume uses, so a wrapper or a
// client of another SQS-compatible service fits.
type Client interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Consume receives messages from the queue at queueURL until ctx ends, and
// runs fn at most once per message key (the message ID, or WithKey) with
// idem.Once on s. It handles each received batch in order, one message at a
// time:
//
//   - fn returning nil, or a message whose key was handled before (a
//     redelivery, a duplicate; WithOnReplay reports it): the message is
//     deleted. It is deleted only after idem.Once has stored the outcome,
//     so a consumer that dies in between leaves a message whose redelivery
//     is skipped.
//   - fn returning a permanent error (idem.Permanent): stored, logged and
//     deleted, since a retry would fail the same way.
//   - fn returning any other error, the key function failing, or the key
//     being handled by another consumer right now (idem.ErrInProgress): the
//     message is left in the queue, and SQS redelivers it after its
//     visibility timeout (to the dead-letter queue after the redrive
//     policy's maxReceiveCount).
//
// While a batch is handled, Consume extends the visibility of its messages
// not yet done every third of the visibility timeout (WithVisibility), so a
// slow fn is not redelivered to another consumer mid-work. A message left
// in the queue is no longer extended.
//
// Consume returns nil when ctx ends, or the error of a receive that failed
// after the SDK's retries. It starts no goroutine that outlives it. It
// rejects a nil client, store or handler, an empty URL, and invalid options
// with an error matching idem.ErrInvalid.
func Consume(ctx context.Context, c Client, queueURL string, s idem.Store, fn func(ctx context.Context, m types.Message) error, opts ...Option) error {
	if c == nil || queueURL == "" || keyproto.NilStore(s) || fn == nil {
		return invalid("Consume needs a client, a queue URL, a store and a handler")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	cn := &consumer{client: c, url: queueURL, store: s, fn: fn, cfg: cfg}
	for ctx.Err() == nil {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(queueURL),
			MaxNumberOfMessages:         cfg.maxMessages,
			VisibilityTimeout:           seconds(cfg.visibility),
			WaitTimeSeconds:             seconds(cfg.wait),
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("idemsqs: receiving from %s: %w", queueURL, err)
		case len(out.Messages) == 0 && cfg.wait == 0:
			// Short polling answers at once: pause before asking again.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(ShortPollPause):
			}
		}
		cn.batch(ctx, out.Messages)
	}
	return nil
}

// consumer is what Consume needs for each batch.
type consumer struct {
	client Client
	url    string
	store  idem.Store
	fn     func(context.Context, types.Message) error
	cfg    *config
}

// batch handles the messages of one receive in order, extending the
// visibility of those not yet done until each is done.
func (cn *consumer) batch(ctx context.Context, msgs []types.Message) {
	if len(msgs) == 0 {
		return
	}
	pending := &pendingSet{handles: map[int]*string{}}
	for i, m := range msgs {
		pending.handles[i] = m.ReceiptHandle
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { cn.extend(ctx, pending, stop) })
	defer wg.Wait()
	defer close(stop)

	for i, m := range msgs {
		if ctx.Err() != nil {
			return // the rest become visible again after their timeout
		}
		done := cn.handle(ctx, m)
		pending.remove(i)
		if done {
			cn.delete(ctx, m)
		}
	}
}

// handle runs one message under idem.Once and reports whether it may be
// deleted.
func (cn *consumer) handle(ctx context.Context, m types.Message) bool {
	cfg, id := cn.cfg, aws.ToString(m.MessageId)
	k, err := cfg.key(m)
	if err == nil && k == "" {
		err = ErrNoKey
	}
	if err != nil {
		cfg.logger.WarnContext(ctx, "idemsqs: no key for the message; it will be redelivered", "messageId", id, "err", err)
		return false
	}
	ran, err := idem.Once(ctx, cn.store, k, func(ctx context.Context) error { return cn.fn(ctx, m) }, cfg.idemOptions()...)
	if perm, ok := errors.AsType[*idem.PermanentError](err); ok {
		cfg.logger.ErrorContext(ctx, "idemsqs: message failed permanently; it is deleted",
			"messageId", id, "key", cfg.prefix+k, "err", err, "replayed", perm.Replayed)
		return true
	}
	if err != nil {
		cfg.logger.WarnContext(ctx, "idemsqs: message failed; it will be redelivered", "messageId", id, "key", cfg.prefix+k, "err", err)
		return false
	}
	if !ran && cfg.onReplay != nil {
		cfg.onReplay(ctx, cfg.prefix+k)
	}
	return true
}

// delete deletes a handled message, even if ctx has just ended: its outcome
// is stored, and a redelivery would only be skipped.
func (cn *consumer) delete(ctx context.Context, m types.Message) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, err := cn.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(cn.url), ReceiptHandle: m.ReceiptHandle})
	if err != nil {
		cn.cfg.logger.WarnContext(ctx, "idemsqs: deleting a handled message failed; its redelivery will be skipped",
			"messageId", aws.ToString(m.MessageId), "err", err)
	}
}

// extend sets the visibility timeout of the pending messages again every
// third of it, until stop is closed or ctx ends.
func (cn *consumer) extend(ctx context.Context, pending *pendingSet, stop <-chan struct{}) {
	t := time.NewTicker(cn.cfg.visibility / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
		}
		for _, h := range pending.list() {
			_, err := cn.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(cn.url), ReceiptHandle: h, VisibilityTimeout: seconds(cn.cfg.visibility),
			})
			if err != nil && ctx.Err() == nil {
				cn.cfg.logger.WarnContext(ctx, "idemsqs: extending a message's visibility failed; it may be redelivered while it is handled (the key stays claimed)", "err", err)
			}
		}
	}
}

// pendingSet is the receipt handles of a batch's messages not yet done.
type pendingSet struct {
	mu      sync.Mutex
	handles map[int]*string
}

func (p *pendingSet) remove(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.handles, i)
}

func (p *pendingSet) list() []*string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*string, 0, len(p.handles))
	for _, h := range p.handles {
		out = append(out, h)
	}
	return out
}

// cleanupTimeout bounds a delete made after ctx ended.
const cleanupTimeout = 10 * time.Second

func seconds(d time.Duration) int32 { return int32(d / time.Second) }

// Attribute is a key function for WithKey: the string message attribute
// name, such as an event ID the producer sets, so that an event sent twice
// as two messages (a producer's retry) is handled once. A message without
// it fails (and is redelivered, then dead-lettered).
func Attribute(name string) func(types.Message) (string, error) {
	return func(m types.Message) (string, error) {
		a, ok := m.MessageAttributes[name]
		if !ok || aws.ToString(a.StringValue) == "" {
			return "", fmt.Errorf("idemsqs: message %s has no attribute %q: %w", aws.ToString(m.MessageId), name, ErrNoKey)
		}
		return aws.ToString(a.StringValue), nil
	}
}
