package dynamo

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptrace"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// attempts watches the SDK's retry loop for one write. A middleware placed
// after the retryer runs once per attempt. It lets the retryer resend only
// after attempts that provably applied nothing: DynamoDB answered with a
// 4xx, the connection never opened, or the request was never fully written.
// Any other failure (a lost or unreadable response, a 5xx, a timeout, a
// connection cut after the request went out) may have been applied; the
// middleware then turns the error into a *lostError, which the retryer does
// not retry, and refuses to send anything more should a retryer retry it
// anyway. A resend could apply the write a second time, or to an item it
// never targeted, if the key was deleted and re-created in between.
//
// A client that does not run the SDK's middleware stack (a test double)
// never calls the middleware; its own retries are its business.
type attempts struct {
	lost *lostError // the attempt that may have been applied; nothing is sent after it
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
	if a.lost != nil {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, a.lost
	}
	in.Request = hideWriterTo(in.Request)
	var w wireTrace
	out, md, err := next.HandleFinalize(httptrace.WithClientTrace(ctx, w.hooks()), in)
	if err != nil && !w.appliedNothing(err) {
		a.lost = &lostError{err: err}
		return out, md, a.lost
	}
	return out, md, err
}

// lostError is the error of an attempt that may have been applied. Its
// RetryableError method tells the SDK's retryer not to send the request
// again.
type lostError struct{ err error }

func (e *lostError) Error() string        { return e.err.Error() }
func (e *lostError) Unwrap() error        { return e.err }
func (e *lostError) RetryableError() bool { return false }

// mayHaveApplied reports whether err, returned by a write sent with an
// attempts middleware, comes from an attempt that may have been applied.
func mayHaveApplied(err error) bool {
	var le *lostError
	return errors.As(err, &le)
}

// wireTrace follows one attempt through net/http's client trace hooks:
// whether net/http took the request, and how many connections it gave it.
// Hooks may run on the transport's goroutines.
type wireTrace struct {
	mu     sync.Mutex
	traced bool // net/http took the request (GetConn ran)
	conns  int  // connections the request was given (GotConn ran)
}

func (w *wireTrace) hooks() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GetConn: func(string) {
			w.mu.Lock()
			w.traced = true
			w.mu.Unlock()
		},
		GotConn: func(httptrace.GotConnInfo) {
			w.mu.Lock()
			w.conns++
			w.mu.Unlock()
		},
	}
}

// appliedNothing reports whether the attempt that ended with err provably
// applied nothing: DynamoDB refused it, or it never left this process
// whole.
func (w *wireTrace) appliedNothing(err error) bool {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		if code := re.HTTPStatusCode(); code >= 400 && code < 500 {
			return true // DynamoDB refused the request
		}
	}
	if unsent(err) {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.traced && w.conns == 0 // the request never had a connection
}

// unsent reports whether err says the request never fully left this
// process: no connection could be dialled or resolved, or writing the
// request failed on the socket. A failed write leaves the request's last
// bytes unsent, and a DynamoDB request cut short is JSON that does not
// parse, so the server applies nothing. (net/http retries by itself a
// request of which not a byte was written; what reaches the SDK is a
// request written in part.) net/http's WroteRequest hook cannot tell this:
// it reports io.EOF for a request written whole (see hideWriterTo) and a
// failed body write as a body read error, and it runs before the final
// flush to the socket.
func unsent(err error) bool {
	switch e := err.(type) {
	case nil:
		return false
	case *net.OpError:
		if e.Op == "dial" || e.Op == "write" {
			return true
		}
	case *net.DNSError:
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return unsent(u.Unwrap())
	case interface{ Unwrap() []error }:
		return slices.ContainsFunc(u.Unwrap(), unsent)
	}
	return false
}

// hideWriterTo gives the request a body that does not implement
// io.WriterTo. The SDK closes a request's body as soon as the response
// arrives; net/http may still be reading it then (it checks that nothing
// follows the declared length), and the SDK's body answers that read
// through WriteTo with io.EOF once closed. net/http takes that for a failed
// write and closes the connection under the response, whose body can no
// longer be read: a response lost for no reason (aws/aws-sdk-go-v2#2737).
// Through Read, a closed body just ends.
func hideWriterTo(req any) any {
	r, ok := req.(*smithyhttp.Request)
	if !ok {
		return req
	}
	s, ok := r.GetStream().(io.ReadSeeker)
	if !ok {
		return req
	}
	if _, ok := s.(io.WriterTo); !ok {
		return req
	}
	hidden, err := r.SetStream(struct{ io.ReadSeeker }{s})
	if err != nil {
		return req
	}
	return hidden
}
