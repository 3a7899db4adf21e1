package idemkafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// Func handles one record.
type Func func(ctx context.Context, r *kgo.Record) error

// Handler runs a Func at most once per record key (the record's topic,
// partition and offset, or WithKey) on an idem.Store, with idem.Once, and
// says which records may be committed. Consume uses one; use it directly
// in a poll loop of your own. It is safe for concurrent use.
type Handler struct {
	store idem.Store
	fn    Func
	cfg   *config
}

// NewHandler returns a Handler that runs fn on s. It rejects a nil store or
// handler, and invalid options, with an error matching idem.ErrInvalid.
// WithConcurrency and WithBackoff are Consume's and have no effect here.
func NewHandler(s idem.Store, fn Func, opts ...Option) (*Handler, error) {
	if keyproto.NilStore(s) || fn == nil {
		return nil, invalid("NewHandler needs a store and a handler")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Handler{store: s, fn: fn, cfg: cfg}, nil
}

// Handle runs fn for r unless r's key was handled before, and reports
// whether r may be committed:
//
//   - fn returned nil, now or on an earlier delivery (a replay;
//     WithOnReplay reports it): commit is true and err nil. The outcome is
//     stored before Handle returns, so a consumer that dies before its
//     commit leaves a record whose redelivery is a replay.
//   - fn returned a permanent error (idem.Permanent), now or before: it is
//     stored, commit is true and err is the *idem.PermanentError, since a
//     retry would fail the same way.
//   - r has no key (ErrNoKey, or the key function's error) or a key idem
//     refuses (idem.ErrInvalid): commit is true and err says why; fn did
//     not run, and would not on any delivery.
//   - any other error of fn (one matching idem.ErrInvalid included), the
//     store failing, or r's key claimed by another consumer right now
//     (idem.ErrInProgress, such as the partition's previous owner still
//     running it): commit is false, and r must be delivered again: do not
//     commit it nor any later record of its partition. The key is released
//     for that delivery when fn failed; when fn succeeded but the store
//     failed to store its outcome, the key is not released: the claim
//     holds until its lease passes, and the delivery after that runs fn
//     again, as after a crash.
func (h *Handler) Handle(ctx context.Context, r *kgo.Record) (commit bool, err error) {
	key, err := h.cfg.key(r)
	if err == nil && key == "" {
		err = ErrNoKey
	}
	if err != nil {
		return true, err
	}
	var called bool
	ran, err := idem.Once(ctx, h.store, key, func(ctx context.Context) error {
		called = true
		return h.fn(ctx, r)
	}, h.cfg.idemOptions()...)
	if _, ok := errors.AsType[*idem.PermanentError](err); ok {
		return true, err
	}
	if errors.Is(err, idem.ErrInvalid) && !called {
		return true, err // idem refused the key: no delivery can do better
	}
	if err != nil {
		return false, err
	}
	if !ran && h.cfg.onReplay != nil {
		h.cfg.onReplay(ctx, r, h.cfg.prefix+key)
	}
	return true, nil
}
