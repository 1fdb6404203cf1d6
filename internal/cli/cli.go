// Package cli is keybound's command line: one file per verb. Commands that
// manage identities talk to the admin API through the public sdk as the
// admin identity (private_key_jwt + DPoP), exactly as any other client would.
//
// Errors end the command with exit status 1 and one readable line on
// stderr; usage errors exit with status 2.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// globals are the flags every command accepts.
type globals struct {
	dataDir string
	stdout  io.Writer
	stderr  io.Writer
}

// usageError marks errors caused by how the command was called.
type usageError struct{ error }

// Main runs the CLI with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "keybound",
		Short:         "Proof-of-possession access for machine identities",
		Long:          "keybound replaces static API keys with short-lived, key-bound OAuth 2.0 tokens for machine clients, and governs every machine identity.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	def := os.Getenv("KEYBOUND_DATA_DIR")
	if def == "" {
		def = "./keybound-data"
	}
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", def, "data directory (env KEYBOUND_DATA_DIR)")

	root.AddCommand(
		newServeCmd(g),
		newClientCmd(g),
		newKeysCmd(g),
		newKeygenCmd(g),
		newTokenCmd(g),
		newProofCmd(g),
		newAssertionCmd(g),
		newAdminLogCmd(g),
		newAuditCmd(g),
		newUsageCmd(g),
		newReportCmd(g),
		newScanCmd(g),
		newImportCmd(g),
		newCertCmd(g),
		newOffboardCmd(g),
		newReviewCmd(g),
		newOwnerCmd(g),
		newNotifyCmd(g),
		newRequestCmd(g),
	)
	// Group commands (client, keys) have no action of their own; cobra would
	// answer an unknown subcommand with help and exit 0. Refuse it instead.
	for _, c := range root.Commands() {
		if !c.Runnable() && c.HasSubCommands() {
			c.Args = cobra.NoArgs
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
	}
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	// sdk errors already start "keybound: "; say the name once.
	fmt.Fprintln(stderr, "keybound: "+strings.TrimPrefix(oneLine(err.Error()), "keybound: "))
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.Contains(err.Error(), "accepts ") || strings.Contains(err.Error(), "required flag") {
		return exitUsage
	}
	return exitError
}

// oneLine folds an error onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
