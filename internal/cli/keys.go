package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the token-signing key ring"}
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate",
		Short: "Publish a new signing key; it signs once verifiers have had time to fetch it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := newAdminAPI(cmd.Context(), g)
			if err != nil {
				return err
			}
			var res struct {
				KID string `json:"kid"`
			}
			if err := api.call(cmd.Context(), "POST", "/keys/rotate", nil, &res); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "new signing key %s published; it becomes active after the publish lead\n", res.KID)
			return nil
		},
	})
	return cmd
}
