package adminapi

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/review"
)

func TestParseReviewQuery(t *testing.T) {
	tests := []struct {
		query  string
		want   review.Filter
		fields []string // the parameters named in the problem; nil: no error
	}{
		{"", review.Filter{}, nil},
		{"state=overdue&environment=prod&owner=a%40example.com", review.Filter{State: "overdue", Environment: "prod", Owner: "a@example.com"}, nil},
		{"state=all", review.Filter{State: "all"}, nil},
		{"state=soon", review.Filter{}, []string{"state"}},
		{"state=due&state=lapsed", review.Filter{}, []string{"state"}},
		{"owner=" + strings.Repeat("a", 300), review.Filter{}, []string{"owner"}},
		{"owners=x&state=soon", review.Filter{}, []string{"state", "owners"}},
	}
	for _, tt := range tests {
		f, err := ParseReviewQuery(tt.query)
		if tt.fields == nil {
			if err != nil || f != tt.want {
				t.Errorf("%q = %+v, %v; want %+v", tt.query, f, err, tt.want)
			}
			continue
		}
		var pd *problem.Details
		if !errors.As(err, &pd) || pd.Status != 400 || pd.Type != "urn:keybound:problem:invalid-parameter" {
			t.Errorf("%q: %v, want a 400 invalid-parameter problem", tt.query, err)
			continue
		}
		var got []string
		for _, fe := range pd.Errors {
			got = append(got, fe.Field)
		}
		if !slices.Equal(got, tt.fields) {
			t.Errorf("%q names %v, want %v", tt.query, got, tt.fields)
		}
	}
}
