package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/rtcrelay/rtcrelay/directory"
	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/limits"
	"github.com/rtcrelay/rtcrelay/media"
	"github.com/rtcrelay/rtcrelay/netguard"
	"github.com/rtcrelay/rtcrelay/relay"
	"github.com/rtcrelay/rtcrelay/relayauth"
	"github.com/rtcrelay/rtcrelay/rest"
	"github.com/rtcrelay/rtcrelay/resthook"
	"github.com/rtcrelay/rtcrelay/signaling"
	"github.com/rtcrelay/rtcrelay/web"
	"github.com/rtcrelay/rtcrelay/whip"
)

// run wires the server together and serves until ctx ends, then shuts down gracefully: every client gets its
// stream's terminal status before the sockets close.
func run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	var cert *dtls.Certificate
	var err error
	if cfg.DTLSCert != "" {
		cert, err = dtls.LoadCertificate(cfg.DTLSCert, cfg.DTLSKey)
	} else {
		cert, err = dtls.GenerateCertificate()
	}
	if err != nil {
		return fmt.Errorf("DTLS certificate: %w", err)
	}
	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
	}
	serverID := cfg.ServerID
	if serverID == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		serverID = hex.EncodeToString(b)
	}

	bind := netip.MustParseAddr(cfg.MediaBind)
	advertise := cfg.IPs
	if len(advertise) == 0 && bind.IsUnspecified() {
		advertise = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	var accept func(netip.Addr) bool
	if len(cfg.AcceptRemote) > 0 {
		prefixes := slices.Clone(cfg.AcceptRemote)
		accept = func(a netip.Addr) bool {
			a = a.Unmap()
			return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
		}
	}
	sock, err := ice.Listen(ice.SocketConfig{
		Addr:           netip.AddrPortFrom(bind, uint16(cfg.MediaPort)),
		Advertise:      advertise,
		AcceptRemote:   accept,
		ReadBuffer:     4 << 20,
		WriteBuffer:    4 << 20,
		SendBatch:      cfg.SendBatch,
		SendBatchBytes: cfg.SendBytes,
		NoGSO:          cfg.NoGSO,
		Logger:         log.With("component", "media-socket"),
	})
	if err != nil {
		return fmt.Errorf("media socket: %w", err)
	}
	log.Info("media socket up", "addr", sock.LocalAddr().String(), "advertise", advertise, "dtls_fingerprint", cert.Fingerprint())
	sockCtx, stopSock := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSock()
	sockDone := make(chan error, 1)
	go func() { sockDone <- sock.Serve(sockCtx) }()

	dirURI := cfg.DirectoryURI
	if dirURI == "" {
		host := bind
		if len(advertise) > 0 {
			host = advertise[0]
		} else if host.IsUnspecified() {
			host = netip.MustParseAddr("127.0.0.1")
		}
		dirURI = "ws://" + net.JoinHostPort(host.String(), strconv.Itoa(cfg.WSPort))
	}
	dir, err := directory.Open(ctx, cfg.Directory, directory.Options{ServerID: serverID, URI: dirURI, TTL: cfg.DirectoryTTL,
		Logger: log.With("component", "directory")})
	if err != nil {
		stopSock()
		_ = sock.Close()
		return fmt.Errorf("directory: %w", err)
	}
	defer func() { _ = dir.Close() }()
	reg := newRegistrar(dir, log.With("component", "directory"))
	defer reg.close()

	engine := media.New(media.Config{
		Socket:      sock,
		Certificate: cert,
		ICETimeout:  cfg.ICETimeout,
		DTLSTimeout: cfg.DTLSTimeout,
		Outbound: ice.SocketConfig{
			Addr:         netip.AddrPortFrom(bind, 0),
			Advertise:    advertise,
			AcceptRemote: accept,
			ReadBuffer:   1 << 20,
			WriteBuffer:  1 << 20,
		},
		ServerID:       serverID,
		PublisherGrace: cfg.PublisherGrace,
		MaxStreams:     cfg.MaxStreams,
		MaxPlayers:     cfg.MaxPlayers,
		OnStream:       reg.onStream,
		Logger:         log.With("component", "media"),
	})
	engine.Registry().SetMaxWriters(cfg.MaxWriters)
	var roots *x509.CertPool
	if cfg.AgentCA != "" {
		pem, err := os.ReadFile(cfg.AgentCA)
		if err != nil {
			_ = sock.Close()
			return fmt.Errorf("agent-ca: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			_ = sock.Close()
			return fmt.Errorf("agent-ca %s: no PEM certificates", cfg.AgentCA)
		}
	}
	targets := &netguard.Policy{Allow: cfg.RelayAllowNet, Deny: cfg.RelayDenyNet}
	signer, verifier, err := relayAuth(cfg, serverID, cert.Fingerprint())
	if err != nil {
		_ = sock.Close()
		return err
	}
	if verifier != nil {
		log.Info("relay authentication on", "signs", signer != nil, "peers", len(cfg.RelayPeers), "required", cfg.RelayRequireAuth)
	}
	relays, err := relay.NewManager(relay.Config{
		Engine:         engine,
		Dial:           agentDial(log.With("component", "relay-client"), cfg.AgentInsecure, targets, signer),
		Probe:          agentProbe(log.With("component", "relay-client"), cfg.AgentInsecure, targets),
		Targets:        targets,
		ServerID:       serverID,
		AllowHosts:     cfg.RelayAllow,
		AgentTLS:       cfg.AgentSSL,
		RootCAs:        roots,
		AttemptTimeout: cfg.ICETimeout + cfg.DTLSTimeout,
		NoMediaTimeout: cfg.RelayNoMedia,
		RetryMax:       cfg.RelayRetryMax,
		FailedTTL:      cfg.RelayFailedTTL,
		Logger:         log.With("component", "relay"),
	})
	if err != nil {
		_ = sock.Close()
		return fmt.Errorf("relay manager: %w", err)
	}

	var auth signaling.Authorizer
	var hooks *resthook.Hooks
	if len(cfg.AppList) > 0 {
		secret := ""
		if cfg.HookSendHash {
			secret = cfg.HookSecret
		}
		hooks, err = resthook.New(resthook.Config{Apps: cfg.AppList, Timeout: cfg.RESTTimeout, SecretKey: secret,
			NodeID: serverID, Logger: log.With("component", "resthook")})
		if err != nil {
			_ = sock.Close()
			return fmt.Errorf("apps: %w", err)
		}
		defer hooks.Close()
		auth = hooks
		keys := make([]string, 0, len(cfg.AppList))
		for _, a := range cfg.AppList {
			keys = append(keys, a.AppKey)
		}
		log.Info("REST hooks on", "apps", keys, "timeout", cfg.RESTTimeout, "signed", secret != "")
	}
	hookStats := func() map[string]resthook.MethodStats {
		if hooks == nil {
			return nil
		}
		return hooks.Stats()
	}

	edge := relay.NewEdge(relays, relay.EdgeConfig{Lookup: directoryLookup(dir, serverID), IdleTimeout: cfg.EdgeIdle,
		MaxHops: cfg.EdgeMaxHops})
	connLimit := limits.New(limits.Config{Rate: limits.Rate{PerSecond: cfg.LimitConnRate, Burst: cfg.LimitConnBurst},
		Max: cfg.LimitConnPerIP, Exempt: cfg.LimitExempt})
	publishLimit := limits.New(limits.Config{Rate: limits.Rate{PerSecond: cfg.LimitPublishRate, Burst: cfg.LimitPublishBurst},
		Exempt: cfg.LimitExempt})
	sig := signaling.NewServer(signaling.ServerConfig{
		Engine:           engine,
		Logger:           log.With("component", "signaling"),
		PingInterval:     cfg.PingInterval,
		MaxMissedPongs:   cfg.PingProbes,
		ReadyTimeout:     cfg.ICETimeout + cfg.DTLSTimeout + 5*time.Second,
		ServerID:         serverID,
		Edge:             edge,
		Authorizer:       auth,
		ConnLimit:        connLimit,
		PublishLimit:     publishLimit,
		HandshakeTimeout: cfg.WSHandshakeTimeout,
		RelayAuth:        verifier,
		RelayRequireAuth: cfg.RelayRequireAuth,
	})
	whipH := whip.NewHandler(whip.Config{Engine: engine, Edge: edge, Token: cfg.WHIPToken, ServerID: serverID,
		RelayAuth: verifier, RelayRequireAuth: cfg.RelayRequireAuth,
		Authorize: whipAuthorize(hooks, publishLimit), Logger: log.With("component", "whip")})
	api := rest.NewHandler(rest.Config{Relays: relays, Streams: &streams{sig: sig, engine: engine, relays: relays, whip: whipH}, Connections: sig, Directory: dir, Metrics: streamMetrics{reg: engine.Registry()}, Token: cfg.RESTToken, Logger: log.With("component", "rest")})
	pages := web.Handler(web.Config{WSPort: cfg.WSPort, WSSPort: cfg.WSSPort})
	httpMux := http.NewServeMux()
	httpMux.Handle("/rest-api/", api)
	whipH.Mount(httpMux) // /whip/, /whep/ and /rest-api/stream/publish/ (more specific than /rest-api/: it wins)
	httpMux.Handle("GET /metrics", metricsHandler(metricsSource{reg: engine.Registry(), sock: sock, relays: relays, sig: sig, whip: whipH, dir: dir, hooks: hookStats}))
	httpMux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		ms, es := engine.Stats(), edge.Stats()
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok", "serverId": serverID, "socket": sock.Stats(), "signaling": sig.Stats(),
			"directory": directoryHealth(dir),
			"media": map[string]any{"takeovers": ms.Takeovers, "inGrace": ms.InGrace, "rtxReceived": ms.RTXReceived,
				"paddingReceived": ms.PaddingReceived, "unknownDropped": ms.UnknownDropped, "rtxRedundant": ms.RTXRedundant},
			"whip": whipH.Stats(),
			"edge": map[string]any{"pullsStarted": es.PullsStarted, "pullsEnded": es.PullsEnded, "active": es.Active}})
	})
	httpMux.Handle("/", pages)

	lctx, stopListeners := context.WithCancel(context.WithoutCancel(ctx))
	defer stopListeners()
	waitListeners, err := serveAll(lctx, log, cfg.ListenHost, tlsCfg, []listener{
		{name: "ws", port: cfg.WSPort, handler: sig},
		{name: "wss", port: cfg.WSSPort, tls: true, handler: sig},
		{name: "http", port: cfg.HTTPPort, handler: httpMux},
		{name: "https", port: cfg.HTTPSPort, tls: true, handler: httpMux},
	})
	if err != nil {
		stopSock()
		_ = sock.Close()
		return err
	}
	if cfg.PprofPort != 0 {
		// Profiles name goroutines and memory of every session: loopback only, whatever listen-host says.
		waitPprof, err := serveAll(lctx, log, "127.0.0.1", nil, []listener{{name: "pprof", port: cfg.PprofPort, handler: pprofHandler()}})
		if err != nil {
			stopListeners()
			waitListeners()
			stopSock()
			_ = sock.Close()
			return err
		}
		defer waitPprof()
	}
	log.Info("rtcrelay running", "server_id", serverID)

	select {
	case <-ctx.Done():
	case err := <-sockDone:
		log.Error("media socket stopped", "err", err)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	edge.Close()
	_ = relays.Close()
	if err := sig.Shutdown(sctx); err != nil {
		log.Warn("signaling shutdown", "err", err)
	}
	if err := whipH.Close(sctx); err != nil {
		log.Warn("whip shutdown", "err", err)
	}
	stopListeners()
	waitListeners()
	if err := engine.Close(sctx); err != nil {
		log.Warn("media engine close", "err", err)
	}
	engine.Registry().Close()
	stopSock()
	_ = sock.Close()
	log.Info("stopped")
	return nil
}

// agentDial is how relay agents reach other servers: as clients of the WCS WebSocket protocol (ws/wss URIs)
// or of a WHIP/WHEP endpoint (http/https URIs).
func agentDial(log *slog.Logger, insecure bool, targets *netguard.Policy, signer *relayauth.Signer) relay.DialFunc {
	dial, dialHTTP := relay.WCSDialer(log, targets, signer), relay.WHIPDialer(log, targets, signer)
	return func(ctx context.Context, uri string, tlsCfg *tls.Config) (relay.Conn, error) {
		if tlsCfg != nil && insecure {
			tlsCfg = tlsCfg.Clone()
			tlsCfg.InsecureSkipVerify = true
		}
		if relay.IsHTTP(uri) {
			return dialHTTP(ctx, uri, tlsCfg)
		}
		return dial(ctx, uri, tlsCfg)
	}
}

// relayAuth makes the relay token signer (with --relay-secret) and verifier (with it or --relay-peers); both nil
// without either.
func relayAuth(cfg *Config, serverID, fingerprint string) (*relayauth.Signer, *relayauth.Verifier, error) {
	if cfg.RelaySecret == "" && len(cfg.RelayPeers) == 0 {
		return nil, nil, nil
	}
	var signer *relayauth.Signer
	if cfg.RelaySecret != "" {
		s, err := relayauth.NewSigner(serverID, cfg.RelaySecret, fingerprint)
		if err != nil {
			return nil, nil, fmt.Errorf("relay-secret: %w", err)
		}
		signer = s
	}
	v, err := relayauth.NewVerifier(relayauth.Config{Secret: cfg.RelaySecret, Peers: cfg.RelayPeers, Skew: cfg.RelayAuthSkew})
	if err != nil {
		return nil, nil, fmt.Errorf("relay-peers: %w", err)
	}
	return signer, v, nil
}

// agentProbe asks a remote server for its ID (loop detection) the way agentDial connects.
func agentProbe(log *slog.Logger, insecure bool, targets *netguard.Policy) relay.ProbeFunc {
	probe, probeHTTP := relay.WCSProbe(log, targets), relay.WHIPProbe(targets)
	return func(ctx context.Context, uri string, tlsCfg *tls.Config) (string, error) {
		if tlsCfg != nil && insecure {
			tlsCfg = tlsCfg.Clone()
			tlsCfg.InsecureSkipVerify = true
		}
		if relay.IsHTTP(uri) {
			return probeHTTP(ctx, uri, tlsCfg)
		}
		return probe(ctx, uri, tlsCfg)
	}
}

// whipAuthorize is the WHIP/WHEP handler's check before a publish or play: the per-IP publish rate, then the
// REST hooks (publishStream / playStream of the "defaultApp" app, as for WebSocket clients), when configured.
func whipAuthorize(hooks *resthook.Hooks, publishLimit *limits.Limiter) func(ctx context.Context, req whip.AuthRequest) error {
	return func(ctx context.Context, req whip.AuthRequest) error {
		if req.Kind == "publish" {
			if ap, err := netip.ParseAddrPort(req.RemoteAddr); err == nil {
				if err := publishLimit.Allow(ap.Addr().Unmap()); err != nil {
					return err
				}
			}
		}
		if hooks == nil {
			return nil
		}
		kind := resthook.Publish
		if req.Kind == "play" {
			kind = resthook.Play
		}
		_, err := hooks.Authorize(ctx, resthook.Call{Kind: kind, Name: req.Name, Token: req.Token, RemoteAddr: req.RemoteAddr})
		return err
	}
}
