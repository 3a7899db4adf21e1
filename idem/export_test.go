package idem

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
