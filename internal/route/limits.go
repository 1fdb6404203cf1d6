package route

// Bounds on configuration. Each keeps compile time, memory and match time
// bounded whatever the configuration says.
const (
	// MaxRoutes bounds the table. A gateway fronting more than a thousand
	// distinct routes should be split; the bound also caps the work a
	// failing lookup (which walks every matching branch) can do.
	MaxRoutes = 1000
	// MaxPatternLen bounds a path pattern in bytes.
	MaxPatternLen = 1024
	// MaxSegments bounds the segments in a pattern; it is also the deepest
	// the matcher recurses.
	MaxSegments = 32
	// MaxParamNameLen bounds a parameter name.
	MaxParamNameLen = 64
	// MaxNameLen bounds a route name, which appears in logs and metric
	// labels.
	MaxNameLen = 64
	// MaxAudiences bounds the audiences of one route.
	MaxAudiences = 16
	// MaxAudienceLen bounds one audience value.
	MaxAudienceLen = 256
	// MaxRatePerUnit bounds N in "N/s": beyond a billion a limit is no limit.
	MaxRatePerUnit = 1_000_000_000
	// MaxBurst bounds a bucket's capacity.
	MaxBurst = 1_000_000
	// inlineParams is how many parameters a Match holds without a second
	// allocation.
	inlineParams = 4
)

// ConfigKey is the configuration key under which the routes live; Compile
// prefixes every problem with it ("gateway.routes[2].path: ...").
const ConfigKey = "gateway.routes"

// DefaultStaticKeyHeader is where a route that allows static API keys reads
// them when static_key_header is not set.
const DefaultStaticKeyHeader = "X-Api-Key"
