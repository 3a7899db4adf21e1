package dynamo

import (
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Sentinel errors for failures DynamoDB reports. Every error the Store returns
// for them wraps both the sentinel and the SDK error, so a caller can branch
// with errors.Is(err, dynamo.ErrThrottled) and still reach the SDK's typed
// error (for example *types.ResourceNotFoundException) with errors.As.
//
// Conflicts, bad input, missing keys and unknown outcomes use idem's errors:
// idem.ErrConflict (*idem.ConflictError), idem.ErrInvalid, idem.ErrNotFound
// and idem.ErrUnknownOutcome.
var (
	// ErrThrottled: DynamoDB refused the request for lack of capacity
	// (ProvisionedThroughputExceededException, ThrottlingException,
	// RequestLimitExceeded) after the SDK's retries. Nothing was written
	// by that request; the operation can be retried later.
	ErrThrottled = errors.New("dynamo: throttled")
	// ErrTableNotFound: the table does not exist or is not active
	// (ResourceNotFoundException).
	ErrTableNotFound = errors.New("dynamo: table not found")
	// ErrValidation: DynamoDB rejected the request as malformed
	// (ValidationException), typically because the table's key schema does
	// not match the Store's options. Nothing was written.
	ErrValidation = errors.New("dynamo: request rejected by validation")
	// ErrSchemaMismatch: CreateTable or Check found an existing table whose
	// key schema or time-to-live attribute does not match the options (for
	// Check, also a table whose time to live is off).
	ErrSchemaMismatch = errors.New("dynamo: table schema mismatch")
	// ErrUnsupported: the endpoint lacks a feature the Store relies on, such
	// as returning the current item when a condition fails
	// (ReturnValuesOnConditionCheckFailure=ALL_OLD).
	ErrUnsupported = errors.New("dynamo: endpoint does not support a required feature")
)

// sentinelFor returns the sentinel matching an SDK error, or nil. Each
// sentinel says nothing was written, which only a refusal (a 4xx) proves: an
// error code inside a 5xx answer (an endpoint or proxy that failed after
// forwarding the request) gets none.
func sentinelFor(err error) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return nil
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return nil
	}
	switch ae.ErrorCode() {
	case "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded":
		return ErrThrottled
	case "ResourceNotFoundException":
		return ErrTableNotFound
	case "ValidationException":
		return ErrValidation
	}
	return nil
}

// wrapSDK wraps an SDK error with the operation, key and table, and with the
// matching sentinel when there is one.
func (s *Store) wrapSDK(op, key string, err error) error {
	if sent := sentinelFor(err); sent != nil {
		return fmt.Errorf("dynamo: %s %q (table %s): %w: %w", op, key, s.table, sent, err)
	}
	return fmt.Errorf("dynamo: %s %q (table %s): %w", op, key, s.table, err)
}

// conditionFailed reports whether err is a failed condition and returns the
// SDK's exception, whose Item holds the current item (ALL_OLD).
func conditionFailed(err error) (*types.ConditionalCheckFailedException, bool) {
	var ccf *types.ConditionalCheckFailedException
	ok := errors.As(err, &ccf)
	return ccf, ok
}
