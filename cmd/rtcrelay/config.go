package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rtcrelay/rtcrelay/resthook"
)

// errHelp reports that -h was asked for and usage printed.
var errHelp = flag.ErrHelp

// Config is the whole server configuration. It is loaded once, in one pipeline: defaults → config file → environment
// (RTCRELAY_<NAME>) → command-line flags, then validated; it is never changed afterwards.
type Config struct {
	ListenHost string
	WSPort     int
	WSSPort    int
	HTTPPort   int
	HTTPSPort  int
	TLSCert    string
	TLSKey     string

	MediaPort    int
	MediaBind    string
	IPs          []netip.Addr
	AcceptRemote []netip.Prefix
	DTLSCert     string
	DTLSKey      string
	SendBatch    int
	SendBytes    int // a send batch's slab
	MaxWriters   int
	NoGSO        bool
	ICETimeout   time.Duration
	DTLSTimeout  time.Duration

	PingInterval time.Duration
	PingProbes   int

	ServerID       string
	AgentSSL       bool
	AgentCA        string
	AgentInsecure  bool
	RelayAllow     []string
	RelayAllowNet  []netip.Prefix
	RelayDenyNet   []netip.Prefix
	RelayFailedTTL time.Duration
	PublisherGrace time.Duration
	RelayNoMedia   time.Duration
	RelayRetryMax  time.Duration
	Directory      string
	DirectoryURI   string
	DirectoryTTL   time.Duration
	EdgeIdle       time.Duration
	EdgeMaxHops    int
	RESTToken      string

	RelaySecret      string            // --relay-secret: signs our relays, verifies servers not in RelayPeers
	RelayPeers       map[string]string // --relay-peers: server ID → that server's relay secret
	RelayRequireAuth bool
	RelayAuthSkew    time.Duration

	MaxStreams, MaxPlayers int
	LimitConnRate          float64
	LimitConnBurst         int
	LimitConnPerIP         int
	LimitPublishRate       float64
	LimitPublishBurst      int
	LimitExempt            []netip.Prefix
	WSHandshakeTimeout     time.Duration
	WHIPToken              string
	Apps                   string         // --apps: a file, or inline JSON (the apps key of a JSON --config file)
	AppList                []resthook.App // parsed from Apps by Validate
	RESTTimeout            time.Duration  // rest_request_timeout
	HookSecret             string         // rest_hook_secret_key
	HookSendHash           bool           // rest_hook_send_hash

	LogLevel  string
	LogFormat string
	PprofPort int
}

// flagSet declares every setting as a flag bound to c; the flag name is also the config-file key and, upper-cased
// with '-' → '_', the RTCRELAY_ environment variable.
func (c *Config) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("rtcrelay", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: rtcrelay [flags]\n\nEvery flag is also RTCRELAY_<NAME> in the environment and a key in the --config file.\n\n")
		fs.PrintDefaults()
	}
	fs.String("config", "", "configuration file (key=value lines or a JSON object; keys are flag names)")
	fs.StringVar(&c.ListenHost, "listen-host", "127.0.0.1", "address the WebSocket and HTTP listeners bind (0.0.0.0 for all)")
	fs.IntVar(&c.WSPort, "ws-port", 8080, "WebSocket signaling port, ws:// (0 disables)")
	fs.IntVar(&c.WSSPort, "wss-port", 8443, "WebSocket signaling port, wss:// (needs --tls-cert; 0 disables)")
	fs.IntVar(&c.HTTPPort, "http-port", 8081, "HTTP port: REST API and web pages (0 disables)")
	fs.IntVar(&c.HTTPSPort, "https-port", 8444, "HTTPS port: REST API and web pages (needs --tls-cert; 0 disables)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate for wss:// and https://")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key for wss:// and https://")
	fs.IntVar(&c.MediaPort, "media-port", 31001, "the one UDP port all media sessions share")
	fs.StringVar(&c.MediaBind, "media-bind", "", "address the media UDP socket binds (default: --listen-host, or 0.0.0.0 when --ip advertises a non-loopback address)")
	fs.Func("ip", "addresses advertised as ICE candidates, comma-separated (public IP / 1:1 NAT; default: the bound address, or 127.0.0.1)", func(s string) error {
		ips, err := parseList(s, netip.ParseAddr)
		c.IPs = ips
		return err
	})
	fs.Func("accept-remote", "accept media only from these prefixes, comma-separated CIDRs (default: any)", func(s string) error {
		ps, err := parseList(s, netip.ParsePrefix)
		c.AcceptRemote = ps
		return err
	})
	fs.StringVar(&c.DTLSCert, "dtls-cert", "", "PEM certificate for DTLS (default: a fresh ECDSA P-256 one per start)")
	fs.StringVar(&c.DTLSKey, "dtls-key", "", "PEM private key for DTLS")
	fs.IntVar(&c.SendBatch, "send-batch", 0, "datagrams per sendmmsg on the forwarding path (0: the default 64; 1: one sendto each)")
	fs.IntVar(&c.SendBytes, "send-batch-bytes", 0, "bytes of a send batch's slab, into which its datagrams are packed (0: the default 16384)")
	fs.IntVar(&c.MaxWriters, "max-writers", 0, "most writer goroutines per stream (about √players run; 0: the default, 8 per CPU within 8..64)")
	fs.BoolVar(&c.NoGSO, "no-gso", false, "do not coalesce a player's equal-size packets into one UDP GSO send")
	fs.DurationVar(&c.ICETimeout, "ice-timeout", 10*time.Second, "deadline for ICE to connect")
	fs.DurationVar(&c.DTLSTimeout, "dtls-timeout", 10*time.Second, "deadline for the DTLS handshake")
	fs.DurationVar(&c.PingInterval, "ping-interval", 5*time.Second, "server ping interval on WebSocket sessions")
	fs.IntVar(&c.PingProbes, "ping-probes", 10, "missed pongs before a WebSocket session is closed")
	fs.StringVar(&c.ServerID, "server-id", "", "this server's id in relay paths, for loop detection (default: random)")
	fs.BoolVar(&c.AgentSSL, "wcs-agent-ssl", false, "allow relay agents to use wss:// URIs (WCS's wcs_agent_ssl)")
	fs.StringVar(&c.AgentCA, "agent-ca", "", "PEM file of root certificates relay agents trust for wss:// (default: system roots)")
	fs.BoolVar(&c.AgentInsecure, "agent-insecure", false, "relay agents skip TLS certificate verification (testing only)")
	fs.Func("relay-allow", "hosts relay agents may connect to, comma-separated (default: any)", func(s string) error {
		c.RelayAllow, _ = parseList(s, func(s string) (string, error) { return s, nil })
		return nil
	})
	fs.Func("relay-allow-net", "the only networks relay agents may connect to, comma-separated CIDRs; replaces the default rules (which refuse link-local, cloud metadata, multicast, unspecified, broadcast and reserved addresses)", func(s string) error {
		ps, err := parseList(s, netip.ParsePrefix)
		c.RelayAllowNet = ps
		return err
	})
	fs.Func("relay-deny-net", "networks relay agents must not connect to, comma-separated CIDRs, on top of the default rules (e.g. 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16 for an edge on the internet)", func(s string) error {
		ps, err := parseList(s, netip.ParsePrefix)
		c.RelayDenyNet = ps
		return err
	})
	fs.DurationVar(&c.RelayFailedTTL, "relay-failed-ttl", 60*time.Second, "how long failed relay agents stay listed")
	fs.DurationVar(&c.PublisherGrace, "publisher-grace", 5*time.Second, "how long a stream whose publisher was lost (transport or WebSocket) stays published for a takeover by the same client or relay (0: none)")
	fs.DurationVar(&c.RelayNoMedia, "relay-no-media-timeout", 5*time.Second, "an established relay without RTP for this long reconnects")
	fs.DurationVar(&c.RelayRetryMax, "relay-retry-max", 500*time.Millisecond, "the longest wait between two attempts of a relay agent")
	fs.StringVar(&c.Directory, "directory", "", "the cluster's stream directory: redis://host:6379/0 (default: in-process, a single server)")
	fs.StringVar(&c.DirectoryURI, "directory-uri", "", "the signaling URI other servers reach this one at, published in the directory (default: ws://<ip>:<ws-port>)")
	fs.DurationVar(&c.DirectoryTTL, "directory-ttl", 6*time.Second, "how long a directory entry outlives its server (refreshed every third of it)")
	fs.DurationVar(&c.EdgeIdle, "edge-idle-timeout", 30*time.Second, "an on-demand edge pull with no players ends after this")
	fs.IntVar(&c.EdgeMaxHops, "edge-max-hops", 4, "the longest relay path an on-demand edge pull may extend")
	fs.StringVar(&c.RelaySecret, "relay-secret", "", "the cluster's relay secret: signs this server's relay connections, and verifies those of every server not in --relay-peers (default: none, relays are ordinary clients)")
	fs.Func("relay-peers", "per-server relay secrets, comma-separated server-id=secret (each that server's own --relay-secret): a listed server is verified only with its own", func(s string) error {
		peers, err := parseList(s, func(f string) ([2]string, error) {
			id, sec, ok := strings.Cut(f, "=")
			if id, sec = strings.TrimSpace(id), strings.TrimSpace(sec); !ok || id == "" || sec == "" {
				return [2]string{}, fmt.Errorf("relay peer %q: want server-id=secret", f)
			}
			return [2]string{id, sec}, nil
		})
		c.RelayPeers = map[string]string{}
		for _, p := range peers {
			c.RelayPeers[p[0]] = p[1]
		}
		return err
	})
	fs.BoolVar(&c.RelayRequireAuth, "relay-require-auth", false, "refuse relays that present no valid relay token (an invalid token at connection, a relay path without a token at publish/play); needs --relay-secret or --relay-peers")
	fs.DurationVar(&c.RelayAuthSkew, "relay-auth-skew", 60*time.Second, "how far a relay token's time may be from this server's clock")
	fs.StringVar(&c.RESTToken, "rest-token", "", "bearer token required by the REST API (default: none)")
	fs.StringVar(&c.WHIPToken, "whip-token", "", "bearer token required by WHIP/WHEP POST, PATCH and DELETE (default: none)")
	fs.IntVar(&c.MaxStreams, "max-streams", 1000, "streams this server publishes at most (0: no limit); beyond it a publish fails with 'Server at capacity'")
	fs.IntVar(&c.MaxPlayers, "max-players", 2000, "players this server serves at most (0: no limit); a 2-core server forwards one 1.5 Mbit/s stream to 1000")
	fs.DurationVar(&c.WSHandshakeTimeout, "ws-handshake-timeout", 10*time.Second, "a WebSocket session that sends no `connection` message within this is closed")
	fs.Float64Var(&c.LimitConnRate, "limit-conn-rate", 20, "new WebSocket connections per second per client IP (0: no limit)")
	fs.IntVar(&c.LimitConnBurst, "limit-conn-burst", 50, "burst of new WebSocket connections per client IP")
	fs.IntVar(&c.LimitConnPerIP, "limit-conn-per-ip", 200, "open WebSocket connections per client IP (0: no limit)")
	fs.Float64Var(&c.LimitPublishRate, "limit-publish-rate", 5, "publishes (WebSocket and WHIP) per second per client IP (0: no limit)")
	fs.IntVar(&c.LimitPublishBurst, "limit-publish-burst", 20, "burst of publishes per client IP")
	c.LimitExempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	fs.Func("limit-exempt", "client networks the per-IP limits do not apply to, comma-separated CIDRs (default 127.0.0.0/8,::1/128; \"none\" for none)", func(s string) error {
		if strings.TrimSpace(s) == "none" {
			c.LimitExempt = nil
			return nil
		}
		ps, err := parseList(s, netip.ParsePrefix)
		c.LimitExempt = ps
		return err
	})
	fs.StringVar(&c.Apps, "apps", "", "applications and their REST hooks backends: a JSON file (see examples/apps.json) or inline JSON (default: none, everything allowed)")
	c.RESTTimeout = 15 * time.Second
	fs.Func("rest-request-timeout", "how long a REST hook may take before it denies: a duration or seconds, WCS's rest_request_timeout (default 15s; 0: no limit)", func(s string) error {
		d, err := resthook.ParseTimeout(s)
		if err == nil && d == 0 {
			d = -1 // no limit
		}
		c.RESTTimeout = d
		return err
	})
	fs.StringVar(&c.HookSecret, "rest-hook-secret-key", "", "key of the REST hooks' Authorization: WCS <HMAC-MD5> header (with --rest-hook-send-hash)")
	fs.BoolVar(&c.HookSendHash, "rest-hook-send-hash", false, "sign every REST hook body with --rest-hook-secret-key, as WCS's rest_hook_send_hash")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.IntVar(&c.PprofPort, "pprof-port", 0, "serve net/http/pprof on 127.0.0.1 at this port, for profiling (0 disables)")
	return fs
}

func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	var errs []error
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, v)
	}
	return out, errors.Join(errs...)
}

// LoadConfig runs the pipeline for args (without the program name) and env (os.Environ form).
func LoadConfig(args, env []string, stderr io.Writer) (*Config, error) {
	c := &Config{}
	fs := c.flagSet()
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	explicit := map[string]string{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = f.Value.String() })
	// Func flags do not report their value through String: keep the raw command-line values instead.
	for i := 0; i < len(args); i++ {
		name, val, ok := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if _, set := explicit[name]; !set || !strings.HasPrefix(args[i], "-") {
			continue
		}
		if !ok {
			if fl := fs.Lookup(name); fl != nil && isBool(fl) {
				val = "true"
			} else if i+1 < len(args) {
				i++
				val = args[i]
			}
		}
		explicit[name] = val
	}
	if file := explicit["config"]; file != "" {
		kv, err := readConfigFile(file)
		if err != nil {
			return nil, err
		}
		if err := apply(fs, kv, "config file "+file); err != nil {
			return nil, err
		}
	}
	envKV := map[string]string{}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		if name, ok := strings.CutPrefix(k, "RTCRELAY_"); ok {
			name = strings.ToLower(strings.ReplaceAll(name, "_", "-"))
			if fs.Lookup(name) == nil {
				// Not an error: the environment is shared with other programs (test harnesses, wrappers).
				fmt.Fprintf(stderr, "rtcrelay: ignoring unknown environment variable %s\n", k)
				continue
			}
			envKV[name] = v
		}
	}
	if err := apply(fs, envKV, "environment"); err != nil {
		return nil, err
	}
	if err := apply(fs, explicit, "command line"); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func apply(fs *flag.FlagSet, kv map[string]string, where string) error {
	var errs []error
	for k, v := range kv {
		name := strings.ReplaceAll(strings.ToLower(k), "_", "-")
		if name == "config" {
			continue
		}
		if fs.Lookup(name) == nil {
			errs = append(errs, fmt.Errorf("%s: unknown setting %q", where, k))
			continue
		}
		if err := fs.Set(name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", where, k, err))
		}
	}
	return errors.Join(errs...)
}

// readConfigFile reads a JSON object or key=value lines ('#' comments). Keys are flag names; '_' may stand for '-'.
func readConfigFile(name string) (map[string]string, error) {
	raw, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	kv := map[string]string{}
	if t := strings.TrimSpace(string(raw)); strings.HasPrefix(t, "{") {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("config %s: %w", name, err)
		}
		for k, v := range m {
			switch v := v.(type) {
			case string:
				kv[k] = v
			case map[string]any:
				b, _ := json.Marshal(v)
				kv[k] = string(b)
			case []any:
				if slices.ContainsFunc(v, func(e any) bool { _, ok := e.(map[string]any); return ok }) {
					b, _ := json.Marshal(v) // a list of objects (apps): kept as JSON
					kv[k] = string(b)
					continue
				}
				parts := make([]string, len(v))
				for i, p := range v {
					parts[i] = fmt.Sprint(p)
				}
				kv[k] = strings.Join(parts, ",")
			case float64:
				kv[k] = strconv.FormatFloat(v, 'f', -1, 64)
			default:
				kv[k] = fmt.Sprint(v)
			}
		}
		return kv, nil
	}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("config %s:%d: want key=value", name, n)
		}
		kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return kv, nil
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	for _, p := range []struct {
		name string
		v    int
	}{{"ws-port", c.WSPort}, {"wss-port", c.WSSPort}, {"http-port", c.HTTPPort}, {"https-port", c.HTTPSPort}, {"media-port", c.MediaPort}, {"pprof-port", c.PprofPort}} {
		if p.v < 0 || p.v > 65535 {
			errs = append(errs, fmt.Errorf("%s %d out of range", p.name, p.v))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert and tls-key go together"))
	}
	if (c.DTLSCert == "") != (c.DTLSKey == "") {
		errs = append(errs, errors.New("dtls-cert and dtls-key go together"))
	}
	if c.SendBatch < 0 || c.SendBytes < 0 || c.MaxWriters < 0 {
		errs = append(errs, errors.New("send-batch, send-batch-bytes and max-writers must not be negative"))
	}
	if c.ICETimeout <= 0 || c.DTLSTimeout <= 0 {
		errs = append(errs, errors.New("ice-timeout and dtls-timeout must be positive"))
	}
	if c.PingInterval <= 0 || c.PingProbes <= 0 {
		errs = append(errs, errors.New("ping-interval and ping-probes must be positive"))
	}
	if c.MediaBind == "" {
		c.MediaBind = c.ListenHost
		// Advertising an address other than loopback means browsers elsewhere must reach the media socket.
		if slices.ContainsFunc(c.IPs, func(a netip.Addr) bool { return !a.IsLoopback() }) {
			c.MediaBind = "0.0.0.0"
		}
	}
	if _, err := netip.ParseAddr(c.MediaBind); err != nil {
		errs = append(errs, fmt.Errorf("media-bind: %w", err))
	}
	if c.Apps != "" {
		apps, err := resthook.LoadApps(c.Apps)
		if err != nil {
			errs = append(errs, err)
		}
		c.AppList = apps
	}
	if c.RelayRequireAuth && c.RelaySecret == "" && len(c.RelayPeers) == 0 {
		errs = append(errs, errors.New("relay-require-auth needs relay-secret or relay-peers"))
	}
	if c.RelayAuthSkew <= 0 {
		errs = append(errs, errors.New("relay-auth-skew must be positive"))
	}
	if c.HookSendHash && c.HookSecret == "" {
		errs = append(errs, errors.New("rest-hook-send-hash needs rest-hook-secret-key"))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log-format %q: want text or json", c.LogFormat))
	}
	return errors.Join(errs...)
}
