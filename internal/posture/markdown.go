package posture

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Labels a reader sees for the report's keys.
var (
	classLabels = map[string]string{
		ClassStaticSecret:      "Static secrets",
		ClassBearer:            "Unbound bearer tokens",
		ClassSenderConstrained: "Sender-constrained tokens",
	}
	statusLabels = map[string]string{
		StatusAttention:  "Needs attention",
		StatusOK:         "No findings",
		StatusPartial:    "Partly tracked",
		StatusNotTracked: "Not tracked yet",
	}
	acceptLabels = map[string]string{
		acceptAnonymous:         "anonymous",
		acceptStaticKey:         "static API keys",
		acceptBearer:            "bearer tokens",
		acceptSecretClients:     "bound tokens of shared-secret clients",
		acceptSenderConstrained: "sender-constrained tokens",
	}
)

// notTrackedCell is what a figure keybound cannot measure shows.
const notTrackedCell = "not tracked yet"

// mdCell escapes a value for a Markdown table cell: a pipe would end the
// cell and a newline the row.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", " ")
}

func countText(n *int) string {
	if n == nil {
		return notTrackedCell
	}
	return strconv.Itoa(*n)
}

// shareCell is "count (pct)" for one class of a share.
func shareCell(n int64, p *float64) string {
	if p == nil {
		return strconv.FormatInt(n, 10)
	}
	return fmt.Sprintf("%d (%.1f%%)", n, *p)
}

func numText(v float64) string {
	if v == float64(int64(v)) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// changeText renders a trend change: "+3", "-1.5", "0", or "new" when the
// previous report did not have the metric.
func changeText(c Change) string {
	if c.Delta == nil {
		return "new"
	}
	d := *c.Delta
	switch {
	case d > 0:
		return "+" + numText(d)
	case d < 0:
		return "-" + numText(-d)
	}
	return "0"
}

func (r *Report) previousText() string {
	if r.Trend.PreviousAt == nil {
		return "This is the first posture report: there is no earlier snapshot to compare with."
	}
	return "Changes are against the previous report, " + r.Trend.PreviousAt.Format(time.RFC3339) + "."
}

// WriteMarkdown renders r as GitHub-flavoured Markdown.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# keybound posture report\n\n")
	p("Generated %s. Traffic figures cover the gateway's decisions of the last %d days; ", r.GeneratedAt.Format(time.RFC3339), r.PeriodDays)
	p("an identity is idle after %d days without an allowed request. %s\n\n", r.IdleDays, r.previousText())
	if !r.RoutesKnown {
		p("> No gateway route table is running in this keybound: figures that need the routes are marked not tracked.\n\n")
	}

	p("## Summary\n\n| Metric | Now | Previous | Change |\n|---|---:|---:|---:|\n")
	for _, c := range r.Trend.Changes {
		prev := "-"
		if c.Previous != nil {
			prev = numText(*c.Previous)
		}
		p("| %s | %s | %s | %s |\n", mdCell(c.Label), numText(c.Current), prev, changeText(c))
	}

	inv := r.Inventory
	p("\n## Inventory\n\n%d identities: ", inv.Total)
	var st []string
	for _, s := range inv.ByStatus {
		st = append(st, fmt.Sprintf("%d %s", s.Count, s.Key))
	}
	p("%s. Credential types and bindings count the %d active identities.\n\n", strings.Join(st, ", "), inv.Active)
	p("| Credential type | Identities |\n|---|---:|\n")
	for _, c := range inv.ByCredentialType {
		p("| %s | %d |\n", mdCell(c.Key), c.Count)
	}
	p("\n| Binding | Identities |\n|---|---:|\n")
	for _, c := range inv.ByBinding {
		p("| %s | %d |\n", mdCell(c.Key), c.Count)
	}

	t := r.Traffic
	p("\n## Requests by credential, last %d days\n\n", t.Days)
	p("Allowed requests by how they were authenticated; percentages are of authenticated requests. A token issued to a client that authenticates with a shared secret counts as a static secret.\n\n")
	p("| Routes | Authenticated | Static secrets | Unbound bearer | Sender-constrained | Anonymous | Denied |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range append([]Share{t.Overall}, t.BySensitivity...) {
		p("| %s | %d | %s | %s | %s | %d | %d |\n", mdCell(s.Class), s.Authenticated, shareCell(s.StaticSecret, s.StaticSecretPct),
			shareCell(s.Bearer, s.BearerPct), shareCell(s.SenderConstrained, s.SenderConstrainedPct), s.Anonymous, s.Denied)
	}

	p("\n## Identities\n\n| Finding | Active identities | Rule | Examples |\n|---|---:|---|---|\n")
	for _, f := range r.Identities {
		p("| %s | %s | %s | %s |\n", mdCell(f.Title), countText(f.Count), mdCell(f.Note), mdCell(strings.Join(f.ClientIDs, ", ")))
	}

	p("\n## Routes: data class and accepted credentials\n\n")
	if !r.Routes.Tracked {
		p("%s\n", mdCell(r.Routes.Note))
	} else {
		p("%d of %d routes accept credentials below their data class.\n\n", r.Routes.Misaligned, len(r.Routes.Routes))
		p("| Route | Class | Environment | Accepts | Requests | Below floor | Status |\n|---|---|---|---|---:|---:|---|\n")
		for _, rc := range r.Routes.Routes {
			status := "aligned"
			if !rc.Aligned {
				status = "misaligned: " + strings.Join(rc.Problems, "; ")
			}
			if len(rc.Notes) > 0 {
				status += " (" + strings.Join(rc.Notes, "; ") + ")"
			}
			p("| %s | %s | %s | %s | %d | %d | %s |\n", mdCell(rc.Route), rc.Sensitivity, mdCell(orDash(rc.Environment)),
				mdCell(acceptText(rc.Accepts)), rc.Requests, rc.WeakRequests, mdCell(status))
		}
	}

	p("\n## OWASP Non-Human Identities Top 10 (2025)\n\n| Risk | Status | Evidence | Not tracked yet | NIST CSF 2.0 |\n|---|---|---|---|---|\n")
	for _, rk := range r.Risks {
		p("| %s %s | %s | %s | %s | %s |\n", rk.ID, mdCell(rk.Name), statusLabels[rk.Status], mdCell(rk.Evidence), mdCell(orDash(rk.NotTracked)), strings.Join(rk.CSF, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func acceptText(keys []string) string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if l, ok := acceptLabels[k]; ok {
			out = append(out, l)
		} else {
			out = append(out, k)
		}
	}
	return strings.Join(out, ", ")
}
