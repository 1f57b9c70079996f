// Command rtcrelay is an open WebRTC media server: browsers publish and play streams over the WCS-compatible
// WebSocket protocol, and one REST call relays a live stream to another server over WebRTC.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	cfg, err := LoadConfig(os.Args[1:], os.Environ(), os.Stderr)
	if errors.Is(err, errHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rtcrelay:", err)
		os.Exit(2)
	}
	log := newLogger(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("rtcrelay stopped", "err", err)
		os.Exit(1)
	}
}

func newLogger(cfg *Config) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// listener is one TCP listener of the server and what it serves.
type listener struct {
	name    string
	port    int
	tls     bool
	handler http.Handler
}

// serveAll starts every enabled listener and shuts them down when ctx ends. It returns once all are listening.
func serveAll(ctx context.Context, log *slog.Logger, host string, tlsCfg *tls.Config, ls []listener) (wait func(), err error) {
	var wg sync.WaitGroup
	var servers []*http.Server
	for _, l := range ls {
		if l.port == 0 {
			log.Info("listener disabled", "listener", l.name)
			continue
		}
		if l.tls && tlsCfg == nil {
			log.Info("listener not started: no TLS certificate configured (--tls-cert/--tls-key)", "listener", l.name, "port", l.port)
			continue
		}
		addr := net.JoinHostPort(host, strconv.Itoa(l.port))
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		if err != nil {
			for _, s := range servers {
				_ = s.Close()
			}
			return nil, fmt.Errorf("%s listener: %w", l.name, err)
		}
		if l.tls {
			ln = tls.NewListener(ln, tlsCfg)
		}
		// Timeouts for plain HTTP (REST, WHIP, pages, metrics); the WebSocket handler clears the deadlines of the
		// connections it takes over, which then live by pings.
		srv := &http.Server{Handler: l.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		servers = append(servers, srv)
		scheme := map[bool]string{false: "", true: "s"}[l.tls]
		log.Info("listener up", "listener", l.name, "addr", ln.Addr().String(), "tls", l.tls, "scheme", scheme)
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("listener failed", "listener", l.name, "err", err)
			}
		})
	}
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for _, s := range servers {
			_ = s.Shutdown(sctx)
		}
	})
	return wg.Wait, nil
}
