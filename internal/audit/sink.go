package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/keybound/keybound/internal/store"
)

// Appender is the part of store.Store that StoreSink needs.
type Appender interface {
	AppendAuditEvents(ctx context.Context, evs []store.AuditEvent) error
}

// StoreSink writes each batch to the store in one transaction. Its zero
// value refuses every batch rather than pretend to store it.
type StoreSink struct {
	Store Appender
}

var errNoStore = errors.New("audit: StoreSink has no Store")

// Write appends evs with one AppendAuditEvents call: all or none.
func (s StoreSink) Write(ctx context.Context, evs []store.AuditEvent) error {
	if s.Store == nil {
		return errNoStore
	}
	if err := s.Store.AppendAuditEvents(ctx, evs); err != nil {
		return fmt.Errorf("audit: store sink: %w", err)
	}
	return nil
}
