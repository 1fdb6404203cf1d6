package config

import (
	"maps"
	"strings"
	"testing"
	"time"
)

func TestGovernanceValidation(t *testing.T) {
	day := 24 * time.Hour
	for _, tt := range []struct {
		name   string
		mutate func(g *Governance)
		key    string // "" means valid
	}{
		{"defaults", func(*Governance) {}, ""},
		{"https webhook", func(g *Governance) { g.Notify.Webhook.URL = "https://hooks.example/kb" }, ""},
		{"http webhook on loopback", func(g *Governance) { g.Notify.Webhook.URL = "http://127.0.0.1:9000/kb" }, ""},
		{"http webhook on localhost", func(g *Governance) { g.Notify.Webhook.URL = "http://localhost:9000/kb" }, ""},
		{"http webhook elsewhere", func(g *Governance) { g.Notify.Webhook.URL = "http://hooks.example/kb" }, "governance.notify.webhook.url"},
		{"webhook not a URL", func(g *Governance) { g.Notify.Webhook.URL = "hooks.example/services/SECRET-TOKEN" }, "governance.notify.webhook.url"},
		{"sweep too often", func(g *Governance) { g.SweepInterval = time.Millisecond }, "governance.sweep_interval"},
		{"sweep too rarely", func(g *Governance) { g.SweepInterval = 2 * time.Hour }, "governance.sweep_interval"},
		{"overlap above its maximum", func(g *Governance) { g.RotationOverlap = 31 * day }, "governance.rotation_overlap"},
		{"no overlap", func(g *Governance) { g.RotationOverlap = 0 }, "governance.rotation_overlap"},
		{"maximum overlap above 90 days", func(g *Governance) { g.MaxRotationOverlap = 91 * day }, "governance.max_rotation_overlap"},
		{"no default review interval", func(g *Governance) { g.Reviews.Intervals = map[string]time.Duration{"prod": 90 * day} }, "governance.reviews.intervals"},
		{"review interval under an hour", func(g *Governance) { g.Reviews.Intervals["prod"] = time.Minute }, "governance.reviews.intervals.prod"},
		{"negative grace", func(g *Governance) { g.Reviews.Grace = -time.Hour }, "governance.reviews.grace"},
		{"too many lead times", func(g *Governance) { g.Notify.LeadTimes = make([]time.Duration, 9) }, "governance.notify.lead_times"},
		{"lead time under a minute", func(g *Governance) { g.Notify.LeadTimes = []time.Duration{time.Second} }, "governance.notify.lead_times[0]"},
		{"lead time twice", func(g *Governance) { g.Notify.LeadTimes = []time.Duration{day, day} }, "governance.notify.lead_times[1]"},
		{"no webhook attempts", func(g *Governance) { g.Notify.Webhook.MaxAttempts = 0 }, "governance.notify.webhook.max_attempts"},
		{"webhook timeout too long", func(g *Governance) { g.Notify.Webhook.Timeout = time.Hour }, "governance.notify.webhook.timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c.Governance)
			err := c.Validate()
			switch {
			case tt.key == "" && err != nil:
				t.Fatalf("valid settings refused: %v", err)
			case tt.key != "" && (err == nil || !strings.Contains(err.Error(), tt.key+":")):
				t.Fatalf("error %v does not name %s", err, tt.key)
			case err != nil && strings.Contains(err.Error(), "SECRET-TOKEN"):
				t.Errorf("error %v repeats the webhook URL's path", err)
			}
		})
	}
}

// TestGovernanceYAMLIntervalsReplaceDefaults: the review intervals a file
// lists are the ones in force, not merged into the built-in ones; only a
// missing "default" keeps the built-in one.
func TestGovernanceYAMLIntervalsReplaceDefaults(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		name, intervals string
		want            ReviewIntervals
	}{
		{"default only", "{default: 720h}", ReviewIntervals{"default": 30 * day}},
		{"no default keeps the built-in one", "{prod: 720h, staging: 2160h}", ReviewIntervals{"prod": 30 * day, "staging": 90 * day, "default": 180 * day}},
		{"empty", "{}", ReviewIntervals{"default": 180 * day}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			if err := c.LoadYAML([]byte("governance:\n  reviews:\n    intervals: " + tc.intervals + "\n    auto_suspend: true\n")); err != nil {
				t.Fatal(err)
			}
			if r := c.Governance.Reviews; !maps.Equal(r.Intervals, tc.want) || !r.AutoSuspend {
				t.Errorf("reviews after YAML: %+v, want intervals %v", r, tc.want)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, doc := range []string{
		"governance:\n  reviews:\n    intervals:\n      default: 720h\n      prod: ~\n",
		"governance:\n  reviews:\n    intervals:\n      default: 720h\n      prod:\n",
	} {
		c := Default()
		err := c.LoadYAML([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), "line 5: governance.reviews.intervals.prod has no interval") || !strings.Contains(err.Error(), "leave prod out") {
			t.Errorf("an interval without a value: %v", err)
		}
	}
	c := Default()
	if err := c.LoadYAML([]byte("governance:\n  rotation_overlaps: 1h\n")); err == nil || !strings.Contains(err.Error(), "rotation_overlaps") {
		t.Errorf("unknown governance key: %v", err)
	}
}
