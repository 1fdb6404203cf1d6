package notify

import (
	"context"
	"log/slog"
)

// Log writes warnings to the server log at level WARN: the notifier that
// needs no receiver and cannot fail. It logs the warning's fields, which
// name an identity but hold no credential.
type Log struct {
	Logger *slog.Logger
}

// Notify logs w.
func (l Log) Notify(ctx context.Context, w Warning) error {
	msg := "machine identity expires soon"
	switch w.Type {
	case EventExpired:
		msg = "machine identity has expired"
	case EventTest:
		msg = "test notification"
	}
	l.Logger.LogAttrs(ctx, slog.LevelWarn, msg,
		slog.String("event", w.Type), slog.String("delivery_id", w.ID),
		slog.String("client_id", w.ClientID), slog.String("name", w.Name), slog.String("owner", w.Owner),
		slog.String("environment", w.Environment), slog.Time("expires_at", w.ExpiresAt), slog.String("lead_time", w.LeadTime))
	return nil
}
