package posture

// Thresholds and bounds, each with its reason. The rules that use them are
// documented in docs/usage-and-posture.md.
const (
	// DefaultIdleDays is N in "idle: no allowed gateway request in N days",
	// and the grace an identity younger than N days gets before it can be
	// called idle or over-privileged. 30 days covers monthly jobs' gaps no
	// better than a reviewer would; callers pass their own N for those.
	DefaultIdleDays = 30

	// MaxIdleDays bounds N: idle is read from all-time activity, so any N
	// works, but beyond ten years the question is meaningless.
	MaxIdleDays = 3650

	// DefaultMaxSources is how many distinct source addresses in 30 days a
	// machine identity may be used from before the spread is called
	// unusual. A service runs on a few hosts; ten leaves room for a small
	// fleet and its redeployments.
	DefaultMaxSources = 10

	// MaxMaxSources bounds the threshold a caller may set.
	MaxMaxSources = 1_000_000

	// SuddenNewSources is the fewest new addresses in the last 7 days that
	// can count as a sudden spread (when they also outnumber the addresses
	// the identity was seen from before): one or two new hosts is a
	// redeployment.
	SuddenNewSources = 3

	// PeriodDays is the window the posture report's traffic shares and
	// per-route evidence cover.
	PeriodDays = 30

	// LongLivedDays is the lifetime (expiry minus creation) above which an
	// identity counts as long-lived: a credential valid for more than a
	// quarter outlives most reorganisations that should have ended it.
	LongLivedDays = 90

	// MaxListedIDs bounds the client ids a posture finding lists as
	// evidence; the count is always complete.
	MaxListedIDs = 20
)

// Windows are the usage windows in days, in the order Counts holds them.
var Windows = []int{7, 30, 90}
