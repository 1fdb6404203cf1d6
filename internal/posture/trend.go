package posture

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/keybound/keybound/internal/store"
)

// snapshotVersion is the format of a snapshot Body. A snapshot of another
// version is ignored, never misread.
const snapshotVersion = 1

// Trend is what changed since the previous report's snapshot.
type Trend struct {
	// PreviousAt is when the previous report ran; nil for the first one.
	PreviousAt *time.Time `json:"previous_at"`
	// Changes holds every headline metric of this report, in a fixed
	// order, with its previous value when that report had it.
	Changes []Change `json:"changes"`
}

// Change is one headline metric now and at the previous report. Previous
// and Delta are nil when the previous report did not measure it.
type Change struct {
	Metric   string   `json:"metric"`
	Label    string   `json:"label"`
	Current  float64  `json:"current"`
	Previous *float64 `json:"previous"`
	Delta    *float64 `json:"delta"`
	// LowerIsBetter says how to read Delta.
	LowerIsBetter bool `json:"lower_is_better"`
}

type metric struct {
	key, label  string
	lowerBetter bool
	value       func(r *Report) (float64, bool)
}

func findingMetric(key string) func(r *Report) (float64, bool) {
	return func(r *Report) (float64, bool) {
		n := r.count(key)
		return float64(n), n >= 0
	}
}

func pctMetric(p func(r *Report) *float64) func(r *Report) (float64, bool) {
	return func(r *Report) (float64, bool) {
		v := p(r)
		if v == nil {
			return 0, false
		}
		return *v, true
	}
}

// metrics are the headline figures a snapshot keeps, in report order. Only
// measured figures are kept: a figure not tracked has no value to compare.
var metrics = []metric{
	{"active_identities", "Active identities", false, func(r *Report) (float64, bool) { return float64(r.Inventory.Active), true }},
	{"static_secret_share_pct", "Requests on static secrets (%)", true, pctMetric(func(r *Report) *float64 { return r.Traffic.Overall.StaticSecretPct })},
	{"bearer_share_pct", "Requests on unbound bearer tokens (%)", true, pctMetric(func(r *Report) *float64 { return r.Traffic.Overall.BearerPct })},
	{"sender_constrained_share_pct", "Requests on sender-constrained tokens (%)", false, pctMetric(func(r *Report) *float64 { return r.Traffic.Overall.SenderConstrainedPct })},
	{"static_secret_identities", "Identities with static secrets", true, findingMetric(KeyStaticSecret)},
	{"bearer_identities", "Identities with bearer tokens", true, findingMetric(KeyBearer)},
	{"no_owner", "Identities with no owner", true, findingMetric(KeyNoOwner)},
	{"no_expiry", "Identities with no expiry", true, findingMetric(KeyNoExpiry)},
	{"long_lived", "Long-lived identities", true, findingMetric(KeyLongLived)},
	{"expired_not_offboarded", "Expired, not offboarded", true, findingMetric(KeyExpiredActive)},
	{"expired_still_used", "Expired identities still used", true, findingMetric(KeyExpiredUsed)},
	{"overdue_reviews", "Overdue access reviews", true, findingMetric(KeyOverdueReview)},
	{"orphaned", "Orphaned identities", true, findingMetric(KeyOrphaned)},
	{"idle", "Idle identities", true, findingMetric(KeyIdle)},
	{"over_privileged", "Over-privileged identities", true, findingMetric(KeyOverPrivileged)},
	{"cross_environment", "Cross-environment identities", true, findingMetric(KeyCrossEnvironment)},
	{"address_spread", "Identities with unusual address spread", true, findingMetric(KeyAddressSpread)},
	{"leaked", "Identities with a leaked secret", true, findingMetric(KeyLeaked)},
	{"misaligned_routes", "Routes below their data class", true, func(r *Report) (float64, bool) {
		return float64(r.Routes.Misaligned), r.Routes.Tracked
	}},
}

// snapshot is a Body as stored.
type snapshot struct {
	Version int                `json:"version"`
	Metrics map[string]float64 `json:"metrics"`
}

// Snapshot returns the store record of r's headline figures.
func (r *Report) Snapshot() (store.PostureSnapshot, error) {
	s := snapshot{Version: snapshotVersion, Metrics: map[string]float64{}}
	for _, m := range metrics {
		if v, ok := m.value(r); ok {
			s.Metrics[m.key] = v
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return store.PostureSnapshot{}, fmt.Errorf("posture: snapshot: %w", err)
	}
	return store.PostureSnapshot{Time: r.GeneratedAt, Body: b}, nil
}

// ApplyTrend fills r.Trend from prev, the previous report's snapshot (nil
// for none). A snapshot this version cannot read counts as none.
func (r *Report) ApplyTrend(prev *store.PostureSnapshot) {
	var old snapshot
	if prev != nil && json.Unmarshal(prev.Body, &old) == nil && old.Version == snapshotVersion {
		t := prev.Time.UTC()
		r.Trend.PreviousAt = &t
	} else {
		old.Metrics = nil
	}
	r.Trend.Changes = []Change{}
	for _, m := range metrics {
		v, ok := m.value(r)
		if !ok {
			continue
		}
		c := Change{Metric: m.key, Label: m.label, Current: v, LowerIsBetter: m.lowerBetter}
		if p, had := old.Metrics[m.key]; had {
			d := math.Round((v-p)*10) / 10
			c.Previous, c.Delta = &p, &d
		}
		r.Trend.Changes = append(r.Trend.Changes, c)
	}
}
