package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/notify"
)

func newNotifyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notify",
		Short: "Expiry warnings: list what was sent and what failed, test the webhook",
	}
	cmd.AddCommand(newNotifyListCmd(g), newNotifyTestCmd(g))
	return cmd
}

// notifyFlagOf names the flag behind each query parameter.
var notifyFlagOf = map[string]string{"status": "--status", "client_id": "--client", "limit": "--limit"}

func newNotifyListCmd(g *globals) *cobra.Command {
	var (
		status, client, out string
		limit               int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List expiry warnings and how their delivery went, newest first",
		Long: `List the expiry warnings keybound recorded, newest first: the identity, its
expiry, the lead time the warning was due at, and the delivery status:

  pending    waiting for its next webhook attempt (NEXT)
  delivered  the webhook answered 2xx (or no webhook is configured)
  failed     given up: the receiver refused it, or the attempts ran out
  skipped    no longer applied: the identity was revoked or its expiry changed

ERROR is the reason of the last failed attempt.`,
		Example: `  keybound notify list --status failed
  keybound notify list --client kb-123 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if status != "" {
				q.Set("status", status)
			}
			if client != "" {
				q.Set("client_id", client)
			}
			if _, err := adminapi.ParseNotificationQuery(q.Encode()); err != nil {
				return flagErrors(err, notifyFlagOf)
			}
			var res struct {
				Notifications []adminapi.NotificationView `json:"notifications"`
			}
			if err := getBounded(cmd, g, "/notifications", q, &res); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, res.Notifications)
			}
			rows := make([][]string, 0, len(res.Notifications))
			for _, n := range res.Notifications {
				lead := "-"
				if n.LeadSeconds > 0 {
					lead = (time.Duration(n.LeadSeconds) * time.Second).String()
				}
				rows = append(rows, []string{n.CreatedAt.UTC().Format(time.RFC3339), n.Type, n.ClientID, n.ExpiresAt.UTC().Format(time.RFC3339), lead,
					n.Status, strconv.Itoa(n.Attempts), optTime(n.NextAttemptAt), auditCell(n.LastError)})
			}
			if err := printTable(g.stdout, []string{"CREATED", "TYPE", "CLIENT", "EXPIRES", "LEAD", "STATUS", "ATTEMPTS", "NEXT", "ERROR"}, rows); err != nil {
				return err
			}
			auditMoreNote(g, len(rows), limit, "warnings")
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&status, "status", "", "only pending, delivered, failed or skipped")
	fl.StringVar(&client, "client", "", "only this client id")
	fl.IntVar(&limit, "limit", adminapi.DefaultNotificationLimit, fmt.Sprintf("at most this many, newest first (1 to %d)", adminapi.MaxNotificationLimit))
	outputFlag(cmd, &out)
	return cmd
}

func optTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newNotifyTestCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Send one signed test warning to the webhook and show what the receiver answered",
		Long: `Ask the server to send one keybound.test warning to its webhook, once (no
retries), signed like every warning, and print the outcome. Use it after
configuring governance.notify.webhook to check the URL, the TLS trust and
the receiver's signature check. Exits non-zero when the receiver did not
take it. The test is recorded in the admin log.`,
		Example: `  keybound notify test`,
		Args:    cobra.NoArgs,
		RunE: withAdmin(g, &out, func(cmd *cobra.Command, _ []string, api *adminAPI) error {
			var res notify.TestResult
			if err := api.call(cmd.Context(), "POST", "/notifications/test", nil, &res); err != nil {
				return err
			}
			if out == "json" {
				if err := printJSON(g.stdout, res); err != nil {
					return err
				}
			} else if res.Delivered {
				fmt.Fprintf(g.stdout, "delivered to %s: answered %d in %d ms (delivery id %s)\n", res.Webhook, res.Status, res.DurationMS, res.DeliveryID)
			}
			if !res.Delivered {
				return fmt.Errorf("test warning not delivered to %s: %s", res.Webhook, res.Error)
			}
			return nil
		}),
	}
	outputFlag(cmd, &out)
	return cmd
}
