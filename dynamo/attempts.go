package dynamo

import (
	"context"
	"errors"
	"net"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// attempts watches the SDK's retry loop for one request. A middleware placed
// after the retryer runs once per attempt and records whether any attempt
// ended in a way that does not prove the write was refused: a lost or
// unreadable response, a 5xx, a cancelled request in flight. Only then can a
// resend find the item changed by our own first attempt, and only then is a
// failed condition ambiguous.
//
// A client that does not run the SDK's middleware stack (a test double) never
// calls the middleware; the request then counts as sent once.
type attempts struct {
	n            int  // attempts made
	maybeApplied bool // an attempt may have reached the table without our learning its result
}

const attemptsID = "idemkit.attempts"

// option is passed as the request's optFns.
func (a *attempts) option(o *dynamodb.Options) {
	o.APIOptions = append(o.APIOptions, a.install)
}

func (a *attempts) install(st *middleware.Stack) error {
	return st.Finalize.Add(middleware.FinalizeMiddlewareFunc(attemptsID, a.handle), middleware.After)
}

func (a *attempts) handle(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	a.n++
	out, md, err := next.HandleFinalize(ctx, in)
	if err != nil && !refused(err) {
		a.maybeApplied = true
	}
	return out, md, err
}

// resent reports whether the request was sent again after an attempt that may
// have been applied.
func (a *attempts) resent() bool { return a.n > 1 && a.maybeApplied }

// refused reports whether err proves the request was not applied: DynamoDB
// answered with a 4xx (a failed condition, throttling, validation, a missing
// table), or the connection could not even be opened.
func refused(err error) bool {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		code := re.HTTPStatusCode()
		return code >= 400 && code < 500
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}
