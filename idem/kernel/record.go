package kernel

import (
	"bytes"
	"fmt"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/internal/recordfmt"
)

// The states of a claim record, as RecordInfo.Status gives them.
const (
	StatusInProgress = string(recordfmt.StatusInProgress) // claimed; the owner is working until LeaseUntil
	StatusCompleted  = string(recordfmt.StatusCompleted)  // done: Result, or the permanent error, is the answer
	StatusReleased   = string(recordfmt.StatusReleased)   // given up; the next claim takes the key over
)

// RecordInfo is a claim record as idem.Claim, Do and Once store it in an
// Item's Value, decoded for a tool that shows or evicts a key (cmd/idemctl).
// It is a copy: changing it changes nothing stored. The record's fence is
// not in it: a claim's fence is the version of the Item it wrote
// (idem.Lease.Fence), and the Item's Version is where the record is now.
type RecordInfo struct {
	// Status is StatusInProgress, StatusCompleted or StatusReleased.
	Status string
	// Token is unique to the claim that wrote the record: its owner.
	Token string
	// LeaseUntil is, in progress, when the claim stops being exclusive.
	LeaseUntil time.Time
	// Attempt is 1, plus one per takeover.
	Attempt int
	// CreatedAt is when the claim was made, CompletedAt when it completed
	// (the zero time before).
	CreatedAt, CompletedAt time.Time
	// Fingerprint is the request's fingerprint, nil without one.
	Fingerprint []byte
	// Result is, completed, the stored result as the caller encoded it (Do
	// stores JSON), nil for none.
	Result []byte
	// Failed reports a completed record whose answer is a permanent error
	// (idem.PermanentError), with ErrorCode and ErrorMessage.
	Failed                  bool
	ErrorCode, ErrorMessage string
}

// DescribeRecord decodes a claim record from an Item's Value, in either
// stored format. A value that is not a claim record (a Counter's, an
// Update's, or damaged bytes) gives an error matching idem.ErrCorrupt.
func DescribeRecord(value []byte) (RecordInfo, error) {
	r, err := recordfmt.Decode(value)
	if err != nil {
		return RecordInfo{}, fmt.Errorf("%w: %w", idem.ErrCorrupt, err)
	}
	info := RecordInfo{
		Status:      string(r.Status),
		Token:       r.Token,
		LeaseUntil:  r.LeaseUntil,
		Attempt:     r.Attempt,
		CreatedAt:   r.CreatedAt,
		CompletedAt: r.CompletedAt,
		Fingerprint: bytes.Clone(r.Fingerprint),
		Result:      bytes.Clone(r.Result),
	}
	if r.Error != nil {
		info.Failed, info.ErrorCode, info.ErrorMessage = true, r.Error.Code, r.Error.Message
	}
	return info, nil
}

// LeasePassed reports whether the record is in progress and its lease has
// passed at now: a claim made then takes the key over.
func (r RecordInfo) LeasePassed(now time.Time) bool {
	return recordfmt.Record{Status: recordfmt.Status(r.Status), LeaseUntil: r.LeaseUntil}.LeasePassed(now)
}
