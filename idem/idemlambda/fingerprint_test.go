package idemlambda_test

import (
	"context"
	"encoding/hex"
	"net/http"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemlambda"
	"github.com/idemkit/idemkit/idem/memstore"
)

// withQuery sets the query string parameters of r as API Gateway does:
// every value in the multi-value map, the last one in the single-value
// map.
func withQuery(r events.APIGatewayProxyRequest, q map[string][]string) events.APIGatewayProxyRequest {
	r.MultiValueQueryStringParameters = q
	r.QueryStringParameters = map[string]string{}
	for k, vs := range q {
		r.QueryStringParameters[k] = vs[len(vs)-1]
	}
	return r
}

// TestAPIGatewayFingerprint: two requests with the same key that differ
// only in how their query parameters split get 422, not the first one's
// response. The parameters used to be joined as name=value pairs with "&",
// unescaped and sorted, so each pair below shared a fingerprint.
func TestAPIGatewayFingerprint(t *testing.T) {
	tests := []struct {
		name string
		a, b map[string][]string
	}{
		{"ampersand in a value", map[string][]string{"amount": {"100&to=bob"}}, map[string][]string{"amount": {"100"}, "to": {"bob"}}},
		{"equals sign in a name", map[string][]string{"a=b": {"c"}}, map[string][]string{"a": {"b=c"}}},
		{"one value or two", map[string][]string{"to": {"bob&to=eve"}}, map[string][]string{"to": {"bob", "eve"}}},
		{"value order", map[string][]string{"to": {"bob", "eve"}}, map[string][]string{"to": {"eve", "bob"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &api{}
			h, err := idemlambda.APIGateway(memstore.New(), a.handle)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			first := withQuery(apiRequest("POST", "k", `{}`), tc.a)
			if r, _ := h(ctx, first); r.StatusCode != http.StatusCreated {
				t.Fatalf("first: status %d", r.StatusCode)
			}
			if r, _ := h(ctx, withQuery(apiRequest("POST", "k", `{}`), tc.b)); r.StatusCode != http.StatusUnprocessableEntity {
				t.Errorf("%v after %v: status %d (replayed %q), want 422", tc.b, tc.a, r.StatusCode, r.Headers[idemhttpReplayed])
			}
			if r, _ := h(ctx, first); r.Headers[idemhttpReplayed] != "true" {
				t.Errorf("the first request again: status %d, want a replay", r.StatusCode)
			}
			if a.runs.Load() != 1 {
				t.Errorf("runs: %d, want 1", a.runs.Load())
			}
		})
	}
}

// TestAPIGatewayFingerprintStable: the default fingerprint of a request,
// as stored with its key, is pinned: a change would make retries of
// requests stored before it get 422 for as long as those are kept.
func TestAPIGatewayFingerprintStable(t *testing.T) {
	s := memstore.New()
	h, err := idemlambda.APIGateway(s, (&api{}).handle, idemlambda.WithKeyPrefix("p/"))
	if err != nil {
		t.Fatal(err)
	}
	r := withQuery(apiRequest("POST", "k", `{"sku":"book"}`), map[string][]string{"amount": {"100"}, "to": {"bob", "eve"}})
	h(context.Background(), r)
	it, err := s.Get(context.Background(), "p/"+idem.JoinKey("", "k"))
	if err != nil {
		t.Fatal(err)
	}
	_, fp := storedRecord(t, it.Value)
	if got, want := hex.EncodeToString(fp), "682ad5927c3d91415e0df7e21e39356d0d30fc453117afe719fedbf5b9ca669d"; got != want {
		t.Errorf("fingerprint: got %s, want %s", got, want)
	}
}

// TestAPIGatewayScopesApart: a caller without an authorizer whose
// Authorization header reads "principal:" and a user's ID, or that header
// with "authorization:" before it, is kept apart from that user. The
// default scope used to hash the principal's ID behind "principal:" and
// the header as it is, so such a header shared the user's scope and, with
// the user's key, got the user's stored response.
func TestAPIGatewayScopesApart(t *testing.T) {
	a := &api{}
	h, err := idemlambda.APIGateway(memstore.New(), a.handle)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	user := apiRequest("POST", "k", `{"sku":"book"}`)
	user.RequestContext.Authorizer = map[string]any{"principalId": "alice"}
	stored, _ := h(ctx, user)
	for _, auth := range []string{"principal:alice", "authorization:principal:alice"} {
		other := apiRequest("POST", "k", `{"sku":"book"}`)
		other.Headers["Authorization"] = auth
		if r, _ := h(ctx, other); r.Headers[idemhttpReplayed] == "true" || r.Body == stored.Body {
			t.Errorf("Authorization %q: got %+v, the user's stored response; want a run of its own", auth, r)
		}
	}
	if r, _ := h(ctx, user); r.Body != stored.Body || r.Headers[idemhttpReplayed] != "true" {
		t.Errorf("the user again: got %+v, want the stored response", r)
	}
	if a.runs.Load() != 3 {
		t.Errorf("runs: %d, want 3 (one per scope)", a.runs.Load())
	}
}
