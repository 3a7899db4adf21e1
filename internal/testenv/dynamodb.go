package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDBServer is one DynamoDB-compatible endpoint to test against.
type DynamoDBServer struct {
	// Name identifies the server in test names and capability checks: "moto", "ministack",
	// "dynamodb" (IDEM_DYNAMODB_ENDPOINT, an unknown server), or any name given
	// in IDEM_DYNAMODB_ENDPOINTS.
	Name string
	// Endpoint is the base URL, e.g. http://127.0.0.1:5000.
	Endpoint string

	kind string // which emulator, for Lacks: "moto", "ministack", "dynalite" or "" (unknown)
}

// DynamoDBServers returns every DynamoDB endpoint the tests should run against: those in
// IDEM_DYNAMODB_ENDPOINTS (name=url,...) and IDEM_DYNAMODB_ENDPOINT (url, named "dynamodb").
// When neither is set it skips t, or fails it when RequireServers. A malformed variable always
// fails t. testenv/up.sh starts moto and ministack on loopback; with Docker,
// `eval "$(make -s docker-env)"` starts a moto container.
//
// Run each server as a subtest so a failure names it:
//
//	for _, srv := range testenv.DynamoDBServers(t) {
//		t.Run(srv.Name, func(t *testing.T) { c := srv.Client(t); ... })
//	}
func DynamoDBServers(t testing.TB) []DynamoDBServer {
	t.Helper()
	servers, err := dynamoDBServersFromEnv(os.Getenv("IDEM_DYNAMODB_ENDPOINTS"), os.Getenv("IDEM_DYNAMODB_ENDPOINT"))
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) > 0 {
		return servers
	}
	unavailable(t, "no DynamoDB server: set IDEM_DYNAMODB_ENDPOINTS (testenv/up.sh, then eval \"$(testenv/env.sh)\"; or, with Docker, eval \"$(make -s docker-env)\")")
	return nil
}

// dynamoDBServersFromEnv parses IDEM_DYNAMODB_ENDPOINTS and IDEM_DYNAMODB_ENDPOINT.
func dynamoDBServersFromEnv(list, single string) ([]DynamoDBServer, error) {
	var out []DynamoDBServer
	seen := map[string]bool{}
	add := func(name, ep string) error {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("testenv: DynamoDB endpoint %q for %q is not an http(s) URL", ep, name)
		}
		if !validServerName(name) {
			return fmt.Errorf("testenv: DynamoDB server name %q: want letters, digits, '_', '-' or '.'", name)
		}
		if seen[name] {
			return fmt.Errorf("testenv: DynamoDB server name %q given twice", name)
		}
		seen[name] = true
		out = append(out, DynamoDBServer{Name: name, Endpoint: strings.TrimRight(ep, "/"), kind: kindOf(name)})
		return nil
	}
	for _, f := range splitList(list) {
		name, ep, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("testenv: IDEM_DYNAMODB_ENDPOINTS entry %q is not name=url", f)
		}
		if err := add(strings.TrimSpace(name), strings.TrimSpace(ep)); err != nil {
			return nil, err
		}
	}
	if single = strings.TrimSpace(single); single != "" {
		if err := add("dynamodb", single); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func validServerName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// kindOf guesses the emulator from a server name or image name.
func kindOf(s string) string {
	s = strings.ToLower(s)
	for _, k := range []string{"moto", "ministack", "dynalite"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	return ""
}

// DynamoDBIdleConnTimeout is how long the clients testenv makes keep an idle connection:
// below every emulator's own keep-alive timeout, so that a request never goes out on a
// connection the server is closing (the request is written, the server drops it unread, and
// the outcome is unknown). hypercorn, ministack's server, closes connections idle for longer
// than its keep-alive timeout: 5 s by default, 75 s as ministack 1.5.33 sets it. moto's
// werkzeug server closes every connection after its response. The SDK's default is 90 s.
const DynamoDBIdleConnTimeout = 4 * time.Second

// NewDynamoDBTransport returns the SDK's default transport with IdleConnTimeout set to
// DynamoDBIdleConnTimeout, as the clients Client makes use. Tests that put their own
// http.RoundTripper in front of a server forward to one.
func NewDynamoDBTransport() *http.Transport {
	return newDynamoDBHTTPClient().GetTransport()
}

func newDynamoDBHTTPClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.IdleConnTimeout = DynamoDBIdleConnTimeout
	})
}

// Client returns a DynamoDB client for the server: region us-east-1, static test credentials,
// BaseEndpoint = s.Endpoint, idle connections closed after DynamoDBIdleConnTimeout, and a
// standard retryer with 3 attempts, short backoff and no client-side retry quota (so
// fault-injection tests cannot exhaust it). Nothing is read from the machine's AWS
// configuration. optFns adjust the options further, e.g. to install an http.RoundTripper
// that injects faults.
func (s DynamoDBServer) Client(t testing.TB, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	t.Helper()
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:  newDynamoDBHTTPClient(),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.MaxBackoff = 200 * time.Millisecond
				o.RateLimiter = ratelimit.None
			})
		},
	}
	opts := append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(s.Endpoint)
	}}, optFns...)
	return dynamodb.NewFromConfig(cfg, opts...)
}

// Capability is a DynamoDB behaviour that some emulators lack. A test that depends on one asks
// DynamoDBServer.Lacks and skips only on the servers that lack it.
type Capability string

// The capabilities known to differ between DynamoDB and the emulators testenv runs. Each was
// checked against moto 5.2.5 and ministack 1.5.33 (see TestCapabilities and testenv/README.md).
const (
	// CapTTLDeletion: the server deletes items whose TTL attribute has passed, by itself.
	// ministack sweeps every 60 s; DynamoDB does so lazily, typically within 48 hours, so no
	// correctness test may wait for it. moto never deletes.
	CapTTLDeletion Capability = "ttl-deletion"
	// CapFullItemSize: items up to DynamoDB's 400 KB limit (409,600 bytes) are accepted.
	// moto rejects items over 405,000 bytes.
	CapFullItemSize Capability = "full-item-size"
	// CapClientRequestToken: TransactWriteItems with a ClientRequestToken is idempotent (a
	// replay within 10 minutes succeeds without applying again). moto ignores the token.
	CapClientRequestToken Capability = "client-request-token"
	// CapStrictValidation: malformed expressions are rejected with a ValidationException
	// (an unused ExpressionAttributeValues entry, an undefined :placeholder). moto accepts the
	// first and answers the second with HTTP 500, which the SDK retries.
	CapStrictValidation Capability = "strict-validation"
	// CapReturnValuesOnConditionCheckFailure: a failed condition returns the current item when
	// ReturnValuesOnConditionCheckFailure=ALL_OLD is set (PutItem, UpdateItem, DeleteItem and
	// in transactions). dynalite ignores it.
	CapReturnValuesOnConditionCheckFailure Capability = "return-values-on-condition-check-failure"
	// CapAtomicConditionalWrites: concurrent conditional writes on one item are atomic, as
	// in DynamoDB: of two compare-and-swaps from the same version, at most one succeeds.
	// moto_server checks conditions and writes without a lock, so under concurrency both can
	// succeed and an update is lost; testenv's moto (testenv/moto.sh and the moto container)
	// runs moto with requests serialized and has it.
	CapAtomicConditionalWrites Capability = "atomic-conditional-writes"
	// CapTransactions: TransactWriteItems and TransactGetItems. dynalite has neither.
	CapTransactions Capability = "transactions"
)

// gaps lists, per emulator, the capabilities it lacks and why.
var gaps = map[string]map[Capability]string{
	"moto": {
		CapTTLDeletion:        "moto never deletes expired TTL items",
		CapFullItemSize:       "moto rejects items over 405,000 bytes; DynamoDB accepts 409,600",
		CapClientRequestToken: "moto ignores ClientRequestToken: a replayed transaction runs again",
		CapStrictValidation:   "moto accepts unused ExpressionAttributeValues and answers an undefined :placeholder with HTTP 500",
	},
	"dynalite": {
		CapTTLDeletion:                         "dynalite has no UpdateTimeToLive",
		CapClientRequestToken:                  "dynalite has no transactions",
		CapTransactions:                        "dynalite has no TransactWriteItems or TransactGetItems",
		CapReturnValuesOnConditionCheckFailure: "dynalite ignores ReturnValuesOnConditionCheckFailure",
	},
}

// Lacks reports whether the server is known to lack capability c, and if so why, in a form fit
// for t.Skip. Servers of unknown kind (a plain IDEM_DYNAMODB_ENDPOINT, real DynamoDB) are
// assumed to have every capability.
//
//	if reason, lacks := srv.Lacks(testenv.CapTTLDeletion); lacks {
//		t.Skip(reason)
//	}
func (s DynamoDBServer) Lacks(c Capability) (reason string, lacks bool) {
	why, ok := gaps[s.kind][c]
	if !ok {
		return "", false
	}
	return fmt.Sprintf("%s lacks %s: %s", s.Name, c, why), true
}

// DeleteTableOnCleanup deletes table when t ends, whether or not it exists then. A failure
// other than "not found" is reported with t.Errorf, so leaked tables do not go unnoticed.
func DeleteTableOnCleanup(t testing.TB, c *dynamodb.Client, table string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
		var nf *types.ResourceNotFoundException
		if err != nil && !errors.As(err, &nf) {
			t.Errorf("testenv: deleting table %s: %v", table, err)
		}
	})
}
