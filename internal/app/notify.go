package app

import (
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/notify"
)

// WebhookSecretFile is the generated webhook secret in the data directory,
// used when governance.notify.webhook.secret_file is empty.
const WebhookSecretFile = "webhook-secret"

// buildNotify wires expiry warnings: the service, its webhook (with the
// secret from governance.notify.webhook.secret_file or generated in the
// data directory), its metrics, the admin endpoints and the sweep task. A
// webhook that cannot be set up stops the start: a server that silently
// sent no warnings would fail open.
func (a *App) buildNotify(admin *adminapi.API, reg prometheus.Registerer) error {
	n := a.cfg.Governance.Notify
	svc := &notify.Service{
		Store: a.store, LeadTimes: n.LeadTimes, Issuer: a.cfg.IssuerURL(),
		MaxAttempts: n.Webhook.MaxAttempts, Metrics: notify.NewMetrics(reg), OpLog: a.log,
	}
	if n.Log {
		svc.Log = &notify.Log{Logger: a.log}
	}
	if w := n.Webhook; w.URL != "" {
		secretFile := w.SecretFile
		load := notify.LoadSecret
		if secretFile == "" {
			secretFile, load = filepath.Join(a.cfg.DataDir, WebhookSecretFile), notify.LoadOrCreateSecret
		} else if err := checkFileMode(a.log, "governance.notify.webhook.secret_file", secretFile, kindSecret); err != nil {
			return fmt.Errorf("app: %w", err)
		}
		secret, err := load(secretFile)
		if err != nil {
			return fmt.Errorf("app: governance.notify.webhook: %w", err)
		}
		wc := notify.WebhookConfig{URL: w.URL, Secret: secret, Timeout: w.Timeout}
		if w.CAFile != "" {
			if wc.RootCAs, err = trustFile(a.log, "governance.notify.webhook.ca_file", w.CAFile, nil); err != nil {
				return err
			}
		}
		if svc.Webhook, err = notify.NewWebhook(wc); err != nil {
			return fmt.Errorf("app: governance.notify.webhook: %w", err)
		}
		a.log.Info("expiry warnings go to a webhook", "webhook", svc.Webhook.Host(), "secret_file", secretFile)
	}
	admin.Notifications = svc
	a.addSweep("expiry warnings", svc.Sweep)
	return nil
}
