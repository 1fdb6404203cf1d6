package inventory

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/keybound/keybound/internal/identity"
	"github.com/keybound/keybound/internal/store"
)

// Downscoped is the difference a downscope makes: the scopes before and
// after, and those removed. Applied is false for a dry run.
type Downscoped struct {
	ClientID string   `json:"client_id"`
	Before   []string `json:"before"`
	After    []string `json:"after"`
	Removed  []string `json:"removed"`
	Applied  bool     `json:"applied"`
}

// Downscope removes scopes from client id's grant. It only ever removes:
// a scope not granted is an error, so a typo cannot pass silently, and
// removing every scope is refused (revoke the identity instead). With
// apply false nothing is written and the result shows what would change,
// so an operator reads the diff before committing to it. Removing nothing
// is not an error: the result says so and nothing is written.
func (s *Service) Downscope(ctx context.Context, actor, id string, remove []string, apply bool) (*Downscoped, error) {
	c, err := s.Store.GetClient(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if c.Status == identity.StatusRevoked {
		return nil, fmt.Errorf("%w: client %s is revoked", ErrTransition, id)
	}
	if len(remove) > identity.MaxScopes {
		return nil, fieldErr("remove", fmt.Sprintf("at most %d scopes at once", identity.MaxScopes))
	}
	var fe []FieldError
	for i, sc := range remove {
		if !slices.Contains(c.Scopes, sc) {
			fe = append(fe, FieldError{Field: fmt.Sprintf("remove[%d]", i), Detail: fmt.Sprintf("%q is not granted to this client (granted: %s)", sc, strings.Join(c.Scopes, " "))})
		}
	}
	if len(fe) > 0 {
		return nil, &ValidationError{Fields: fe}
	}
	out := &Downscoped{ClientID: id, Before: orEmpty(c.Scopes), After: []string{}, Removed: []string{}}
	for _, sc := range c.Scopes {
		if slices.Contains(remove, sc) {
			out.Removed = append(out.Removed, sc)
		} else {
			out.After = append(out.After, sc)
		}
	}
	if len(out.After) == 0 {
		return nil, fieldErr("remove", "would remove every scope the client holds; revoke the identity instead (`keybound client revoke`)")
	}
	if !apply || len(out.Removed) == 0 {
		return out, nil
	}
	now := s.now()
	next := *c
	next.Scopes = out.After
	next.UpdatedAt = after(now, c.UpdatedAt)
	ev := store.AdminEvent{Time: now, Actor: actor, Action: "client.downscope", Target: id, Changes: map[string]string{
		"removed": strings.Join(out.Removed, " "), "scopes": strings.Join(out.After, " "),
	}}
	if err := s.Store.UpdateClient(ctx, &next, c.UpdatedAt, ev); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	s.changed(id)
	out.Applied = true
	return out, nil
}

func orEmpty(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}
