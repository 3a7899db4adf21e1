package dynamo

import (
	"strconv"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// FenceCondition is the condition that fences a write to one of the
// caller's own items with a claim's fence (idem.Lease.Fence): the item is
// absent, has no attribute attr, or its attr is not above fence. Add it to
// the write's condition (And with the caller's own) and write fence into
// attr with the same write: FenceUpdate for an UpdateItem, FenceValue in
// the item for a PutItem. A stalled owner whose key a later claim has
// taken over then has its write refused, with a
// *types.ConditionalCheckFailedException, as soon as the later claim has
// written the item once (see Fenced).
//
// The condition is "not above", not "below": one claim may write its item
// more than once, and may send its own write again after a lost response.
// No two claims of a key share a fence, so an equal fence is always the
// same claim's. attr is one attribute, taken whole ("idem.fence" is not a
// document path); an empty attr fails when the expression is built.
func FenceCondition(attr string, fence int64) expression.ConditionBuilder {
	n := name(attr)
	return expression.AttributeNotExists(n).Or(n.LessThanEqual(expression.Value(fence)))
}

// FenceUpdate adds SET attr = fence to u, for an UpdateItem conditioned on
// FenceCondition(attr, fence).
func FenceUpdate(u expression.UpdateBuilder, attr string, fence int64) expression.UpdateBuilder {
	return u.Set(name(attr), expression.Value(fence))
}

// FenceValue is fence as a DynamoDB number, to put in the item's attr for a
// PutItem conditioned on FenceCondition(attr, fence).
func FenceValue(fence int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(fence, 10)}
}

// Fenced reports whether err, from a write conditioned on
// FenceCondition(attr, fence), was refused by the fence: a later claim has
// written the item, and current is its fence. It needs the item in the
// refusal, so send the write with ReturnValuesOnConditionCheckFailure set
// to ALL_OLD (without it ok is always false). When the caller's own
// conditions are combined with the fence, ok false on a
// *types.ConditionalCheckFailedException means the fence held and one of
// those failed.
func Fenced(err error, attr string, fence int64) (current int64, ok bool) {
	ccf, isCCF := conditionFailed(err)
	if !isCCF {
		return 0, false
	}
	n, isN := ccf.Item[attr].(*types.AttributeValueMemberN)
	if !isN {
		return 0, false
	}
	current, perr := strconv.ParseInt(n.Value, 10, 64)
	if perr != nil || current <= fence {
		return 0, false
	}
	return current, true
}
