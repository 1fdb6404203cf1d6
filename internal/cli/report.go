package cli

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
	"github.com/keybound/keybound/internal/posture"
)

func newReportCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Reports computed from the inventory and the gateway audit trail",
	}
	cmd.AddCommand(newReportPostureCmd(g))
	return cmd
}

func newReportPostureCmd(g *globals) *cobra.Command {
	var (
		out                  string
		idleDays, maxSources int
		noSnapshot           bool
	)
	cmd := &cobra.Command{
		Use:   "posture",
		Short: "How much access rests on weak credentials, and the state of every machine identity",
		Long: `Report the posture of the machine identities: the inventory by credential
type and binding; the share of the last 30 days' requests authenticated by
static secrets, unbound bearer tokens and sender-constrained tokens, overall
and per route sensitivity class; identities with no owner, no expiry, a long
life, idle or over-privileged; routes whose data class is above what their
accepted credentials prove; a status and the evidence for each OWASP
Non-Human Identities Top 10 (2025) risk with its NIST CSF 2.0 functions; and
what changed since the previous report.

What keybound holds no data for is reported as "not tracked yet", never as
zero. Each run stores a snapshot of the headline figures for the next run's
trend; --no-snapshot previews without storing one.

-o html writes one self-contained page (inline SVG charts, no script, nothing
fetched): keybound report posture -o html > posture.html`,
		Example: `  keybound report posture
  keybound report posture -o html > posture.html
  keybound report posture -o json --no-snapshot`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out != "json" && out != "markdown" && out != "html" {
				return usageError{fmt.Errorf("--output must be json, markdown or html, not %q", out)}
			}
			q := url.Values{}
			q.Set("idle_days", strconv.Itoa(idleDays))
			q.Set("max_sources", strconv.Itoa(maxSources))
			if noSnapshot {
				q.Set("snapshot", "false")
			}
			if _, err := adminapi.ParsePostureQuery(q.Encode()); err != nil {
				return flagErrors(err, usageFlagOf)
			}
			var rep posture.Report
			if err := getBounded(cmd, g, "/reports/posture", q, &rep); err != nil {
				return err
			}
			switch out {
			case "json":
				return printJSON(g.stdout, rep)
			case "html":
				return rep.WriteHTML(g.stdout)
			}
			return rep.WriteMarkdown(g.stdout)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&out, "output", "o", "markdown", "output format: markdown, html or json")
	fl.IntVar(&idleDays, "idle-days", posture.DefaultIdleDays, "N of \"idle: no allowed call in N days\" (1 to 3650)")
	fl.IntVar(&maxSources, "max-sources", posture.DefaultMaxSources, "source addresses in 30 days above which the spread is unusual")
	fl.BoolVar(&noSnapshot, "no-snapshot", false, "do not store this report's figures for the next report's trend")
	return cmd
}
