// Command keybound is the single binary: server, CLI and admin client.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/keybound/keybound/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
