package idem

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

type detachKey struct{}

// TestDetach: detach's lazy context behaves as
// context.WithTimeout(context.WithoutCancel(ctx), writeTimeout) would, its
// timer made or not: the caller's values, not its cancellation, cause or
// deadline; its own deadline; end cancels it and whatever derives from it;
// an error, once given, never changes. On synctest's clock, so the ten
// seconds pass at once.
func TestDetach(t *testing.T) {
	for _, made := range []bool{false, true} {
		name := map[bool]string{false: "timer not made", true: "timer made"}[made]
		t.Run(name+"/values, not the caller's end", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				parent, cancel := context.WithDeadlineCause(context.WithValue(context.Background(), detachKey{}, "v"),
					time.Now().Add(time.Second), errors.New("the caller's cause"))
				defer cancel()
				w := detach(parent)
				defer w.end()
				if made {
					w.Done()
				}
				cancel()
				if got := w.Value(detachKey{}); got != "v" {
					t.Errorf("value: got %v, want v", got)
				}
				if d, ok := w.Deadline(); !ok || !d.Equal(time.Now().Add(writeTimeout)) {
					t.Errorf("deadline: got %v, %v; want %v from now", d, ok, writeTimeout)
				}
				if err, cause := w.Err(), context.Cause(w); err != nil || cause != nil {
					t.Errorf("after the caller's cancellation: Err %v, Cause %v; want nil", err, cause)
				}
			})
		})
		t.Run(name+"/end", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := detach(context.Background())
				child, cancelChild := context.WithCancel(w)
				defer cancelChild()
				if made {
					w.Done()
				}
				w.end()
				<-w.Done()
				<-child.Done()
				time.Sleep(2 * writeTimeout)
				if err, cause := w.Err(), context.Cause(w); err != context.Canceled || cause != context.Canceled {
					t.Errorf("after end: Err %v, Cause %v; want context.Canceled for both", err, cause)
				}
			})
		})
		t.Run(name+"/deadline", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := detach(context.Background())
				defer w.end()
				if made {
					w.Done()
				}
				time.Sleep(writeTimeout - time.Nanosecond)
				if err := w.Err(); err != nil {
					t.Fatalf("before the deadline: %v", err)
				}
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				err := w.Err()
				<-w.Done()
				w.end()
				if err != context.DeadlineExceeded || w.Err() != err || context.Cause(w) != err {
					t.Errorf("past the deadline: Err %v, then %v, Cause %v; want context.DeadlineExceeded throughout", err, w.Err(), context.Cause(w))
				}
			})
		})
	}
}

// TestDetachDerived: a context derived from detach's follows its deadline,
// and stops following it once it is cancelled itself.
func TestDetachDerived(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := detach(context.Background())
		defer w.end()
		child, cancel := context.WithCancel(w)
		defer cancel()
		stopped := context.WithoutCancel(w)
		other, cancelOther := context.WithCancel(w)
		cancelOther()
		time.Sleep(writeTimeout)
		<-child.Done()
		if err := child.Err(); err != context.DeadlineExceeded {
			t.Errorf("derived: got %v, want context.DeadlineExceeded", err)
		}
		if err := other.Err(); err != context.Canceled {
			t.Errorf("derived and cancelled first: got %v, want context.Canceled", err)
		}
		if stopped.Err() != nil {
			t.Errorf("WithoutCancel of it: got %v, want nil", stopped.Err())
		}
	})
}
