package idem

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// status is the state of a claim record.
type status string

// The states of a claim record.
const (
	statusInProgress status = "in_progress" // claimed; the owner is working
	statusCompleted  status = "completed"   // done; Result or Error is the answer
	statusReleased   status = "released"    // given up; the next claim takes it over
)

// record is the value of a claimed key: who holds it, until when, for which
// request, and once completed, the answer. It is stored as JSON in
// Item.Value so it can be read in any database console.
//
// Lifecycle: Claim writes an in-progress record (PutIfAbsent). The owner
// extends its lease and finally completes it or releases it, each a
// CompareAndSwap on its own version. A released record is a tombstone: the
// next claim takes it over by CompareAndSwap, so the key keeps one chain of
// versions and every earlier owner stays fenced. A claimer that finds an
// in-progress record whose lease has passed takes it over by CompareAndSwap
// on the version it saw, which fences the old owner out. A completed or
// released record lives until its TTL passes; then the key is free again,
// and its next record starts at a fresh version above all of them.
type record struct {
	Status      status       `json:"status"`
	Token       string       `json:"token"`            // unique to the claim that wrote the record
	LeaseUntil  time.Time    `json:"lease_until"`      // in progress: exclusive until then
	Fingerprint []byte       `json:"fp,omitempty"`     // the request's fingerprint, if any
	Result      []byte       `json:"result,omitempty"` // completed: the encoded result
	Error       *storedError `json:"error,omitempty"`  // completed: a permanent error instead of a result
	Attempt     int          `json:"attempt"`          // 1, plus one per takeover
	CreatedAt   time.Time    `json:"created_at"`
	CompletedAt time.Time    `json:"completed_at,omitzero"`
}

// storedError is a permanent error kept as the answer for a key.
type storedError struct {
	Message string `json:"message"`
	Code    string `json:"code,omitempty"`
}

// replay is the stored error as Claim and Do return it.
func (e *storedError) replay() error {
	return &PermanentError{Err: errors.New(e.Message), Code: e.Code, Replayed: true}
}

// encodeRecord returns the stored form of r.
func encodeRecord(r record) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("idem: encoding a record: %v", err)) // a record always encodes
	}
	return b
}

// decodeRecord parses a record written by encodeRecord. The error matches
// ErrCorrupt.
func decodeRecord(key string, data []byte) (record, error) {
	var r record
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&r); err != nil {
		return record{}, corrupt(key, err)
	}
	if dec.More() {
		return record{}, corrupt(key, fmt.Errorf("trailing data"))
	}
	switch {
	case r.Status != statusInProgress && r.Status != statusCompleted && r.Status != statusReleased:
		return record{}, corrupt(key, fmt.Errorf("unknown status %q", r.Status))
	case r.Token == "":
		return record{}, corrupt(key, fmt.Errorf("no owner token"))
	}
	return r, nil
}

// leasePassed reports whether an in-progress record's lease has passed at now.
func (r record) leasePassed(now time.Time) bool {
	return r.Status == statusInProgress && !now.Before(r.LeaseUntil)
}
