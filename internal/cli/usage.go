package cli

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/posture"
	"github.com/keybound/keybound/internal/problem"
)

// usageFlagOf names the flag behind each usage and posture query
// parameter, so an error reads in the terms the user typed.
var usageFlagOf = map[string]string{
	"client_id": "--client", "idle_days": "--idle-days", "max_sources": "--max-sources",
	"finding": "--finding", "limit": "--limit", "snapshot": "--no-snapshot",
}

// flagErrors turns the server's parameter problem into a usage error that
// names the flags: flagOf maps each query parameter to its flag.
func flagErrors(err error, flagOf map[string]string) error {
	var pd *problem.Details
	if !errors.As(err, &pd) || len(pd.Errors) == 0 {
		return usageError{err}
	}
	msgs := make([]string, 0, len(pd.Errors))
	for _, fe := range pd.Errors {
		msgs = append(msgs, cmp.Or(flagOf[fe.Field], fe.Field)+" "+fe.Detail)
	}
	return usageError{errors.New(strings.Join(msgs, "; "))}
}

func newUsageCmd(g *globals) *cobra.Command {
	var (
		client, finding, out string
		idleDays, maxSources int
		limit                int
	)
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Show how identities use the gateway: last use, calls per route and scope, unused scopes, idle and unusual use",
		Long: `Show, for each machine identity, what the gateway audit trail says about its
use: when it was last used, its calls per route and per scope over the last 7,
30 and 90 days (UTC days, today included), the granted scopes no allowed call
exercised in 90 days, and these findings:

  idle               active, at least --idle-days old, and no allowed call in
                     --idle-days days
  unused_scopes      active, at least --idle-days old, with granted scopes no
                     allowed call exercised in 90 days
  cross_environment  allowed in 90 days on a route tagged with another
                     environment than the identity's own
  address_spread     used from more than --max-sources source addresses in 30
                     days, or from more new addresses in the last 7 days (at
                     least 3) than addresses known before

A scope is exercised by an allowed call to a route and method that requires
it. Identities whose scopes are all keybound's own (keybound:admin,
keybound:introspect) are used at keybound itself, which the gateway trail
does not see: they are never called idle.

Without --client, one line per identity (at most --limit); with it, the
identity's routes, scopes and source addresses.`,
		Example: `  keybound usage
  keybound usage --finding idle --idle-days 60
  keybound usage --client kb-123 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			q := url.Values{}
			q.Set("idle_days", strconv.Itoa(idleDays))
			q.Set("max_sources", strconv.Itoa(maxSources))
			q.Set("limit", strconv.Itoa(limit))
			if client != "" {
				q.Set("client_id", client)
			}
			if finding != "" {
				q.Set("finding", finding)
			}
			if _, err := adminapi.ParseUsageQuery(q.Encode()); err != nil {
				return flagErrors(err, usageFlagOf)
			}
			var rep posture.UsageReport
			if err := getBounded(cmd, g, "/usage", q, &rep); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, rep)
			}
			if !rep.RoutesKnown {
				fmt.Fprintln(g.stderr, "keybound: no gateway route table is running: unused scopes and environments are unknown")
			}
			if client != "" && len(rep.Identities) == 1 {
				return printUsageDetail(g.stdout, rep, rep.Identities[0])
			}
			if err := printUsageTable(g.stdout, rep); err != nil {
				return err
			}
			if rep.Truncated {
				fmt.Fprintf(g.stderr, "keybound: stopped at --limit %d; more identities match (raise --limit or use --finding)\n", limit)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&client, "client", "", "only this client id, with its routes, scopes and addresses")
	fl.IntVar(&idleDays, "idle-days", posture.DefaultIdleDays, "N of \"idle: no allowed call in N days\" (1 to 3650)")
	fl.IntVar(&maxSources, "max-sources", posture.DefaultMaxSources, "source addresses in 30 days above which the spread is unusual")
	fl.StringVar(&finding, "finding", "", "only identities with this finding: "+strings.Join(posture.Findings, ", "))
	fl.IntVar(&limit, "limit", adminapi.DefaultUsageLimit, fmt.Sprintf("at most this many identities (1 to %d)", adminapi.MaxUsageLimit))
	outputFlag(cmd, &out)
	return cmd
}

func timeCell(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func listCell(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return strings.Join(ss, ",")
}

func unusedCell(iu posture.IdentityUsage) string {
	if iu.UnusedScopes == nil {
		return "?"
	}
	return listCell(iu.UnusedScopes)
}

func perWindow(c posture.Counts) string {
	return fmt.Sprintf("%d/%d/%d", c.D7, c.D30, c.D90)
}

func printUsageTable(w io.Writer, rep posture.UsageReport) error {
	rows := make([][]string, 0, len(rep.Identities))
	for _, iu := range rep.Identities {
		rows = append(rows, []string{iu.ClientID, auditCell(iu.Name), auditCell(iu.Owner), auditCell(iu.Environment), string(iu.Status),
			timeCell(iu.LastUsed), strconv.FormatInt(iu.Allowed.D7, 10), strconv.FormatInt(iu.Allowed.D30, 10), strconv.FormatInt(iu.Allowed.D90, 10),
			unusedCell(iu), listCell(iu.Findings)})
	}
	if err := printTable(w, []string{"CLIENT", "NAME", "OWNER", "ENV", "STATUS", "LAST USED", "7D", "30D", "90D", "UNUSED SCOPES", "FINDINGS"}, rows); err != nil {
		return err
	}
	s := rep.Summary
	_, err := fmt.Fprintf(w, "\n%d identities: %d used in 90 days, %d idle (%d days), %d with unused scopes, %d cross-environment, %d with unusual address spread, %d not observable at the gateway\n",
		s.Identities, s.UsedIn90Days, s.Idle, rep.IdleDays, s.UnusedScopes, s.CrossEnvironment, s.AddressSpread, s.NotObservable)
	return err
}

func printUsageDetail(w io.Writer, rep posture.UsageReport, iu posture.IdentityUsage) error {
	envs := listCell(iu.Environments)
	if len(iu.AttemptedEnvironments) > 0 {
		envs += " (refused on " + strings.Join(iu.AttemptedEnvironments, ",") + ")"
	}
	if !rep.EnvironmentsTagged {
		envs = "unknown: no route names its environment"
	}
	spread := fmt.Sprintf("%s distinct (7d/30d/90d), %d new in 7 days, %d before", perWindow(iu.Sources.Distinct), iu.Sources.New7d, iu.Sources.Before)
	if iu.SpreadReason != "" {
		spread += ": " + iu.SpreadReason
	}
	unused := unusedCell(iu)
	if iu.UnusedScopes == nil {
		unused = "unknown"
		if !iu.Observable {
			unused += ": only keybound's own scopes, used outside the gateway"
		} else if !rep.RoutesKnown {
			unused += ": no gateway route table is running"
		}
	}
	if err := printTable(w, []string{"FIELD", "VALUE"}, [][]string{
		{"client_id", iu.ClientID}, {"name", auditCell(iu.Name)}, {"owner", auditCell(iu.Owner)},
		{"environment", auditCell(iu.Environment)}, {"status", string(iu.Status)},
		{"last_used", timeCell(iu.LastUsed)}, {"last_seen", timeCell(iu.LastSeen)},
		{"allowed (7d/30d/90d)", perWindow(iu.Allowed)}, {"denied (7d/30d/90d)", perWindow(iu.Denied)},
		{"environments reached", envs}, {"sources", spread},
		{"unused_scopes", unused}, {"findings", listCell(iu.Findings)},
	}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(iu.Routes))
	for _, r := range iu.Routes {
		class, env := auditCell(r.Sensitivity), auditCell(r.Environment)
		if !r.Configured {
			class = "(not configured)"
		}
		rows = append(rows, []string{r.Route, r.Method, class, env, perWindow(r.Allowed), perWindow(r.Denied), listCell(r.CredentialTypes), r.Last.UTC().Format(time.RFC3339)})
	}
	if err := printTable(w, []string{"ROUTE", "METHOD", "CLASS", "ENV", "ALLOWED 7D/30D/90D", "DENIED 7D/30D/90D", "VIA", "LAST"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	rows = rows[:0]
	for _, s := range iu.Scopes {
		granted := "yes"
		if !s.Granted {
			granted = "no (exercised before it was removed)"
		}
		rows = append(rows, []string{s.Scope, granted, perWindow(s.Calls)})
	}
	return printTable(w, []string{"SCOPE", "GRANTED", "CALLS 7D/30D/90D"}, rows)
}
