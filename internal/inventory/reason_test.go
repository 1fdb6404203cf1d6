package inventory_test

import (
	"context"
	"strings"
	"testing"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/inventory"
)

// forged are reasons that would forge lines of `keybound admin-log` or
// drive the operator's terminal when printed raw, and one over the bound.
var forged = map[string]string{
	"escape and newline": "\x1b[2J\nclient.revoke kb-other by admin",
	"carriage return":    "done\rforged",
	"tab":                "a\tb",
	"C1 CSI":             "a\u009b2J",
	"DEL":                "a\x7f",
	"invalid UTF-8":      "a\xff",
	"too long":           strings.Repeat("r", identity.MaxTextLen+1),
}

// TestReasonsRefuseControlCharacters: every free-text reason the inventory
// stores is refused, naming the reason field, when it holds a control
// character or is too long, and nothing changes.
func TestReasonsRefuseControlCharacters(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t)
	svc.Owners = st
	c, err := svc.Create(ctx, "admin", valid(t))
	if err != nil {
		t.Fatal(err)
	}
	id, owner := c.Client.ID, c.Client.Owner
	eventsBefore, _ := st.ListAdminEvents(ctx, "", 0)

	calls := map[string]func(reason string) error{
		"suspend": func(r string) error { _, err := svc.Suspend(ctx, "admin", id, r); return err },
		"resume":  func(r string) error { _, err := svc.Resume(ctx, "admin", id, r); return err },
		"revoke":  func(r string) error { _, err := svc.Revoke(ctx, "admin", id, r); return err },
		"offboard": func(r string) error {
			_, err := svc.Offboard(ctx, "admin", inventory.OffboardRequest{Owner: owner, Action: inventory.OffboardRevoke, Reason: r})
			return err
		},
		"owner depart": func(r string) error { _, err := svc.DepartOwner(ctx, "admin", owner, r); return err },
		"transfer": func(r string) error {
			_, err := svc.Transfer(ctx, "admin", inventory.TransferRequest{ClientID: id, To: "team-new@example.com", Reason: r})
			return err
		},
	}
	for call, do := range calls {
		for name, reason := range forged {
			err := do(reason)
			if d := fieldDetail(err, inventory.FieldReason); d == "" {
				t.Errorf("%s with %s: %v; want a validation error on %q", call, name, err, inventory.FieldReason)
			}
		}
	}
	got, err := st.GetClient(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != identity.StatusActive || got.Owner != owner {
		t.Errorf("a refused change went through: status %s, owner %s", got.Status, got.Owner)
	}
	if evs, _ := st.ListAdminEvents(ctx, "", 0); len(evs) != len(eventsBefore) {
		t.Errorf("refused changes wrote %d admin events", len(evs)-len(eventsBefore))
	}
	if _, err := st.GetOwner(ctx, owner); err == nil {
		t.Error("a refused departure added the owner to the directory")
	}

	// A printable reason, with spaces around it and non-ASCII text, passes
	// and is stored trimmed.
	if _, err := svc.Suspend(ctx, "admin", id, "  rotation für Q3 — ticket #42  "); err != nil {
		t.Fatal(err)
	}
	evs, _ := st.ListAdminEvents(ctx, id, 1)
	if len(evs) != 1 || evs[0].Changes[inventory.FieldReason] != "rotation für Q3 — ticket #42" {
		t.Errorf("suspend event = %+v", evs)
	}
}
