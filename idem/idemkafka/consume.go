package idemkafka

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/keyproto"
)

// ClientOpts returns the kgo options a client given to Consume must have,
// to append to its own (kgo.SeedBrokers, kgo.ConsumerGroup,
// kgo.ConsumeTopics, ...):
//
//   - kgo.DisableAutoCommit: Consume commits, and only what is done.
//   - kgo.BlockRebalanceOnPoll: no partition is revoked while its records
//     are handled and committed, so Consume never commits for a partition
//     it no longer owns, and the next owner starts after every record
//     done here.
//   - kgo.OnPartitionsCallbackBlocked with Consume's hook: when a rebalance
//     waits for the batch, Consume starts no new record, lets those in
//     flight finish, commits, and lets the rebalance go on.
//
// Consume refuses a client without them. Do not set
// OnPartitionsCallbackBlocked yourself after them.
func ClientOpts() []kgo.Opt {
	return []kgo.Opt{kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(), kgo.OnPartitionsCallbackBlocked(rebalanceBlocked)}
}

// running is the session of each client that a Consume call polls.
var running sync.Map // *kgo.Client → *session

// rebalanceBlocked is the OnPartitionsCallbackBlocked hook of ClientOpts:
// a rebalance waits for the client's current batch.
func rebalanceBlocked(_ context.Context, cl *kgo.Client) {
	if s, ok := running.Load(cl); ok {
		s.(*session).rebalance(cl)
	}
}

// session says when a rebalance waits for the batch being handled.
type session struct {
	logger *slog.Logger
	mu     sync.Mutex
	wanted chan struct{} // closed when a rebalance waits; a new one per poll
}

func (s *session) arm() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wanted = make(chan struct{})
	return s.wanted
}

func (s *session) rebalance(cl *kgo.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wanted == nil {
		return // before Consume's first poll: it holds no batch yet
	}
	select {
	case <-s.wanted:
	default:
		close(s.wanted)
		group, _ := cl.OptValue(kgo.ConsumerGroup).(string)
		s.logger.Info(RebalanceWaits, "group", group)
	}
}

// RebalanceWaits is the message Consume logs, at level Info, when a
// rebalance of its group waits for the batch in flight: it starts no new
// record, and lets the rebalance go on once the records in flight are done
// and committed.
const RebalanceWaits = "idemkafka: a rebalance waits for the batch in flight"

// Consume polls cl until ctx ends, and runs fn at most once per record key
// (Offset, or WithKey) with idem.Once on s, through a Handler. It handles
// each fetch partition by partition, up to WithConcurrency partitions at
// once; the records of one partition in offset order, each only after the
// one before it is done. A record is done when Handler.Handle says it may
// be committed: fn returned nil (now or on an earlier delivery), or failed
// permanently (idem.Permanent; logged), or the record has no key, or a
// key idem refuses (idem.ErrInvalid before fn runs; logged).
//
// A record that fails otherwise (fn's error, the store unreachable, its
// key claimed by another consumer) stays uncommitted with those after it
// in the fetch, and its partition is rewound to it (kgo's SetOffsets) and
// paused (PauseFetchPartitions) for a backoff doubling from WithBackoff's
// first to its limit with each failure of the partition in a row; then it
// is fetched and tried again, here or at the partition's next owner. The
// rest of its partition waits; the other partitions go on. A record not
// started when ctx ends or a rebalance waits is rewound to (not paused),
// and so are the records of a poll that returns as ctx ends.
// When a rebalance waits, Consume starts no new record, lets the records
// in flight finish, commits and rewinds, then lets the rebalance go on.
//
// After each fetch, Consume commits (CommitRecords, synchronously, before
// the rebalance it blocked may go on) the last done record of each
// partition: never a record that is not done, nor one after it. A commit
// that fails is logged: the records are done, a redelivery is a replay,
// and the next commit covers them.
//
// fn's context is derived from ctx: when ctx ends, a record whose fn returns an error is
// released and stays uncommitted, to be delivered again; one whose fn
// returns nil is stored and committed (Consume's last commit runs after
// ctx ended, with a timeout of its own).
//
// cl must consume in a consumer group with ClientOpts' options, and no
// other Consume may run on it. Consume returns nil when ctx ends, and an
// error when cl is closed. It starts no goroutine that outlives it. It
// rejects a nil client, store or handler, a client without a group or
// without ClientOpts' options, and invalid options, with an error matching
// idem.ErrInvalid.
func Consume(ctx context.Context, cl *kgo.Client, s idem.Store, fn Func, opts ...Option) error {
	if cl == nil || keyproto.NilStore(s) || fn == nil {
		return invalid("Consume needs a client, a store and a handler")
	}
	if err := checkClient(cl); err != nil {
		return err
	}
	h, err := NewHandler(s, fn, opts...)
	if err != nil {
		return err
	}
	if !h.cfg.prefixSet {
		group, _ := cl.OptValue(kgo.ConsumerGroup).(string)
		h.cfg.prefix = DefaultKeyPrefix + idem.JoinKey(group) + "/"
	}
	sess := &session{logger: h.cfg.logger}
	if _, busy := running.LoadOrStore(cl, sess); busy {
		return invalid("another Consume polls the client")
	}
	defer running.Delete(cl)
	c := &consumer{cl: cl, h: h, cfg: h.cfg, retries: map[topicPartition]*retry{}}
	defer c.resumeAll()
	for {
		wanted := sess.arm()
		fs := cl.PollFetches(ctx)
		switch {
		case fs.IsClientClosed():
			return fmt.Errorf("idemkafka: polling: %w", kgo.ErrClientClosed)
		case ctx.Err() != nil:
			// What the poll brought is not handled: rewind it, so that a
			// client used again (or a commit of its uncommitted offsets)
			// does not pass over it.
			parts := byPartition(fs)
			for _, p := range parts {
				p.next = p.recs[0]
			}
			c.rewind(parts)
			cl.AllowRebalance()
			return nil
		}
		c.fetchErrors(ctx, fs)
		c.batch(ctx, fs, wanted)
		cl.AllowRebalance()
	}
}

// checkClient refuses a client that Consume cannot commit for safely.
func checkClient(cl *kgo.Client) error {
	group, _ := cl.OptValue(kgo.ConsumerGroup).(string)
	noAutocommit, _ := cl.OptValue(kgo.DisableAutoCommit).(bool)
	blocks, _ := cl.OptValue(kgo.BlockRebalanceOnPoll).(bool)
	hook := cl.OptValue(kgo.OnPartitionsCallbackBlocked)
	switch {
	case group == "":
		return invalid("the client consumes in no group (kgo.ConsumerGroup)")
	case !noAutocommit:
		return invalid("the client autocommits, which commits records not done: give it ClientOpts()")
	case !blocks:
		return invalid("the client lets a rebalance revoke partitions mid-batch: give it ClientOpts()")
	case hook == nil || reflect.ValueOf(hook).Pointer() != reflect.ValueOf(rebalanceBlocked).Pointer():
		return invalid("the client's OnPartitionsCallbackBlocked is not Consume's: give it ClientOpts() last")
	}
	return nil
}

// fetchErrors logs the errors of a fetch, and pauses for the shortest
// backoff after one that brought nothing else, so a broker that keeps
// failing is not polled in a tight loop.
func (c *consumer) fetchErrors(ctx context.Context, fs kgo.Fetches) {
	errs := fs.Errors()
	for _, e := range errs {
		c.cfg.logger.WarnContext(ctx, "idemkafka: fetch failed; the client tries again", "topic", e.Topic, "partition", e.Partition, "err", e.Err)
	}
	if len(errs) == 0 || fs.NumRecords() > 0 {
		return
	}
	t := time.NewTimer(c.cfg.minBackoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// consumer is what Consume needs for each fetch.
type consumer struct {
	cl  *kgo.Client
	h   *Handler
	cfg *config

	mu      sync.Mutex
	retries map[topicPartition]*retry // partitions whose record failed
	closed  bool                      // Consume has returned
}

type topicPartition struct {
	topic     string
	partition int32
}

// retry is the backoff of a partition whose next record failed: the
// partition is paused until the pause has passed, then fetched again from
// that record.
type retry struct {
	pause  time.Duration // the last pause; the next doubles it
	until  time.Time
	resume *time.Timer
}

// partition is the records of one partition in a fetch, in offset order,
// and what came of them.
type partition struct {
	tp     topicPartition
	recs   []*kgo.Record
	last   *kgo.Record // the last record done, or nil
	next   *kgo.Record // the first record not done, or nil
	failed bool        // next failed (rather than not being started)
}

// batch handles a fetch, commits what is done and rewinds each partition
// to its first record not done.
func (c *consumer) batch(ctx context.Context, fs kgo.Fetches, wanted <-chan struct{}) {
	parts := byPartition(fs)
	if len(parts) == 0 {
		return
	}
	sem := make(chan struct{}, c.cfg.concurrency)
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c.partition(ctx, p, wanted)
		})
	}
	wg.Wait()
	c.commit(ctx, parts)
	c.rewind(parts)
	c.pauseFailed(parts)
}

// rewind sets each partition's fetch offset back to its first record not
// done, so that it is delivered again.
func (c *consumer) rewind(parts []*partition) {
	rewind := map[string]map[int32]kgo.EpochOffset{}
	for _, p := range parts {
		if p.next == nil {
			continue
		}
		if rewind[p.next.Topic] == nil {
			rewind[p.next.Topic] = map[int32]kgo.EpochOffset{}
		}
		rewind[p.next.Topic][p.next.Partition] = kgo.EpochOffset{Epoch: p.next.LeaderEpoch, Offset: p.next.Offset}
	}
	c.cl.SetOffsets(rewind)
}

// pauseFailed pauses the fetching of each partition whose record failed,
// for its pause: the other partitions go on meanwhile.
func (c *consumer) pauseFailed(parts []*partition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range parts {
		rt := c.retries[p.tp]
		if !p.failed || rt == nil || rt.resume != nil {
			continue
		}
		tps := map[string][]int32{p.tp.topic: {p.tp.partition}}
		c.cl.PauseFetchPartitions(tps)
		c.resumeAt(rt, tps)
	}
}

// resumeAt resumes the partition of rt once its pause has passed (again
// later, if it failed anew meanwhile). c.mu is held.
func (c *consumer) resumeAt(rt *retry, tps map[string][]int32) {
	rt.resume = time.AfterFunc(time.Until(rt.until), func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch {
		case c.closed: // resumeAll has resumed it
		case time.Now().Before(rt.until):
			c.resumeAt(rt, tps)
		default:
			rt.resume = nil
			c.cl.ResumeFetchPartitions(tps)
		}
	})
}

// resumeAll stops the pauses' timers and resumes their partitions, as
// Consume returns: a client used again is not left paused, and no timer
// acts on it after.
func (c *consumer) resumeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for tp, rt := range c.retries {
		if rt.resume != nil {
			rt.resume.Stop()
			c.cl.ResumeFetchPartitions(map[string][]int32{tp.topic: {tp.partition}})
		}
	}
}

// byPartition groups a fetch's records by partition, in offset order.
func byPartition(fs kgo.Fetches) []*partition {
	type tp struct {
		topic string
		p     int32
	}
	index := map[tp]*partition{}
	var parts []*partition
	fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) == 0 {
			return
		}
		k := tp{ftp.Topic, ftp.Partition}
		p := index[k]
		if p == nil {
			p = &partition{tp: topicPartition{ftp.Topic, ftp.Partition}}
			index[k] = p
			parts = append(parts, p)
		}
		p.recs = append(p.recs, ftp.Records...)
	})
	return parts
}

// partition handles p's records one after the other until one is not
// done. A partition still pausing after a failure (its records fetched
// before the pause) waits for its pause to pass.
func (c *consumer) partition(ctx context.Context, p *partition, wanted <-chan struct{}) {
	if c.pausing(p.tp) {
		p.next = p.recs[0]
		return
	}
	for _, r := range p.recs {
		if stopped(ctx, wanted) {
			p.next = r
			return
		}
		if !c.record(ctx, p.tp, r) {
			p.next, p.failed = r, true
			return
		}
		p.last = r
	}
}

func stopped(ctx context.Context, wanted <-chan struct{}) bool {
	select {
	case <-ctx.Done():
		return true
	case <-wanted:
		return true
	default:
		return false
	}
}

// pausing reports whether tp's last failure is still in its pause.
func (c *consumer) pausing(tp topicPartition) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	rt := c.retries[tp]
	return rt != nil && time.Now().Before(rt.until)
}

// record handles r, of partition tp, and reports whether it is done. One
// that failed is tried again after a pause, doubling from WithBackoff's
// first to its limit with each failure of the partition in a row.
func (c *consumer) record(ctx context.Context, tp topicPartition, r *kgo.Record) bool {
	commit, err := c.h.Handle(ctx, r)
	c.mu.Lock()
	defer c.mu.Unlock()
	if commit {
		if rt := c.retries[tp]; rt != nil && rt.resume == nil {
			delete(c.retries, tp)
		} else if rt != nil { // its timer still runs: resumeAll must see it
			rt.pause, rt.until = 0, time.Time{}
		}
		if err != nil {
			c.cfg.logger.ErrorContext(ctx, "idemkafka: record failed for good; it is committed",
				"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		}
		return true
	}
	rt := c.retries[tp]
	if rt == nil {
		rt = &retry{}
		c.retries[tp] = rt
	}
	rt.pause = min(max(2*rt.pause, c.cfg.minBackoff), c.cfg.maxBackoff)
	rt.until = time.Now().Add(rt.pause)
	c.cfg.logger.WarnContext(ctx, "idemkafka: record failed; its partition is paused and it is tried again",
		"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "in", rt.pause, "err", err)
	return false
}

// commit commits the last done record of each partition, even if ctx has
// just ended: those records are done.
func (c *consumer) commit(ctx context.Context, parts []*partition) {
	var last []*kgo.Record
	for _, p := range parts {
		if p.last != nil {
			last = append(last, p.last)
		}
	}
	if len(last) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := c.cl.CommitRecords(ctx, last...); err != nil {
		c.cfg.logger.WarnContext(ctx, "idemkafka: committing handled records failed; their redelivery will be replayed", "records", len(last), "err", err)
	}
}

// cleanupTimeout bounds a commit made after ctx ended.
const cleanupTimeout = 10 * time.Second
