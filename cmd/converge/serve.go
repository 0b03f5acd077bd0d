package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events/pgstore"
)

// serveCmd is `converge serve`: the operations endpoint of an installation.
// It watches every consumer's lag against its SLA and serves /metrics for
// Prometheus, /lag as JSON and /healthz.
type serveCmd struct {
	db       *dbOptions
	listen   string
	sla      time.Duration
	interval time.Duration
}

func (c *serveCmd) validate() error {
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:9090: %w", c.listen, err)
	}
	if c.sla <= 0 {
		return fmt.Errorf("--sla %s: use a positive duration such as 2s", c.sla)
	}
	if c.interval <= 0 {
		return fmt.Errorf("--interval %s: use a positive duration such as 1s", c.interval)
	}
	return nil
}

func newServeCmd() *cobra.Command {
	c := &serveCmd{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve lag metrics (/metrics), lag reports (/lag) and a health check (/healthz)",
		Long: `serve samples every projection's lag once per --interval, fires SLA breach
and recovery log lines, and serves:

  /metrics   Prometheus metrics (converge_projection_* and the read horizon)
  /lag       the last lag reports as a JSON array
  /healthz   200 while the last pass succeeded and no projection breaches,
             503 otherwise

It prints "listening on ADDR" once it accepts connections and stops
gracefully on SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.validate(); err != nil {
				return err
			}
			db, err := dbOptionsFrom(cmd)
			if err != nil {
				return err
			}
			c.db = db
			return c.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.listen, "listen", "127.0.0.1:9090", "address to serve on")
	f.DurationVar(&c.sla, "sla", lag.UserFacingSLA, "SLA of every projection")
	f.DurationVar(&c.interval, "interval", lag.DefaultInterval, "how often lag is sampled")
	return cmd
}

func (c *serveCmd) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	pool, err := c.db.openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: c.db.Schema, DisableListen: true, Logger: log})
	if err != nil {
		return err
	}
	defer store.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mon, err := lag.NewMonitor(store, &lag.Config{DefaultSLA: c.sla, Interval: c.interval, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	if err := mon.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = mon.Stop(context.WithoutCancel(ctx)) }()

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", lag.Handler(reg))
	mux.HandleFunc("GET /lag", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(nonNil(mon.Reports()))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		for _, r := range mon.Reports() {
			if r.Breached {
				http.Error(w, fmt.Sprintf("projection %s breaches its SLA (%s)", r.Name, r.Reason), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", c.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", c.listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(cmd.OutOrStdout(), "listening on %s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func nonNil(rs []lag.Report) []lag.Report {
	if rs == nil {
		return []lag.Report{}
	}
	return rs
}
