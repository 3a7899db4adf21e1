package idemlambda

import (
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// TestHeaderCasingsDeterministic: an event that carries a header under two
// casings (API Gateway passes what the client sent) must give the same
// scope and key every time it is read; ranging over the map picked one at
// random, so a retry of the same event could land in another scope.
func TestHeaderCasingsDeterministic(t *testing.T) {
	req := events.APIGatewayProxyRequest{
		Headers: map[string]string{"Authorization": "Bearer alice", "authorization": "Bearer bob", "AUTHORIZATION": "Bearer carol"},
		MultiValueHeaders: map[string][]string{
			"Idempotency-Key": {`"k1"`}, "idempotency-key": {`"k2"`}, "IDEMPOTENCY-KEY": {`"k3"`},
		},
	}
	first, err := defaultScope(req)
	if err != nil {
		t.Fatal(err)
	}
	firstKey := headerValues(req, "Idempotency-Key")
	for range 200 {
		if got, _ := defaultScope(req); got != first {
			t.Fatalf("scope changed between reads of one event: %q, then %q", first, got)
		}
		if got := headerValues(req, "Idempotency-Key"); got[0] != firstKey[0] {
			t.Fatalf("key changed between reads of one event: %q, then %q", firstKey, got)
		}
	}
	req.MultiValueHeaders = nil
	first, _ = defaultScope(req)
	for range 200 {
		if got, _ := defaultScope(req); got != first {
			t.Fatalf("scope from single-value headers changed: %q, then %q", first, got)
		}
	}
}
