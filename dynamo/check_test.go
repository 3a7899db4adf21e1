package dynamo_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/internal/testenv"
)

// TestCheck: Check passes on a table CreateTable made for the Store's
// options, and on every other table says what is wrong, naming the table
// and the endpoint and what to run.
func TestCheck(t *testing.T) {
	for _, srv := range testenv.DynamoDBServers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			single := []dynamo.Option{dynamo.WithKeyAttribute("PK"), dynamo.WithSortKey("SK", "idem"), dynamo.WithExpiryAttribute("ttl")}
			c, plain := table(t, srv)
			_, sorted := table(t, srv, single...)
			noTTL := rawTable(t, c)
			missing := testenv.UniqueName(t, "missing")

			for _, tc := range []struct {
				name  string
				table string
				opts  []dynamo.Option
				want  error // nil: Check passes
				hint  string
			}{
				{"good table", plain, nil, nil, ""},
				{"good single-table layout", sorted, single, nil, ""},
				{"missing table", missing, nil, dynamo.ErrTableNotFound, `dynamo.CreateTable(ctx, client, "` + missing + `")`},
				{"sort key the table lacks", plain, []dynamo.Option{dynamo.WithSortKey("SK", "idem")}, dynamo.ErrSchemaMismatch, "WithSortKey"},
				{"other partition key", plain, []dynamo.Option{dynamo.WithKeyAttribute("id")}, dynamo.ErrSchemaMismatch, "HASH id (S)"},
				{"no sort key on a sorted table", sorted, []dynamo.Option{dynamo.WithKeyAttribute("PK"), dynamo.WithExpiryAttribute("ttl")}, dynamo.ErrSchemaMismatch, "RANGE SK (S)"},
				{"ttl on another attribute", sorted, []dynamo.Option{dynamo.WithKeyAttribute("PK"), dynamo.WithSortKey("SK", "idem")}, dynamo.ErrSchemaMismatch, `WithExpiryAttribute("ttl")`},
				{"ttl disabled", noTTL, nil, dynamo.ErrSchemaMismatch, `enable it on "exp"`},
			} {
				t.Run(tc.name, func(t *testing.T) {
					err := mustStore(t, c, tc.table, tc.opts...).Check(ctx)
					if tc.want == nil {
						if err != nil {
							t.Fatalf("Check: %v", err)
						}
						return
					}
					if !errors.Is(err, tc.want) {
						t.Fatalf("Check: got %v, want %v", err, tc.want)
					}
					msg := err.Error()
					for _, s := range []string{"table " + tc.table, "region us-east-1", srv.Endpoint, tc.hint} {
						if !strings.Contains(msg, s) {
							t.Errorf("Check: the error does not say %q: %s", s, msg)
						}
					}
					t.Log(msg)
				})
			}
		})
	}
}

// TestCheckNoDescribe: a client without the describe calls gets an error
// that says so, not a pass.
func TestCheckNoDescribe(t *testing.T) {
	s, err := dynamo.New(sink{}, "t")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "TableDescriber") {
		t.Fatalf("Check with a client lacking DescribeTable: got %v, want an error naming dynamo.TableDescriber", err)
	}
}

// rawTable creates a table with the default key schema and time to live
// left off, as a console or an old script might, and deletes it when the
// test ends.
func rawTable(t *testing.T, c *dynamodb.Client) string {
	t.Helper()
	ctx := ctxT(t)
	name := testenv.UniqueName(t, "nottl")
	testenv.DeleteTableOnCleanup(t, c, name)
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(dynamo.DefaultKeyAttribute), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(dynamo.DefaultKeyAttribute), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := dynamodb.NewTableExistsWaiter(c).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	return name
}
