package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/inventory"
)

func newOwnerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "owner",
		Short: "Keep the owner directory: add, list, mark departed, transfer identities",
		Long: `The owner directory names the people and teams accountable for identities.
An identity whose owner is marked departed is orphaned until its ownership
is transferred. New identities, imports and transfers refuse a departed
owner, and, with governance.require_known_owners, an owner not listed.`,
	}
	cmd.AddCommand(newOwnerAddCmd(g), newOwnerListCmd(g), newOwnerDepartCmd(g), newOwnerTransferCmd(g))
	return cmd
}

func newOwnerAddCmd(g *globals) *cobra.Command {
	var contact, out string
	cmd := &cobra.Command{
		Use:     "add NAME",
		Short:   "Add an owner to the directory",
		Example: `  keybound owner add team-billing@example.com --contact billing-oncall@example.com`,
		Args:    cobra.ExactArgs(1),
		RunE: withAdmin(g, &out, func(cmd *cobra.Command, args []string, api *adminAPI) error {
			var o inventory.OwnerEntry
			if err := api.call(cmd.Context(), "POST", "/owners", adminapi.OwnerRequest{Name: args[0], Contact: contact}, &o); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, o.Owner)
			}
			fmt.Fprintf(g.stdout, "owner %s added\n", o.Name)
			return nil
		}),
	}
	cmd.Flags().StringVar(&contact, "contact", "", "e-mail address to reach the owner")
	outputFlag(cmd, &out)
	return cmd
}

func newOwnerListCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List owners and how many identities each holds",
		Long: `List the owner directory, then the owners identities name that are not in
it (REGISTERED no). IDENTITIES counts identities that are not revoked.`,
		Args: cobra.NoArgs,
		RunE: withAdmin(g, &out, func(cmd *cobra.Command, _ []string, api *adminAPI) error {
			var res struct {
				Owners []inventory.OwnerEntry `json:"owners"`
			}
			if err := api.call(cmd.Context(), "GET", "/owners", nil, &res); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, res.Owners)
			}
			rows := make([][]string, 0, len(res.Owners))
			for _, o := range res.Owners {
				departed, registered := "", "yes"
				if !o.DepartedAt.IsZero() {
					departed = o.DepartedAt.Format(time.DateOnly)
				}
				if !o.Registered {
					registered = "no"
				}
				rows = append(rows, []string{o.Name, string(o.Status), departed, strconv.Itoa(o.Identities), registered, o.Contact})
			}
			return printTable(g.stdout, []string{"OWNER", "STATUS", "DEPARTED", "IDENTITIES", "REGISTERED", "CONTACT"}, rows)
		}),
	}
	outputFlag(cmd, &out)
	return cmd
}

func newOwnerDepartCmd(g *globals) *cobra.Command {
	var reason, out string
	cmd := &cobra.Command{
		Use:   "depart NAME",
		Short: "Mark an owner departed: its identities become orphaned",
		Long: `Mark an owner departed. Its identities keep working but are orphaned: they
are flagged in client show, client list, review list and the posture
report, their reviews cannot be attested, and new identities cannot name
the owner. Move them to a current owner with keybound owner transfer.`,
		Example: `  keybound owner depart alice@example.com --reason "left the company"`,
		Args:    cobra.ExactArgs(1),
		RunE: withAdmin(g, &out, func(cmd *cobra.Command, args []string, api *adminAPI) error {
			var res adminapi.DepartResponse
			if err := api.call(cmd.Context(), "POST", "/owners/"+url.PathEscape(args[0])+"/depart", adminapi.DepartRequest{Reason: reason}, &res); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, res)
			}
			fmt.Fprintf(g.stdout, "owner %s marked departed; %d %s now orphaned\n", res.Owner.Name, res.Orphaned, map[bool]string{true: "identity is", false: "identities are"}[res.Orphaned == 1])
			for _, id := range res.ClientIDs {
				fmt.Fprintln(g.stdout, "  "+id)
			}
			if res.Orphaned > 0 {
				fmt.Fprintf(g.stdout, "move them with: keybound owner transfer --from %s --to NEW-OWNER\n", shellQuote(res.Owner.Name))
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the admin audit log")
	outputFlag(cmd, &out)
	return cmd
}

func newOwnerTransferCmd(g *globals) *cobra.Command {
	var (
		req adminapi.TransferRequest
		out string
	)
	cmd := &cobra.Command{
		Use:   "transfer --from OLD --to NEW",
		Short: "Move every identity of one owner to another, in one transaction",
		Long: `Move every identity of OLD that is not revoked to NEW, in one transaction
with one admin log entry per identity: all or nothing. Run with --dry-run
first. NEW must not have departed (and must be listed when
governance.require_known_owners is set). The new owner has not attested the
identities, so their access reviews fall due at once; the grace period
before auto-suspension starts at the transfer.`,
		Example: `  keybound owner transfer --from alice@example.com --to team-payments@example.com --dry-run`,
		Args:    cobra.NoArgs,
		RunE: withAdminChecked(g, &out, func() error {
			if req.From == "" || req.To == "" {
				return usageError{fmt.Errorf("--from and --to are both required")}
			}
			return nil
		}, func(cmd *cobra.Command, _ []string, api *adminAPI) error {
			return runTransfer(cmd, g, api, "/owners/transfer", req, out)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.From, "from", "", "the owner whose identities move (required)")
	f.StringVar(&req.To, "to", "", "the new owner (required)")
	f.StringVar(&req.Reason, "reason", "", "why, for the admin audit log")
	f.BoolVar(&req.DryRun, "dry-run", false, "show what would move and change nothing")
	outputFlag(cmd, &out)
	return cmd
}

// newClientTransferCmd is `keybound client transfer ID --to NEW`.
func newClientTransferCmd(g *globals) *cobra.Command {
	var (
		req adminapi.TransferRequest
		out string
	)
	cmd := &cobra.Command{
		Use:   "transfer CLIENT_ID --to NEW",
		Short: "Give an identity a new owner",
		Long: `Give one identity a new owner, with an admin log entry. The new owner must
not have departed (and must be listed when governance.require_known_owners
is set). Its access review falls due at once: the new owner attests it.`,
		Example: `  keybound client transfer kb-abc --to team-payments@example.com`,
		Args:    cobra.ExactArgs(1),
		RunE: withAdminChecked(g, &out, func() error {
			if req.To == "" {
				return usageError{fmt.Errorf("--to is required: the new owner")}
			}
			return nil
		}, func(cmd *cobra.Command, args []string, api *adminAPI) error {
			return runTransfer(cmd, g, api, "/clients/"+url.PathEscape(args[0])+"/transfer", req, out)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.To, "to", "", "the new owner (required)")
	f.StringVar(&req.Reason, "reason", "", "why, for the admin audit log")
	f.BoolVar(&req.DryRun, "dry-run", false, "show what would move and change nothing")
	outputFlag(cmd, &out)
	return cmd
}

func runTransfer(cmd *cobra.Command, g *globals, api *adminAPI, path string, req adminapi.TransferRequest, out string) error {
	var res adminapi.TransferResponse
	if err := api.call(cmd.Context(), "POST", path, req, &res); err != nil {
		return err
	}
	if out == "json" {
		return printJSON(g.stdout, res)
	}
	rows := make([][]string, 0, len(res.Identities))
	for _, it := range res.Identities {
		rows = append(rows, []string{it.ClientID, it.Name, it.Environment, string(it.Status)})
	}
	if err := printTable(g.stdout, []string{"CLIENT_ID", "NAME", "ENV", "STATUS"}, rows); err != nil {
		return err
	}
	if res.DryRun {
		fmt.Fprintf(g.stdout, "dry run: %d would move from %s to %s; nothing was changed\n", res.Moved, res.From, res.To)
		return nil
	}
	fmt.Fprintf(g.stdout, "%d moved from %s to %s; their access reviews are due now\n", res.Moved, res.From, res.To)
	return nil
}

// shellQuote quotes s for a shell command line when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
