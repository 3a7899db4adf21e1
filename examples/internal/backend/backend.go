// Package backend opens the idem.Store an example runs on, chosen by a
// -store flag: the embedded in-memory store by default, or a real DynamoDB
// or Cassandra found through the same environment variables the tests use.
//
//	-store=memory     memstore.New(); nothing to set up
//	-store=dynamodb   IDEM_DYNAMODB_ENDPOINT (a URL), else the first entry of
//	                  IDEM_DYNAMODB_ENDPOINTS (name=url,...), else the AWS
//	                  default endpoint; credentials and region from the AWS
//	                  default chain. Table IDEM_TABLE (default
//	                  idemkit_examples), created if missing.
//	-store=cassandra  IDEM_CASSANDRA_HOSTS (host:port,..., default
//	                  127.0.0.1:9042); table IDEM_KEYSPACE.IDEM_TABLE
//	                  (default idemkit_examples.idem). A missing keyspace is
//	                  created with SimpleStrategy and one replica, which
//	                  suits a single local node only.
package backend

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/idemkit/idemkit/cassandra"
	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/memstore"
)

// Flag registers the -store flag on the default FlagSet and returns its
// value.
func Flag() *string {
	return flag.String("store", "memory", "where keys live: memory, dynamodb or cassandra (see examples/internal/backend)")
}

// MustOpen is Open for an example's main: it prints the error, prefixed
// with the program's name, and exits with status 2 when the store cannot be
// opened.
func MustOpen(ctx context.Context, program, kind string) (idem.Store, func()) {
	s, closeStore, err := Open(ctx, kind)
	if err != nil {
		fmt.Fprintln(os.Stderr, program+":", err)
		os.Exit(2)
	}
	return s, closeStore
}

// Open returns the store named kind and a function that releases it.
func Open(ctx context.Context, kind string) (idem.Store, func(), error) {
	switch kind {
	case "memory", "":
		return memstore.New(), func() {}, nil
	case "dynamodb":
		return openDynamoDB(ctx)
	case "cassandra":
		return openCassandra(ctx)
	}
	return nil, nil, fmt.Errorf("unknown store %q (want memory, dynamodb or cassandra)", kind)
}

func openDynamoDB(ctx context.Context) (idem.Store, func(), error) {
	client, table, err := DynamoDB(ctx)
	if err != nil {
		return nil, nil, err
	}
	store, err := dynamo.New(client, table)
	if err != nil {
		return nil, nil, err
	}
	return store, func() {}, nil
}

// DynamoDB returns a client of the DynamoDB that -store=dynamodb uses and
// the name of its idem table, created if missing, for an example that
// needs more than the idem.Store (dynamo.DoTx, its own tables). optFns
// adjust the client, e.g. to put an http.RoundTripper in front of it.
func DynamoDB(ctx context.Context, optFns ...func(*dynamodb.Options)) (*dynamodb.Client, string, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("dynamodb: loading AWS config: %w", err)
	}
	endpoint := os.Getenv("IDEM_DYNAMODB_ENDPOINT")
	if endpoint == "" {
		if first, _, _ := strings.Cut(os.Getenv("IDEM_DYNAMODB_ENDPOINTS"), ","); first != "" {
			_, endpoint, _ = strings.Cut(first, "=")
		}
	}
	client := dynamodb.NewFromConfig(cfg, append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}}, optFns...)...)
	table := cmp.Or(os.Getenv("IDEM_TABLE"), "idemkit_examples")
	if err := dynamo.CreateTable(ctx, client, table); err != nil {
		return nil, "", fmt.Errorf("dynamodb: table %s at %s: %w", table, cmp.Or(endpoint, "AWS"), err)
	}
	return client, table, nil
}

func openCassandra(ctx context.Context) (idem.Store, func(), error) {
	session, table, err := Cassandra(ctx)
	if err != nil {
		return nil, nil, err
	}
	store, err := cassandra.New(session, table)
	if err != nil {
		session.Close()
		return nil, nil, fmt.Errorf("cassandra: table %s: %w", table, err)
	}
	return store, session.Close, nil
}

// Cassandra returns a session on the Cassandra that -store=cassandra uses
// and its idem table ("keyspace.table"), created with its keyspace if
// missing, for an example that needs more than the idem.Store (tables of
// its own next to the idem table). The caller closes the session.
func Cassandra(ctx context.Context) (*gocql.Session, string, error) {
	hosts := strings.Split(cmp.Or(os.Getenv("IDEM_CASSANDRA_HOSTS"), "127.0.0.1:9042"), ",")
	cluster := gocql.NewCluster(hosts...) // host:port entries are accepted
	cluster.Timeout = 12 * time.Second
	cluster.ConnectTimeout = 10 * time.Second
	session, err := cluster.CreateSession()
	if err != nil {
		return nil, "", fmt.Errorf("cassandra: connecting to %v: %w", hosts, err)
	}
	keyspace := cmp.Or(os.Getenv("IDEM_KEYSPACE"), "idemkit_examples")
	table := keyspace + "." + cmp.Or(os.Getenv("IDEM_TABLE"), "idem")
	err = session.Query(fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s
		WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`, keyspace)).ExecContext(ctx)
	if err == nil {
		err = cassandra.CreateTable(ctx, session, table)
	}
	if err != nil {
		session.Close()
		return nil, "", fmt.Errorf("cassandra: table %s: %w", table, err)
	}
	return session, table, nil
}
