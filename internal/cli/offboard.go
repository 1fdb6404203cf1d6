package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
)

func newOffboardCmd(g *globals) *cobra.Command {
	var req adminapi.OffboardRequest
	var out string
	cmd := &cobra.Command{
		Use:   "offboard --owner X | --vendor X | --tag X | --environment X [--purpose X]",
		Short: "Suspend or revoke every identity of an owner, vendor, application tag, purpose or environment",
		Long: `Suspend (the default) or revoke every machine identity that matches the
filter, in one transaction with one admin log entry per identity: all or
nothing. Filters combine with AND; at least one is required. Run with
--dry-run first: it lists what would change and changes nothing. Revoked
identities are left as they are (revoking is final).`,
		Example: `  keybound offboard --owner team-billing@example.com --dry-run
  keybound offboard --owner team-billing@example.com --reason "team disbanded"
  keybound offboard --vendor acme --environment prod --action revoke -o json`,
		Args: cobra.NoArgs,
		RunE: withAdminChecked(g, &out, func() error {
			if req.Owner == "" && req.Vendor == "" && req.Environment == "" && req.Purpose == "" && req.Tag == "" {
				return usageError{errors.New("name at least one of --owner, --vendor, --tag, --environment or --purpose")}
			}
			if req.Action != "suspend" && req.Action != "revoke" {
				return usageError{fmt.Errorf("--action must be suspend or revoke, not %q", req.Action)}
			}
			return nil
		}, func(cmd *cobra.Command, _ []string, api *adminAPI) error {
			var res adminapi.OffboardResponse
			if err := api.call(cmd.Context(), "POST", "/offboard", req, &res); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, res)
			}
			return printOffboard(g, res)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Owner, "owner", "", "only identities of this owner")
	f.StringVar(&req.Vendor, "vendor", "", "only identities of this vendor")
	f.StringVar(&req.Environment, "environment", "", "only identities in this environment")
	f.StringVar(&req.Purpose, "purpose", "", "only identities with exactly this purpose")
	f.StringVar(&req.Tag, "tag", "", "only identities carrying this application tag (client create --tag)")
	f.StringVar(&req.Action, "action", "suspend", "suspend or revoke (final)")
	f.StringVar(&req.Reason, "reason", "", "why, for the admin audit log")
	f.BoolVar(&req.DryRun, "dry-run", false, "show what would change and change nothing")
	outputFlag(cmd, &out)
	return cmd
}

// printOffboard writes the table of matching identities and one summary
// line: what changed, or in a dry run what would.
func printOffboard(g *globals, res adminapi.OffboardResponse) error {
	rows := make([][]string, 0, len(res.Identities))
	for _, it := range res.Identities {
		change := "unchanged"
		if it.Changed && res.DryRun {
			change = "would change"
		} else if it.Changed {
			change = "changed"
		}
		rows = append(rows, []string{it.ClientID, it.Name, it.Owner, string(it.Status), string(it.NewStatus), change})
	}
	if len(rows) > 0 {
		if err := printTable(g.stdout, []string{"CLIENT_ID", "NAME", "OWNER", "STATUS", "NEW_STATUS", "CHANGE"}, rows); err != nil {
			return err
		}
	}
	verb := map[string]string{"suspend": "suspended", "revoke": "revoked"}[res.Action]
	if res.DryRun {
		fmt.Fprintf(g.stdout, "dry run: %d matching, %d would be %s, %d unchanged; nothing was changed\n", res.Matched, res.Changed, verb, res.Unchanged)
		return nil
	}
	fmt.Fprintf(g.stdout, "%d matching, %d %s, %d unchanged\n", res.Matched, res.Changed, verb, res.Unchanged)
	return nil
}
