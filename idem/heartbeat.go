package idem

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// heartbeat is a running KeepAlive. Nothing of it runs before the first
// extension is due: a timer starts the loop then, with a ticker from that
// tick on, so the extensions fall when a ticker started with the
// heartbeat would make them, and a call that ends sooner (most do: the
// first is due a third of the lease in) costs a timer, not a goroutine, a
// ticker and their channels.
type heartbeat struct {
	l      *Lease
	parent context.Context // the caller's: extensions keep its values
	every  time.Duration
	vctx   leaseCtx        // parent, carrying the lease
	ctx    context.Context // the work's: vctx, cancelled once the lease is lost
	cancel context.CancelCauseFunc
	first  *time.Timer    // the first tick, which runs the loop
	loop   sync.WaitGroup // from keepAlive until the loop has ended or never will run

	mu      sync.Mutex
	stopped bool
	quit    chan struct{} // made by the loop, closed by stop
}

// keepAlive starts KeepAlive's heartbeat.
func (l *Lease) keepAlive(ctx context.Context, every time.Duration) *heartbeat {
	if every <= 0 {
		every = l.cfg.lease / 3
	}
	every = max(min(every, l.cfg.lease/2), time.Millisecond)
	hb := &heartbeat{l: l, parent: ctx, every: every}
	hb.vctx = leaseCtx{Context: ctx, l: l}
	hb.ctx, hb.cancel = context.WithCancelCause(&hb.vctx)
	hb.loop.Add(1)
	hb.first = time.AfterFunc(every, hb.run)
	return hb
}

// run is the heartbeat from its first tick on: an extension now, then one
// a tick, until stop or until the lease is lost.
func (hb *heartbeat) run() {
	defer hb.loop.Done()
	hb.mu.Lock()
	if hb.stopped {
		hb.mu.Unlock()
		return
	}
	hb.quit = make(chan struct{})
	hb.mu.Unlock()
	t := time.NewTicker(hb.every)
	defer t.Stop()
	bg := context.WithoutCancel(hb.parent)
	for hb.extend(bg) {
		select {
		case <-hb.quit:
			return
		case <-t.C:
		}
	}
}

// extend makes one extension, bounded by the interval, and reports whether
// the lease is still held. Once it is lost (taken over, or not extended
// before it passed), the work's context ends with a cause matching
// ErrLeaseLost.
func (hb *heartbeat) extend(bg context.Context) bool {
	l := hb.l
	ectx, ecancel := context.WithTimeout(bg, hb.every)
	err := l.Extend(ectx, l.cfg.lease)
	ecancel()
	if !errors.Is(err, ErrLeaseLost) && (err == nil || l.cfg.now().Before(l.Until())) {
		return true
	}
	cause := fmt.Errorf("idem: %q: %w (extend: %v)", l.key, ErrLeaseLost, err)
	if l.cfg.events != nil { // once: Extend may have reported it
		l.mu.Lock()
		attempt := l.rec.Attempt
		l.mu.Unlock()
		l.reportLost(bg, attempt, cause)
	}
	hb.cancel(cause)
	return false
}

// stop ends the heartbeat and waits for it; it may be called more than
// once, and on a nil heartbeat (none was started).
func (hb *heartbeat) stop() {
	if hb == nil {
		return
	}
	hb.mu.Lock()
	first := !hb.stopped
	hb.stopped = true
	quit := hb.quit
	hb.mu.Unlock()
	if first {
		if hb.first.Stop() {
			hb.loop.Done() // the loop will never run
		}
		if quit != nil {
			close(quit)
		}
	}
	hb.loop.Wait()
	hb.cancel(nil)
}

// leaseCtx is context.WithValue(ctx, leaseKey{}, l), held inside the
// heartbeat so that it costs no allocation of its own.
type leaseCtx struct {
	context.Context
	l *Lease
}

func (c *leaseCtx) Value(key any) any {
	if key == (leaseKey{}) {
		return c.l
	}
	return c.Context.Value(key)
}
