package cli

import (
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybound/keybound/internal/app"
	"github.com/keybound/keybound/internal/config"
	"github.com/keybound/keybound/internal/web"
)

func newServeCmd(g *globals) *cobra.Command {
	var file, addr, gwAddr, level, format string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the token service and admin API (HTTPS)",
		Long: `Run keybound. On first start it creates the data directory (0700) with an
embedded SQLite store, a local CA (tls/ca.pem, for curl --cacert), a server
certificate, signing keys and an admin identity for the CLI.

Settings come from defaults, then --config FILE (YAML), then KEYBOUND_*
environment variables, then flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.Default()
			if file != "" {
				if err := cfg.LoadFile(file); err != nil {
					return err
				}
			}
			if err := cfg.LoadEnv(os.LookupEnv); err != nil {
				return err
			}
			fl := cmd.Flags()
			if fl.Changed("data-dir") || os.Getenv("KEYBOUND_DATA_DIR") == "" && file == "" {
				cfg.DataDir = g.dataDir
			}
			if fl.Changed("addr") {
				cfg.Server.Addr = addr
			}
			if fl.Changed("gateway-addr") {
				cfg.Gateway.Addr = gwAddr
			}
			if fl.Changed("log-level") {
				cfg.Log.Level = level
			}
			if fl.Changed("log-format") {
				cfg.Log.Format = format
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			logBuf := web.NewLogBuffer(g.stderr, logFlushInterval)
			defer logBuf.Close()
			log := newLogger(logBuf, cfg.Log)
			tuneGC()
			var opts []app.Option
			if file != "" {
				opts = append(opts, app.WithConfigFile(file))
			}
			a, err := app.New(cmd.Context(), cfg, log, opts...)
			if err != nil {
				return err
			}
			// SIGHUP reloads the gateway's routes from --config, all or
			// nothing; a bad file leaves the running routes in place.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-cmd.Context().Done():
						return
					case <-hup:
						_, _ = a.ReloadRoutes(cmd.Context())
					}
				}
			}()
			return a.Serve(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "YAML configuration file")
	cmd.Flags().StringVar(&addr, "addr", "", "HOST:PORT of the token service and admin API (default 127.0.0.1:8443)")
	cmd.Flags().StringVar(&gwAddr, "gateway-addr", "", "HOST:PORT of the gateway")
	cmd.Flags().StringVar(&level, "log-level", "", "debug, info, warn or error")
	cmd.Flags().StringVar(&format, "log-format", "", "text or json")
	return cmd
}

// logFlushInterval bounds how long a log line waits in the buffer.
const logFlushInterval = 100 * time.Millisecond

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serveGCPercent is the garbage collector target keybound serves with when
// GOGC is not set. The live heap is small (tens of MiB: caches, the replay
// store, the audit queue), so the default of 100 collects very often; at
// 400 the collector's share of the token endpoint's CPU drops by about
// two thirds for a heap a few times larger. GOGC and GOMEMLIMIT, when set,
// win.
const serveGCPercent = 400

func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serveGCPercent)
	}
}
