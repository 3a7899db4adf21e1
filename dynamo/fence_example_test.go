package dynamo_test

import (
	"context"
	"fmt"
	"log"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/idemkit/idemkit/dynamo"
	"github.com/idemkit/idemkit/idem"
)

// Fencing the caller's own item: fn writes the order with its claim's
// fence, so a worker that stalled past its lease, and whose key another
// caller took over, cannot overwrite the newer worker's order when it
// wakes. This example is compiled, not run: it needs a DynamoDB.
func ExampleFenceCondition() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	client := dynamodb.NewFromConfig(cfg)
	store, err := dynamo.New(client, "idem")
	if err != nil {
		log.Fatal(err)
	}

	status, err := idem.Do(ctx, store, idem.JoinKey("ship", "order-42"), func(ctx context.Context) (string, error) {
		lease, _ := idem.LeaseFrom(ctx)
		fence := lease.Fence()
		ex, err := expression.NewBuilder().
			WithCondition(dynamo.FenceCondition("fence", fence)).
			WithUpdate(dynamo.FenceUpdate(expression.Set(expression.Name("status"), expression.Value("shipped")), "fence", fence)).
			Build()
		if err != nil {
			return "", err
		}
		_, err = client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                           aws.String("orders"),
			Key:                                 map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "order-42"}},
			UpdateExpression:                    ex.Update(),
			ConditionExpression:                 ex.Condition(),
			ExpressionAttributeNames:            ex.Names(),
			ExpressionAttributeValues:           ex.Values(),
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		if current, ok := dynamo.Fenced(err, "fence", fence); ok {
			// A later claim (fence current) owns the order now: stop here.
			// Do will not store this call's answer either.
			return "", fmt.Errorf("order-42 taken over at fence %d: %w", current, idem.ErrLeaseLost)
		}
		return "shipped", err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(status)
}
