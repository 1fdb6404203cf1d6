package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/adminapi"
)

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Query the gateway audit trail: who called which endpoint, with what scope, how often",
	}
	cmd.AddCommand(newAuditEventsCmd(g), newAuditSummaryCmd(g))
	return cmd
}

// auditFlags are the filters both audit verbs take.
type auditFlags struct {
	client, route, decision, reason, since, until, out string
	limit                                              int
}

// auditFlagOf names the flag that sets each query parameter, so an error reads
// in the terms the user typed.
var auditFlagOf = map[string]string{
	"client_id": "--client", "route": "--route", "decision": "--decision", "reason": "--reason",
	"since": "--since", "until": "--until", "limit": "--limit",
}

func (f *auditFlags) add(cmd *cobra.Command, limitHelp string) {
	fl := cmd.Flags()
	fl.StringVar(&f.client, "client", "", "only this client id")
	fl.StringVar(&f.route, "route", "", "only this gateway route (its name in the route table)")
	fl.StringVar(&f.decision, "decision", "", "only allow or deny")
	fl.StringVar(&f.reason, "reason", "", "only this reason code, e.g. client_expired (an expired identity's credential still in use)")
	fl.StringVar(&f.since, "since", "", "from this time on: RFC 3339 (2026-03-01T12:00:00Z) or a duration back from now (24h, 7d)")
	fl.StringVar(&f.until, "until", "", "before this time: RFC 3339 or a duration back from now")
	fl.IntVar(&f.limit, "limit", adminapi.DefaultAuditLimit, limitHelp)
	outputFlag(cmd, &f.out)
}

// query checks the flags with the server's own parser, so a mistake is
// refused before any call and in the same words, and returns the query.
func (f *auditFlags) query() (url.Values, error) {
	if err := checkOutput(f.out); err != nil {
		return nil, err
	}
	q := url.Values{"limit": {strconv.Itoa(f.limit)}}
	for k, v := range map[string]string{"client_id": f.client, "route": f.route, "decision": f.decision, "reason": f.reason, "since": f.since, "until": f.until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if _, err := adminapi.ParseAuditQuery(q.Encode(), time.Now()); err != nil {
		// "--until must be after since" names a flag in its detail too.
		msg := flagErrors(err, auditFlagOf).Error()
		return nil, usageError{errors.New(strings.Replace(msg, "after since", "after --since", 1))}
	}
	return q, nil
}

// getBounded GETs path?q from the admin API (audit, usage, notifications,
// report); an answer too large to read says what to do.
func getBounded(cmd *cobra.Command, g *globals, path string, q url.Values, out any) error {
	api, err := newAdminAPI(cmd.Context(), g)
	if err != nil {
		return err
	}
	err = api.call(cmd.Context(), "GET", path+"?"+q.Encode(), nil, out)
	// call reads at most maxResponseBytes: JSON cut off there is a
	// too-large answer, not a server fault.
	var se *json.SyntaxError
	if errors.As(err, &se) && se.Offset >= maxResponseBytes {
		return fmt.Errorf("the answer is larger than the CLI reads (%d MiB); lower --limit or narrow the filters", maxResponseBytes>>20)
	}
	return err
}

// auditCell shows an empty cell as "-", so columns stay readable.
func auditCell(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// auditMoreNote tells a table reader that the answer stopped at the limit.
func auditMoreNote(g *globals, n, limit int, what string) {
	if n == limit {
		fmt.Fprintf(g.stderr, "keybound: stopped at --limit %d; more %s may match (raise --limit or narrow the filters)\n", limit, what)
	}
}

func newAuditEventsCmd(g *globals) *cobra.Command {
	var f auditFlags
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List gateway decisions, newest first",
		Long: `List the gateway's decisions (one per request), newest first: when, which
client, which route and method, the object, the status, allow or deny, and why.
JSON output has every field of each event; it never holds a token, only its jti.`,
		Example: `  keybound audit events --since 24h --decision deny
  keybound audit events --client kb-123 --route invoices --since 2026-03-01T00:00:00Z --until 2026-03-02T00:00:00Z -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := f.query()
			if err != nil {
				return err
			}
			var res struct {
				Events []adminapi.AuditEventView `json:"events"`
			}
			if err := getBounded(cmd, g, "/audit/events", q, &res); err != nil {
				return err
			}
			if f.out == "json" {
				return printJSON(g.stdout, res.Events)
			}
			rows := make([][]string, 0, len(res.Events))
			for _, e := range res.Events {
				rows = append(rows, []string{e.Time.UTC().Format(time.RFC3339), auditCell(e.ClientID), auditCell(e.Route), auditCell(e.Method),
					auditCell(e.PathTemplate), auditCell(e.ObjectID), strconv.Itoa(e.Status), e.Decision, auditCell(e.Reason)})
			}
			if err := printTable(g.stdout, []string{"TIME", "CLIENT", "ROUTE", "METHOD", "PATH", "OBJECT", "STATUS", "DECISION", "REASON"}, rows); err != nil {
				return err
			}
			auditMoreNote(g, len(rows), f.limit, "events")
			return nil
		},
	}
	f.add(cmd, fmt.Sprintf("at most this many events, newest first (1 to %d)", adminapi.MaxAuditLimit))
	return cmd
}

func newAuditSummaryCmd(g *globals) *cobra.Command {
	var f auditFlags
	cmd := &cobra.Command{
		Use:   "summary",
		Short: "Count gateway decisions by client, route, method, scopes and decision",
		Long: `Answer "which identity called which endpoint, with what scope, how often":
the matching decisions grouped by client, route, method, scopes and decision,
most frequent first, with the first and last time each was seen.`,
		Example: `  keybound audit summary --since 7d
  keybound audit summary --route invoices --decision deny -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := f.query()
			if err != nil {
				return err
			}
			var res struct {
				Summary []adminapi.AuditSummaryView `json:"summary"`
			}
			if err := getBounded(cmd, g, "/audit/summary", q, &res); err != nil {
				return err
			}
			if f.out == "json" {
				return printJSON(g.stdout, res.Summary)
			}
			rows := make([][]string, 0, len(res.Summary))
			for _, s := range res.Summary {
				rows = append(rows, []string{auditCell(s.ClientID), auditCell(s.Route), auditCell(s.Method), auditCell(strings.Join(s.Scopes, ",")), s.Decision,
					strconv.FormatInt(s.Count, 10), s.First.UTC().Format(time.RFC3339), s.Last.UTC().Format(time.RFC3339)})
			}
			if err := printTable(g.stdout, []string{"CLIENT", "ROUTE", "METHOD", "SCOPES", "DECISION", "COUNT", "FIRST", "LAST"}, rows); err != nil {
				return err
			}
			auditMoreNote(g, len(rows), f.limit, "rows")
			return nil
		},
	}
	f.add(cmd, fmt.Sprintf("at most this many rows, most frequent first (1 to %d)", adminapi.MaxAuditLimit))
	return cmd
}
