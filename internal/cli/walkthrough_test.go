package cli_test

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestWalkthroughScript runs scripts/walkthrough.sh, the README walkthrough
// against a real `keybound serve`, and expects it to succeed.
func TestWalkthroughScript(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../../scripts/walkthrough.sh")
	// SIGTERM lets the script's trap stop the server it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	t.Logf("walkthrough output:\n%s", out)
}
