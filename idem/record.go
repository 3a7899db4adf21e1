package idem

import (
	"errors"

	"github.com/idemkit/idemkit/idem/internal/recordfmt"
)

// The claim record, its lifecycle and its stored form are in
// idem/internal/recordfmt, so that idem/kernel can show a record to tools
// (kernel.DescribeRecord) without idem exporting it.
type (
	record      = recordfmt.Record
	storedError = recordfmt.StoredError
)

// The states of a claim record.
const (
	statusInProgress = recordfmt.StatusInProgress // claimed; the owner is working
	statusCompleted  = recordfmt.StatusCompleted  // done; Result or Error is the answer
	statusReleased   = recordfmt.StatusReleased   // given up; the next claim takes it over
)

// encodeRecord returns the stored form of r.
func encodeRecord(r record) []byte { return recordfmt.Encode(r) }

// decodeRecord parses a stored record of key. The error matches
// ErrCorrupt. The record's Result and Fingerprint share data's memory.
func decodeRecord(key string, data []byte) (record, error) {
	r, err := recordfmt.Decode(data)
	if err != nil {
		return record{}, corrupt(key, err)
	}
	return r, nil
}

// replayError is the stored error e as Claim and Do return it.
func replayError(e *storedError) error {
	return &PermanentError{Err: errors.New(e.Message), Code: e.Code, Replayed: true}
}
