package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/saga"
)

// errSoldOut is a supplier's final "no": the saga cannot go on.
var errSoldOut = errors.New("sold out")

// errTimeout is a supplier's transient failure: try again later.
var errTimeout = errors.New("supplier API timed out")

// Trip is what a customer books: a flight, a hotel and a car.
type Trip struct {
	ID     string
	Flight string
	Hotel  string
	Car    string
}

// Reservation is a supplier's confirmation, the result of a saga step.
type Reservation struct {
	Resource string `json:"resource"`
	Holder   string `json:"holder"`
}

// Suppliers stands in for the airline, hotel and car-rental APIs. Their
// stock lives in the same idem.Store (one item per resource, updated with
// idem.Update), and like any good API they are idempotent by reservation
// ID: reserving twice for the same trip holds one seat.
type Suppliers struct {
	store  idem.Store
	prefix string

	mu       sync.Mutex
	calls    map[string]int // "reserve flight/FL1 t1" -> calls
	absorbed int            // calls that found their work already done
	faults   map[string][]fault
}

// stock is a resource's stored state.
type stock struct {
	Capacity int      `json:"capacity"`
	Holders  []string `json:"holders"`
}

// fault is what a supplier does to one call.
type fault int

const (
	ok          fault = iota
	timeout           // fail with errTimeout, nothing done
	crashBefore       // the process dies before the call is made
	crashAfter        // the process dies after the call was applied, before its answer is recorded
)

func newSuppliers(store idem.Store, prefix string) *Suppliers {
	return &Suppliers{store: store, prefix: prefix, calls: map[string]int{}, faults: map[string][]fault{}}
}

// inject queues faults for the next calls of op ("reserve" or "release") on
// resource for holder.
func (s *Suppliers) inject(op, resource, holder string, fs ...fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := op + " " + resource + " " + holder
	s.faults[k] = append(s.faults[k], fs...)
}

// stock sets a resource's capacity.
func (s *Suppliers) stock(ctx context.Context, resource string, capacity int) error {
	v, _ := json.Marshal(stock{Capacity: capacity})
	_, err := idem.Update(ctx, s.store, s.prefix+resource, func([]byte, bool) ([]byte, error) { return v, nil })
	return err
}

func (s *Suppliers) call(op, resource, holder string) fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := op + " " + resource + " " + holder
	s.calls[k]++
	var f fault
	if q := s.faults[k]; len(q) > 0 {
		f, s.faults[k] = q[0], q[1:]
	}
	return f
}

// Reserve holds one unit of resource for holder.
func (s *Suppliers) Reserve(ctx context.Context, resource, holder string) (Reservation, error) {
	f := s.call("reserve", resource, holder)
	switch f {
	case timeout:
		return Reservation{}, errTimeout
	case crashBefore:
		runtime.Goexit()
	}
	absorbed := false
	_, err := idem.Update(ctx, s.store, s.prefix+resource, func(v []byte, exists bool) ([]byte, error) {
		var st stock
		if err := json.Unmarshal(v, &st); err != nil || !exists {
			return nil, fmt.Errorf("no stock for %s", resource)
		}
		absorbed = slices.Contains(st.Holders, holder)
		if absorbed {
			return nil, idem.ErrSkipUpdate
		}
		if len(st.Holders) >= st.Capacity {
			return nil, errSoldOut
		}
		st.Holders = append(st.Holders, holder)
		return json.Marshal(st)
	})
	if err != nil {
		return Reservation{}, err
	}
	s.noteAbsorbed(absorbed)
	if f == crashAfter {
		runtime.Goexit()
	}
	return Reservation{Resource: resource, Holder: holder}, nil
}

// Release gives back holder's unit of resource.
func (s *Suppliers) Release(ctx context.Context, r Reservation) error {
	f := s.call("release", r.Resource, r.Holder)
	switch f {
	case timeout:
		return errTimeout
	case crashBefore:
		runtime.Goexit()
	}
	absorbed := false
	_, err := idem.Update(ctx, s.store, s.prefix+r.Resource, func(v []byte, exists bool) ([]byte, error) {
		var st stock
		if err := json.Unmarshal(v, &st); err != nil || !exists {
			return nil, fmt.Errorf("no stock for %s", r.Resource)
		}
		i := slices.Index(st.Holders, r.Holder)
		if absorbed = i < 0; absorbed {
			return nil, idem.ErrSkipUpdate
		}
		st.Holders = slices.Delete(st.Holders, i, i+1)
		return json.Marshal(st)
	})
	if err != nil {
		return err
	}
	s.noteAbsorbed(absorbed)
	if f == crashAfter {
		runtime.Goexit()
	}
	return nil
}

func (s *Suppliers) noteAbsorbed(yes bool) {
	if yes {
		s.mu.Lock()
		s.absorbed++
		s.mu.Unlock()
	}
}

// holders returns who holds resource.
func (s *Suppliers) holders(ctx context.Context, resource string) (stock, error) {
	it, err := s.store.Get(ctx, s.prefix+resource)
	if err != nil {
		return stock{}, err
	}
	var st stock
	err = json.Unmarshal(it.Value, &st)
	return st, err
}

// Agency books trips as sagas: flight, then hotel, then car; if a supplier
// says no for good, whatever was reserved is released.
type Agency struct {
	Store     idem.Store
	Suppliers *Suppliers
	Prefix    string        // key prefix of this agency's sagas
	Lease     time.Duration // how long a crashed run blocks its trip
	Wait      time.Duration // how long a duplicate run waits for the first
}

// Book runs trip's saga. Run it again after any failure: completed steps
// are not repeated and nothing is released twice. It returns nil once the
// trip is booked, an error matching saga.ErrAborted once it was given up
// and undone, or another error if it should be run again later.
func (a *Agency) Book(ctx context.Context, trip Trip) error {
	return saga.Run(ctx, a.Store, trip.ID, func(ctx context.Context, sg *saga.Saga) error {
		for _, leg := range []struct{ step, resource string }{
			{"flight", "flight/" + trip.Flight},
			{"hotel", "hotel/" + trip.Hotel},
			{"car", "car/" + trip.Car},
		} {
			_, err := saga.Step(ctx, sg, leg.step,
				func(ctx context.Context) (Reservation, error) {
					r, err := a.Suppliers.Reserve(ctx, leg.resource, trip.ID)
					if errors.Is(err, errSoldOut) {
						return r, &idem.PermanentError{Code: "sold-out", Err: fmt.Errorf("%s: %w", leg.resource, err)}
					}
					return r, err
				},
				func(ctx context.Context, r Reservation) error {
					return a.Suppliers.Release(ctx, r)
				})
			if err != nil {
				return err
			}
		}
		return nil
	}, saga.WithKeyPrefix(a.Prefix), saga.WithLease(a.Lease), saga.WithWait(a.Wait))
}
