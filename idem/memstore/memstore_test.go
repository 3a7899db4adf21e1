package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemtest"
	"github.com/idemkit/idemkit/idem/memstore"
)

func TestConformance(t *testing.T) {
	// In memory, races are cheap: many more rounds than a server gets.
	idemtest.Run(t, func(t *testing.T) idem.Store { return memstore.New() }, idemtest.WithContention(32, 100))
}

// TestClock moves an injected clock instead of sleeping: expiry is exact to
// the nanosecond, for every operation.
func TestClock(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := memstore.New(memstore.WithClock(func() time.Time { return now }))
	ctx := context.Background()
	it, err := s.PutIfAbsent(ctx, "k", []byte("v"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(time.Minute); !it.ExpiresAt.Equal(want) {
		t.Fatalf("ExpiresAt: got %v, want %v", it.ExpiresAt, want)
	}
	now = now.Add(time.Minute - time.Nanosecond)
	if _, err := s.Get(ctx, "k"); err != nil {
		t.Fatalf("a nanosecond before expiry: %v", err)
	}
	now = now.Add(time.Nanosecond)
	if _, err := s.Get(ctx, "k"); !errors.Is(err, idem.ErrNotFound) {
		t.Fatalf("at expiry: got %v, want ErrNotFound", err)
	}
	if _, err := s.CompareAndSwap(ctx, "k", 1, []byte("w"), 0); !errors.Is(err, idem.ErrConflict) {
		t.Fatalf("CompareAndSwap at expiry: got %v, want a conflict", err)
	}
}

// TestSweep: expired items are dropped as writes go by, without a
// background goroutine, so memory does not grow with dead keys.
func TestSweep(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := memstore.New(memstore.WithClock(func() time.Time { return now }))
	ctx := context.Background()
	for i := range 5000 {
		if _, err := s.PutIfAbsent(ctx, fmt.Sprint("old", i), nil, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Hour)
	for i := range 5000 {
		if _, err := s.PutIfAbsent(ctx, fmt.Sprint("new", i), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Len(); got != 5000 {
		t.Fatalf("Len: got %d live items, want 5000", got)
	}
	if got := s.Held(); got > 5000+1024 {
		t.Fatalf("held %d items after 5000 expired ones and 5000 writes, want the expired ones swept", got)
	}
}
