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
	// cobra adds these at Execute; add them now so markUsageErrors sees them.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd(args...)
	markUsageErrors(root)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	// sdk errors already start "keybound: "; say the name once.
	fmt.Fprintln(stderr, "keybound: "+strings.TrimPrefix(oneLine(err.Error()), "keybound: "))
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

// markUsageErrors walks the command tree below c and makes every error of
// argument validation a usageError, so that Main tells a usage error (exit 2)
// from a failure (exit 1) by its type. Matching cobra's wording instead
// ("accepts 1 arg(s)") also caught server refusals that say "accepts".
// Flag errors are marked by the root's FlagErrorFunc.
//
// A group (client, keys, ...) has no action of its own; cobra would answer an
// unknown subcommand with help and exit 0, and at the root it reports one
// before any Args runs. Each group refuses stray arguments instead and prints
// its help when called alone.
func markUsageErrors(c *cobra.Command) {
	if !c.Runnable() && c.HasSubCommands() {
		c.Args = noSubcommand
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	if validate := c.Args; validate != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := validate(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
	}
}

// noSubcommand is the Args of a group: an argument there is a mistyped
// subcommand, named with cobra's suggestions.
func noSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return errors.New(msg)
}

// oneLine folds an error onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
