package dynamo

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// TableDescriber is the part of the DynamoDB API Check uses, beyond the
// Store's Client. *dynamodb.Client satisfies it; a wrapper or a DAX client
// passed to New must too for Check to work.
type TableDescriber interface {
	DescribeTable(ctx context.Context, params *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	DescribeTimeToLive(ctx context.Context, params *dynamodb.DescribeTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error)
}

var _ TableDescriber = (*dynamodb.Client)(nil)

// Check reports whether the Store's table is ready, for a readiness probe
// or at startup: it exists and is active (or updating, which serves
// requests), its key schema is the one the Store's options describe (as
// CreateTable makes it), and time to live is enabled on the expiry
// attribute. It sends one DescribeTable and one DescribeTimeToLive, and
// writes nothing.
//
// A missing or inactive table gives an error matching ErrTableNotFound; a
// table with another key schema, or with time to live off or on another
// attribute, one matching ErrSchemaMismatch. Each error names the table
// and, for a *dynamodb.Client, its region and endpoint, and says what to
// run. The client given to New must implement TableDescriber.
func (s *Store) Check(ctx context.Context) error {
	d, ok := s.client.(TableDescriber)
	if !ok {
		return fmt.Errorf("dynamo: Check %s: the client (%T) has no DescribeTable and DescribeTimeToLive methods (dynamo.TableDescriber); pass a *dynamodb.Client to New, or wrap one that has them", s.where(), s.client)
	}
	create := fmt.Sprintf("dynamo.CreateTable(ctx, client, %q) with the Store's options", s.table)
	out, err := d.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: s.tableName})
	if err != nil {
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			return fmt.Errorf("dynamo: Check: %s does not exist: %w; create it with %s (or its CloudFormation/Terraform equivalent, see dynamo/README.md): %w",
				s.where(), ErrTableNotFound, create, err)
		}
		if sent := sentinelFor(err); sent != nil {
			return fmt.Errorf("dynamo: Check %s: describing the table: %w: %w", s.where(), sent, err)
		}
		return fmt.Errorf("dynamo: Check %s: describing the table: %w", s.where(), err)
	}
	if st := out.Table.TableStatus; st != types.TableStatusActive && st != types.TableStatusUpdating {
		return fmt.Errorf("dynamo: Check: %s is %s, not ACTIVE: %w; wait for it (%s waits until it is active)",
			s.where(), st, ErrTableNotFound, create)
	}
	if got, want := tableKeySchema(out.Table), s.cfg.keySchema(); !equalSchema(got, want) {
		return fmt.Errorf("dynamo: Check: %s: %w: the table's key is %s, the Store's options want %s; pass the options the table was created with (WithKeyAttribute, WithSortKey), or create a table for these options with %s",
			s.where(), ErrSchemaMismatch, formatSchema(got), formatSchema(want), create)
	}
	ttl, err := d.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: s.tableName})
	if err != nil {
		return fmt.Errorf("dynamo: Check %s: describing time to live: %w", s.where(), err)
	}
	var on string
	var status types.TimeToLiveStatus = types.TimeToLiveStatusDisabled
	if t := ttl.TimeToLiveDescription; t != nil {
		on, status = aws.ToString(t.AttributeName), t.TimeToLiveStatus
	}
	switch {
	case (status == types.TimeToLiveStatusEnabled || status == types.TimeToLiveStatusEnabling) && on == s.cfg.exp:
		return nil
	case status == types.TimeToLiveStatusEnabled || status == types.TimeToLiveStatusEnabling:
		return fmt.Errorf("dynamo: Check: %s: %w: time to live is on attribute %q, the Store's expiry attribute is %q; pass WithExpiryAttribute(%q), or create a table for these options with %s",
			s.where(), ErrSchemaMismatch, on, s.cfg.exp, on, create)
	}
	return fmt.Errorf("dynamo: Check: %s: %w: time to live is %s, so DynamoDB never deletes expired items; enable it on %q (%s does)",
		s.where(), ErrSchemaMismatch, status, s.cfg.exp, create)
}

// where names the Store's table and, for a *dynamodb.Client, its region
// and endpoint.
func (s *Store) where() string {
	w := "table " + s.table
	c, ok := s.client.(*dynamodb.Client)
	if !ok {
		return w
	}
	o := c.Options()
	if o.Region != "" {
		w += " in region " + o.Region
	}
	if e := aws.ToString(o.BaseEndpoint); e != "" {
		w += " at " + e
	}
	return w
}
