package cli

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
)

func newReviewCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "review",
		Short: "List due access reviews and record owners' attestations",
		Long: `Every identity must be re-attested by its owner on a schedule set per
environment (governance.reviews.intervals): still needed, purpose still
right, scopes still needed. A review is due 14 days before its due time,
overdue after it, and lapsed after the grace period; with
governance.reviews.auto_suspend a lapsed identity is suspended.`,
	}
	cmd.AddCommand(newReviewListCmd(g), newReviewAttestCmd(g))
	return cmd
}

// reviewFlagOf names the flag behind each query parameter of review list.
var reviewFlagOf = map[string]string{"state": "--state", "environment": "--environment", "owner": "--owner"}

func newReviewListCmd(g *globals) *cobra.Command {
	var state, env, owner, out string
	q := url.Values{} // built from the flags before connecting
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List identities whose access review is due, overdue or lapsed",
		Long: `List identities by review state. Without --state the list holds what needs
attention: due, overdue and lapsed reviews. --state overdue includes lapsed
ones; --state all includes current ones. ORPHANED marks identities whose
owner has departed: transfer them before their review can be attested.`,
		Example: `  keybound review list
  keybound review list --state overdue --environment prod -o json`,
		Args: cobra.NoArgs,
		RunE: withAdminChecked(g, &out, func() error {
			for k, v := range map[string]string{"state": state, "environment": env, "owner": owner} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if _, err := adminapi.ParseReviewQuery(q.Encode()); err != nil {
				return flagErrors(err, reviewFlagOf)
			}
			return nil
		}, func(cmd *cobra.Command, _ []string, api *adminAPI) error {
			var res adminapi.ReviewList
			if err := api.call(cmd.Context(), "GET", "/reviews?"+q.Encode(), nil, &res); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, res)
			}
			return printReviews(g, res)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&state, "state", "", "due, overdue (lapsed included), lapsed, current or all (default: due, overdue and lapsed)")
	f.StringVar(&env, "environment", "", "only identities in this environment")
	f.StringVar(&owner, "owner", "", "only identities of this owner")
	outputFlag(cmd, &out)
	return cmd
}

func printReviews(g *globals, res adminapi.ReviewList) error {
	if len(res.Reviews) == 0 {
		fmt.Fprintln(g.stdout, "no access review matches")
		return nil
	}
	rows := make([][]string, 0, len(res.Reviews))
	for _, r := range res.Reviews {
		last := "never"
		if r.LastAttestedAt != nil {
			last = r.LastAttestedAt.Format(time.DateOnly) + " by " + r.LastAttestedBy
		}
		orphaned := ""
		if r.Orphaned {
			orphaned = "yes"
		}
		rows = append(rows, []string{r.ClientID, r.Name, r.Owner, r.Environment, string(r.Status), string(r.State),
			r.DueAt.Format(time.DateOnly), last, orphaned})
	}
	if err := printTable(g.stdout, []string{"CLIENT_ID", "NAME", "OWNER", "ENV", "STATUS", "REVIEW", "DUE", "LAST_ATTESTED", "ORPHANED"}, rows); err != nil {
		return err
	}
	var parts []string
	for _, s := range []string{"current", "due", "overdue", "lapsed"} {
		if n := res.Counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	fmt.Fprintln(g.stdout, strings.Join(parts, ", "))
	return nil
}

func newReviewAttestCmd(g *globals) *cobra.Command {
	var (
		req adminapi.AttestRequest
		out string
	)
	cmd := &cobra.Command{
		Use:   "attest CLIENT_ID --by OWNER --still-needed --purpose-ok --scopes-ok",
		Short: "Record the owner's attestation that an identity is still needed as registered",
		Long: `Record that the identity's owner confirmed all three review questions:
the identity is still needed, its purpose is still right, and its scopes
are still needed. --by must be the identity's owner exactly as registered.
If the owner cannot confirm one, nothing is recorded: revoke the identity
(keybound client revoke) or remove the scopes it no longer needs
(keybound client downscope) instead. A suspended identity can be attested,
then resumed with keybound client resume.`,
		Example: `  keybound review attest kb-abc --by team-billing@example.com --still-needed --purpose-ok --scopes-ok \
    --note "still exports invoices nightly"`,
		Args: cobra.ExactArgs(1),
		RunE: withAdminChecked(g, &out, func() error {
			if strings.TrimSpace(req.By) == "" {
				return usageError{fmt.Errorf("--by is required: the identity's owner, who attests")}
			}
			return nil
		}, func(cmd *cobra.Command, args []string, api *adminAPI) error {
			var res adminapi.ReviewItem
			if err := api.call(cmd.Context(), "POST", "/clients/"+url.PathEscape(args[0])+"/attest", req, &res); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, res)
			}
			fmt.Fprintf(g.stdout, "%s attested by %s; next review due %s\n", res.ClientID, res.LastAttestedBy, res.DueAt.Format(time.DateOnly))
			if res.Status != "active" {
				fmt.Fprintf(g.stdout, "%s is %s: resume it with `keybound client resume %s`\n", res.ClientID, res.Status, res.ClientID)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.By, "by", "", "the identity's owner, who attests (required)")
	f.BoolVar(&req.StillNeeded, "still-needed", false, "the owner confirms the identity is still needed")
	f.BoolVar(&req.PurposeOK, "purpose-ok", false, "the owner confirms its purpose is still right")
	f.BoolVar(&req.ScopesOK, "scopes-ok", false, "the owner confirms its scopes are all still needed")
	f.StringVar(&req.Note, "note", "", "a note for the review history")
	outputFlag(cmd, &out)
	return cmd
}
