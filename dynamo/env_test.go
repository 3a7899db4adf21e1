package dynamo_test

// Temporary stand-in for internal/testenv's DynamoDB helpers, same API, until
// that package lands.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

type dynamoDBServer struct{ Name, Endpoint string }

func dynamoDBServers(t testing.TB) []dynamoDBServer {
	t.Helper()
	var out []dynamoDBServer
	for _, kv := range strings.Split(os.Getenv("IDEM_DYNAMODB_ENDPOINTS"), ",") {
		name, ep, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok {
			out = append(out, dynamoDBServer{name, ep})
		}
	}
	if len(out) == 0 {
		if os.Getenv("IDEM_REQUIRE_SERVERS") == "1" {
			t.Fatal("no DynamoDB endpoints")
		}
		t.Skip("no DynamoDB endpoints: set IDEM_DYNAMODB_ENDPOINTS")
	}
	return out
}

func (s dynamoDBServer) Client(t testing.TB) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(s.Endpoint),
	})
}

var seq atomic.Int64

func uniqueName(t testing.TB, prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e9, seq.Add(1))
}

func deleteTableOnCleanup(t testing.TB, c *dynamodb.Client, table string) {
	t.Cleanup(func() {
		_, _ = c.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
}

type capability string

const capFullItemSize capability = "full-item-size"

func (s dynamoDBServer) lacks(c capability) (string, bool) {
	if s.Name == "moto" && c == capFullItemSize {
		return "moto caps items at 405,000 bytes; DynamoDB accepts 409,600", true
	}
	return "", false
}
