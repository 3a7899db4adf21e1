package idem

import "github.com/idemkit/idemkit/idem/internal/canon"

// Test-only access to the record codec, for the external tests that craft
// or inspect stored records the way a database console shows them.
type (
	Record      = record
	StoredError = storedError
)

const (
	StatusInProgress = statusInProgress
	StatusCompleted  = statusCompleted
	StatusReleased   = statusReleased
)

var (
	EncodeRecord = encodeRecord
	DecodeRecord = decodeRecord
)

// CacheLen returns the number of answers c holds.
func CacheLen(c *Cache) int { return c.len() }

// The request fingerprints of adapters, tested beside Fingerprint.
var (
	FingerprintJSON  = canon.JSON
	FingerprintParts = canon.Parts
)
