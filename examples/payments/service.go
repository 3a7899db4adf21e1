package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/idemkit/idemkit/idem/event"

	"github.com/idemkit/idemkit/idem"
)

// PayRequest is what a client sends. Key is the client's idempotency key,
// the same on every retry of one payment.
type PayRequest struct {
	Key      string `json:"-"`
	Customer string `json:"customer"`
	Amount   int    `json:"amount"` // cents
}

// Receipt is the service's answer.
type Receipt struct {
	ChargeID string `json:"charge_id"`
	Amount   int    `json:"amount"`
	Attempt  int    `json:"attempt"` // which claim of the key produced it
}

// CardNetwork is the outside world the service charges. Like real payment
// providers it accepts an idempotency key, so a charge repeated after a
// crash (the one window no store can close) is not made twice.
type CardNetwork struct {
	mu       sync.Mutex
	charges  map[string]Receipt // by idempotency key
	executed map[string]int     // charges really made, by key
	deduped  int                // repeated calls the network de-duplicated
	calls    int
	outage   func() bool // reports whether this call fails
}

func newCardNetwork(outage func() bool) *CardNetwork {
	return &CardNetwork{charges: map[string]Receipt{}, executed: map[string]int{}, outage: outage}
}

var (
	errDeclined = errors.New("card declined")
	errOutage   = errors.New("card network unavailable")
)

// Charge charges amount once per key.
func (n *CardNetwork) Charge(key, customer string, amount int) (Receipt, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	if n.outage != nil && n.outage() {
		return Receipt{}, errOutage
	}
	if r, ok := n.charges[key]; ok {
		n.deduped++
		return r, nil
	}
	if customer == "cus_broke" {
		return Receipt{}, errDeclined
	}
	r := Receipt{ChargeID: fmt.Sprintf("ch_%04d", len(n.charges)+1), Amount: amount}
	n.charges[key] = r
	n.executed[key]++
	return r, nil
}

// Service is the payment service: each request runs under idem.Do.
type Service struct {
	Store   idem.Store
	Network *CardNetwork
	Lease   time.Duration
	Events  func(context.Context, event.Event) // idem.WithEvents, if set

	mu      sync.Mutex
	crashes map[string]bool // keys whose next execution crashes after charging
}

// Pay handles one delivered request.
func (s *Service) Pay(ctx context.Context, req PayRequest) (Receipt, bool, error) {
	fp, err := idem.Fingerprint(req)
	if err != nil {
		return Receipt{}, false, err
	}
	ran := false
	r, err := idem.Do(ctx, s.Store, req.Key, func(ctx context.Context) (Receipt, error) {
		ran = true
		r, err := s.Network.Charge(req.Key, req.Customer, req.Amount)
		switch {
		case errors.Is(err, errDeclined):
			return Receipt{}, &idem.PermanentError{Code: "card_declined", Err: err} // the final answer
		case err != nil:
			return Receipt{}, err // transient: released, the client may retry
		}
		if s.takeCrash(req.Key) {
			runtime.Goexit() // the server dies here: charged, never answered
		}
		if lease, ok := idem.LeaseFrom(ctx); ok {
			r.Attempt = lease.Attempt()
		}
		return r, nil
	},
		idem.WithKeyPrefix("payments/"),
		idem.WithFingerprint(fp),
		idem.WithLease(s.Lease),
		idem.WithEvents(s.Events))
	var perm *idem.PermanentError
	replayed := !ran && (err == nil || errors.As(err, &perm) && perm.Replayed)
	return r, replayed, err
}

func (s *Service) crashAfterCharging(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crashes[key] = true
}

func (s *Service) takeCrash(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashes[key] {
		delete(s.crashes, key)
		return true
	}
	return false
}
