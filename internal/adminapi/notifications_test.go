package adminapi

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/keybound/keybound/internal/problem"
	"github.com/keybound/keybound/internal/store"
)

func TestParseNotificationQuery(t *testing.T) {
	tests := []struct {
		query  string
		want   store.NotificationFilter
		fields []string // the parameters named in the problem; nil: no error
	}{
		{"", store.NotificationFilter{Limit: DefaultNotificationLimit}, nil},
		{"status=failed&client_id=kb-1&limit=7", store.NotificationFilter{Status: store.NotificationFailed, ClientID: "kb-1", Limit: 7}, nil},
		{"status=skipped", store.NotificationFilter{Status: store.NotificationSkipped, Limit: DefaultNotificationLimit}, nil},
		{"limit=1000", store.NotificationFilter{Limit: 1000}, nil},
		{"status=sent", store.NotificationFilter{}, []string{"status"}},
		{"status=failed&status=pending", store.NotificationFilter{}, []string{"status"}},
		{"limit=0", store.NotificationFilter{}, []string{"limit"}},
		{"limit=1001", store.NotificationFilter{}, []string{"limit"}},
		{"limit=ten", store.NotificationFilter{}, []string{"limit"}},
		{"client_id=" + strings.Repeat("a", 300), store.NotificationFilter{}, []string{"client_id"}},
		{"owner=x&status=bad", store.NotificationFilter{}, []string{"status", "owner"}},
		{"a=%zz", store.NotificationFilter{}, []string{}},
	}
	for _, tt := range tests {
		f, err := ParseNotificationQuery(tt.query)
		if tt.fields == nil {
			if err != nil {
				t.Errorf("%q: %v", tt.query, err)
			} else if !reflect.DeepEqual(f, tt.want) {
				t.Errorf("%q = %+v, want %+v", tt.query, f, tt.want)
			}
			continue
		}
		var pd *problem.Details
		if !errors.As(err, &pd) || pd.Status != 400 {
			t.Errorf("%q: %v, want a 400 problem", tt.query, err)
			continue
		}
		var got []string
		for _, fe := range pd.Errors {
			got = append(got, fe.Field)
		}
		if !slices.Equal(got, tt.fields) && !(len(got) == 0 && len(tt.fields) == 0) {
			t.Errorf("%q names %v, want %v", tt.query, got, tt.fields)
		}
	}
}

// TestNotificationViewHasEveryField: the API shows every stored field.
func TestNotificationViewHasEveryField(t *testing.T) {
	if n, v := reflect.TypeFor[store.Notification]().NumField(), reflect.TypeFor[NotificationView]().NumField(); n != v {
		t.Errorf("store.Notification has %d fields, NotificationView %d", n, v)
	}
}
