package dynamo

import (
	"errors"
	"fmt"
	"time"
)

// Default attribute names. The table's partition key is DefaultKeyAttribute,
// of type String, unless WithKeyAttribute or WithSortKey says otherwise.
const (
	DefaultKeyAttribute     = "pk"
	DefaultValueAttribute   = "val"
	DefaultVersionAttribute = "ver"
	DefaultExpiryAttribute  = "exp"
	DefaultTokenAttribute   = "tok"
)

// DynamoDB's limits, checked before anything is sent.
const (
	// MaxPartitionKeyBytes is the largest partition key DynamoDB accepts.
	MaxPartitionKeyBytes = 2048
	// MaxSortKeyBytes is the largest sort key DynamoDB accepts.
	MaxSortKeyBytes = 1024
	// MaxItemBytes is DynamoDB's item size limit (400 KB), which counts
	// attribute names as well as values.
	MaxItemBytes = 400 * 1024
)

// Option configures New and CreateTable. Pass the same options to both.
type Option func(*config)

type config struct {
	pk         string // partition key attribute
	sk         string // sort key attribute; "" when the key is the partition key
	partition  string // static partition key value when sk != ""
	val, ver   string
	exp        string
	tok        string
	consistent bool
	now        func() time.Time
	err        error // first invalid option
}

func newConfig(opts []Option) (config, error) {
	c := config{
		pk:         DefaultKeyAttribute,
		val:        DefaultValueAttribute,
		ver:        DefaultVersionAttribute,
		exp:        DefaultExpiryAttribute,
		tok:        DefaultTokenAttribute,
		consistent: true,
		now:        time.Now,
	}
	for _, o := range opts {
		if o == nil {
			return c, errors.New("dynamo: nil Option")
		}
		o(&c)
	}
	if c.err != nil {
		return c, c.err
	}
	names := map[string]string{}
	for _, a := range []struct{ what, name string }{
		{"key attribute", c.pk},
		{"sort key attribute", c.sk},
		{"value attribute", c.val},
		{"version attribute", c.ver},
		{"expiry attribute", c.exp},
		{"token attribute", c.tok},
	} {
		if a.name == "" {
			if a.what == "sort key attribute" {
				continue
			}
			return c, fmt.Errorf("dynamo: %s name is empty", a.what)
		}
		if len(a.name) > 255 {
			return c, fmt.Errorf("dynamo: %s name %.20q... is over DynamoDB's 255 bytes", a.what, a.name)
		}
		if other, dup := names[a.name]; dup {
			return c, fmt.Errorf("dynamo: %s and %s are both named %q", other, a.what, a.name)
		}
		names[a.name] = a.what
	}
	if c.sk != "" && len(c.partition) > MaxPartitionKeyBytes {
		return c, fmt.Errorf("dynamo: static partition value is %d bytes, over DynamoDB's %d", len(c.partition), MaxPartitionKeyBytes)
	}
	return c, nil
}

func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// WithKeyAttribute names the table's partition key attribute (type String).
// The default is "pk". With WithSortKey it holds the static partition value.
func WithKeyAttribute(name string) Option {
	return func(c *config) { c.pk = name }
}

// WithSortKey selects the single-table layout: every item of this Store
// lives in one partition whose key attribute holds partition, and the idem
// key goes in the sort key attribute name (type String). Keys are then
// limited to MaxSortKeyBytes. By default there is no sort key and the idem
// key is the partition key.
//
// One partition serves at most about 1,000 writes per second on DynamoDB;
// use a separate partition value per Store (per tenant, per function) or the
// default layout when that is too few.
func WithSortKey(name, partition string) Option {
	return func(c *config) {
		switch {
		case name == "":
			c.fail(errors.New("dynamo: WithSortKey: sort key attribute name is empty"))
		case partition == "":
			c.fail(errors.New("dynamo: WithSortKey: static partition value is empty"))
		}
		c.sk, c.partition = name, partition
	}
}

// WithValueAttribute names the attribute holding the item's value (type
// Binary, omitted when the value is empty). The default is "val".
func WithValueAttribute(name string) Option {
	return func(c *config) { c.val = name }
}

// WithVersionAttribute names the attribute holding the item's version (type
// Number). The default is "ver".
func WithVersionAttribute(name string) Option {
	return func(c *config) { c.ver = name }
}

// WithExpiryAttribute names the attribute holding the item's expiry, in
// epoch seconds (type Number, omitted when the item never expires): the
// table's time-to-live attribute. The default is "exp".
func WithExpiryAttribute(name string) Option {
	return func(c *config) { c.exp = name }
}

// WithTokenAttribute names the attribute holding the write token (type
// Binary, 16 random bytes): every write stores a token of its own, so that
// when a write's response is lost, one read of the key tells whether it was
// applied, never mistaking another writer's identical value for its own.
// The default is "tok".
func WithTokenAttribute(name string) Option {
	return func(c *config) { c.tok = name }
}

// WithConsistentRead sets whether Get uses strongly consistent reads. The
// default is true, so a Get always sees every write acknowledged before it.
// Eventually consistent reads cost half the read units but may return an
// older item (or ErrNotFound for a fresh one). Conditional writes are always
// evaluated on the latest item, whatever this says.
func WithConsistentRead(consistent bool) Option {
	return func(c *config) { c.consistent = consistent }
}

// WithClock sets the clock used for expiry: an item written with a ttl
// expires at now()+ttl rounded up to the second, and it is treated as absent
// once now() reaches that second. The default is time.Now. Expiry is judged
// by the clock of the client making each request, so clients whose clocks
// disagree see an item expire at moments that differ by their skew.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now == nil {
			c.fail(errors.New("dynamo: WithClock: nil clock"))
			return
		}
		c.now = now
	}
}
