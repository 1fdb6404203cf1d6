package cli

import (
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/store"
)

func newAdminLogCmd(g *globals) *cobra.Command {
	var target, out string
	var limit int
	cmd := &cobra.Command{
		Use:   "admin-log",
		Short: "Show the append-only admin audit log (who changed what, when)",
		Args:  cobra.NoArgs,
		RunE: withAdmin(g, &out, func(cmd *cobra.Command, _ []string, api *adminAPI) error {
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if target != "" {
				q.Set("target", target)
			}
			var res struct {
				Events []store.AdminEvent `json:"events"`
			}
			if err := api.call(cmd.Context(), "GET", "/events?"+q.Encode(), nil, &res); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(g.stdout, res.Events)
			}
			rows := make([][]string, 0, len(res.Events))
			for _, e := range res.Events {
				keys := make([]string, 0, len(e.Changes))
				for k := range e.Changes {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				var ch []string
				for _, k := range keys {
					ch = append(ch, k+"="+e.Changes[k])
				}
				rows = append(rows, []string{e.Time.Format(time.RFC3339), e.Actor, e.Action, e.Target, strings.Join(ch, " ")})
			}
			return printTable(g.stdout, []string{"TIME", "ACTOR", "ACTION", "TARGET", "CHANGES"}, rows)
		}),
	}
	cmd.Flags().StringVar(&target, "target", "", "only events about this client id or key id")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many, newest first")
	outputFlag(cmd, &out)
	return cmd
}
