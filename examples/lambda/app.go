package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemlambda"
)

// PaymentRequest is the body of POST /payments.
type PaymentRequest struct {
	Customer string `json:"customer"`
	Amount   int64  `json:"amount"` // in cents
	Currency string `json:"currency"`
}

// Payment is the body of a 201 answer.
type Payment struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// PointsEvent is the body of an SQS message: loyalty points earned.
type PointsEvent struct {
	EventID  string `json:"event_id"`
	Customer string `json:"customer"`
	Points   int64  `json:"points"`
}

// errProviderDown is the payment provider's transient failure.
var errProviderDown = errors.New("payment provider unavailable")

// Provider stands in for a payment provider with an idempotency-key API,
// as Stripe's: a charge sent twice under one key is made once.
type Provider struct {
	mu       sync.Mutex
	charges  map[string]Payment // by idempotency key
	calls    int
	deduped  int
	faults   []providerFault
	started  chan struct{} // closed when a slow call starts
	released chan struct{} // a slow call waits for this
}

type providerFault int

const (
	pfNone  providerFault = iota
	pfDown                // 503: nothing charged
	pfSlow                // wait for released before charging
	pfCrash               // charge, then the invocation dies before answering
)

func newProvider() *Provider { return &Provider{charges: map[string]Payment{}} }

func (p *Provider) inject(fs ...providerFault) {
	p.mu.Lock()
	p.faults = append(p.faults, fs...)
	p.mu.Unlock()
}

// Charge charges once per key.
func (p *Provider) Charge(ctx context.Context, key string, r PaymentRequest) (Payment, error) {
	p.mu.Lock()
	p.calls++
	f := pfNone
	if len(p.faults) > 0 {
		f, p.faults = p.faults[0], p.faults[1:]
	}
	p.mu.Unlock()
	switch f {
	case pfDown:
		return Payment{}, errProviderDown
	case pfSlow:
		close(p.started)
		<-p.released
	}
	p.mu.Lock()
	c, ok := p.charges[key]
	if ok {
		p.deduped++
	} else {
		c = Payment{ID: fmt.Sprintf("pay_%03d", len(p.charges)+1), Customer: r.Customer, Amount: r.Amount, Currency: r.Currency}
		p.charges[key] = c
	}
	p.mu.Unlock()
	if f == pfCrash {
		runtime.Goexit() // the function times out or is killed here
	}
	return c, nil
}

// App holds the two Lambda handlers of the example: an API Gateway handler
// that creates payments, and an SQS consumer that credits loyalty points.
type App struct {
	Store    idem.Store
	Provider *Provider
	Prefix   string // of every key; tells runs on one table apart

	ledgerFail map[string]int // event ID -> transient ledger failures left
	mu         sync.Mutex
}

// CreatePayment is the bare API Gateway handler: it charges the customer
// through the provider, whose idempotency key is this request's key (so a
// re-run after a crash charges nobody twice).
func (a *App) CreatePayment(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	var pr PaymentRequest
	if err := json.Unmarshal([]byte(req.Body), &pr); err != nil || pr.Amount <= 0 || pr.Customer == "" {
		return jsonResponse(http.StatusBadRequest, map[string]string{"error": "want a customer and a positive amount"}), nil
	}
	key := ""
	if l, ok := idem.LeaseFrom(ctx); ok {
		key = l.Key()
	}
	p, err := a.Provider.Charge(ctx, key, pr)
	if errors.Is(err, errProviderDown) {
		return jsonResponse(http.StatusServiceUnavailable, map[string]string{"error": err.Error()}), nil
	}
	if err != nil {
		return events.APIGatewayProxyResponse{}, err
	}
	return jsonResponse(http.StatusCreated, p), nil
}

// CreditPoints is the bare SQS record handler: it adds the event's points
// to the customer's balance, an exactly-once counter keyed by the event
// (so a re-run after a crash credits nothing twice).
func (a *App) CreditPoints(ctx context.Context, msg events.SQSMessage) error {
	var ev PointsEvent
	if err := json.Unmarshal([]byte(msg.Body), &ev); err != nil {
		return err
	}
	if ev.Points <= 0 {
		return idem.Permanent(fmt.Errorf("event %s: %d points is not a credit", ev.EventID, ev.Points))
	}
	a.mu.Lock()
	if a.ledgerFail[ev.EventID] > 0 {
		a.ledgerFail[ev.EventID]--
		a.mu.Unlock()
		return errors.New("ledger busy")
	}
	a.mu.Unlock()
	_, _, err := a.points(ev.Customer).Add(ctx, ev.EventID, ev.Points)
	return err
}

// Points returns a customer's balance.
func (a *App) Points(ctx context.Context, customer string) (int64, error) {
	return a.points(customer).Value(ctx)
}

// points is a customer's exactly-once points counter.
func (a *App) points(customer string) idem.Counter {
	return idem.Counter{Store: a.Store, Key: a.Prefix + "points/" + customer}
}

// eventKey is the SQS wrapper's key: the producer's event ID, so that an
// event the producer sent twice (two message IDs) is credited once.
func eventKey(msg events.SQSMessage) (string, error) {
	var ev PointsEvent
	if err := json.Unmarshal([]byte(msg.Body), &ev); err != nil {
		return "", fmt.Errorf("not a points event: %w", err)
	}
	return ev.EventID, nil
}

// Handlers returns the wrapped handlers, as lambda.Start takes them, logging
// to logger.
func (a *App) Handlers(logger *slog.Logger) (
	api func(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error),
	sqs func(context.Context, events.SQSEvent) (events.SQSEventResponse, error),
	err error,
) {
	api, err = idemlambda.APIGateway(a.Store, a.CreatePayment,
		idemlambda.WithRequired(true), idemlambda.WithKeyPrefix(a.Prefix+"api/"), idemlambda.WithLogger(logger))
	if err != nil {
		return nil, nil, err
	}
	sqs, err = idemlambda.SQS(a.Store, a.CreditPoints,
		idemlambda.WithMessageKey(eventKey), idemlambda.WithKeyPrefix(a.Prefix+"sqs/"), idemlambda.WithLogger(logger))
	return api, sqs, err
}

func jsonResponse(status int, v any) events.APIGatewayProxyResponse {
	b, _ := json.Marshal(v)
	return events.APIGatewayProxyResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "application/json"},
		Body:       string(b),
	}
}
