// Package resthook implements WCS-style REST hooks: authorization and notification of an application backend.
//
// An App (WCS's "add app" / "add app-rest-method") has an appKey, a backend base URL and a set of enabled
// methods. For an enabled method the server POSTs a JSON body to <url>/<method>:
//
//   - direct invocations (connect, publishStream, playStream) wait for the answer: 200 allows (an empty body, or a
//     JSON object whose "custom" field, when present, replaces the request's custom); any other status denies, as
//     does a timeout (Config.Timeout or App.Timeout, WCS's rest_request_timeout, default 15 s), a backend that
//     cannot be reached, an answer over 64 KiB or a 200 whose body is not a JSON object. A denial is an error
//     wrapping media.ErrRestricted; when the backend's non-200 answer is a JSON object with a string "info", that
//     text (at most 256 bytes) is the reason the client sees (Reason), otherwise "Restricted access".
//   - events (StreamStatusEvent, ConnectionStatusEvent, unPublishStream, stopStream, …) are fire-and-forget: they
//     are queued (bounded; a full queue drops and counts) and sent by a few workers.
//
// With Config.SecretKey set, every request carries "Authorization: WCS <hex HMAC-MD5 of the body>" as WCS does
// with rest_hook_send_hash=true and rest_hook_secret_key.
//
// Call and Notify are what signaling uses (through its Authorizer interface). Authorize is for protocols that
// do not come over the WCS WebSocket (WHIP/WHEP):
//
//	res, err := hooks.Authorize(ctx, resthook.Call{Kind: resthook.Publish, Name: "s", Token: bearer, RemoteAddr: r.RemoteAddr})
//	if errors.Is(err, media.ErrRestricted) { /* 403 */ }
//
// It posts a publishStream/playStream body (appKey Call.AppKey or "defaultApp", custom {"token": Token},
// mediaProvider "WHIP"/"WHEP") to the app's backend and returns the custom the backend allowed.
package resthook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5" // WCS signs hooks with HMAC-MD5: compatibility is the point
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtcrelay/rtcrelay/media"
)

// DefaultAppKey is the appKey of the Web SDK (and of connections that send none).
const DefaultAppKey = "defaultApp"

// Method names.
const (
	MethodConnect               = "connect"
	MethodPublishStream         = "publishStream"
	MethodPlayStream            = "playStream"
	MethodUnPublishStream       = "unPublishStream"
	MethodStopStream            = "stopStream"
	MethodStreamStatusEvent     = "StreamStatusEvent"
	MethodConnectionStatusEvent = "ConnectionStatusEvent"
)

// blocking are the methods whose answer decides; the rest are events.
var blocking = []string{MethodConnect, MethodPublishStream, MethodPlayStream}

// Methods lists every method an app may enable.
var Methods = []string{MethodConnect, MethodPublishStream, MethodPlayStream, MethodUnPublishStream, MethodStopStream,
	MethodStreamStatusEvent, MethodConnectionStatusEvent}

// IsEvent reports whether method is fire-and-forget.
func IsEvent(method string) bool { return !slices.Contains(blocking, method) }

const (
	maxAnswer = 64 << 10
	maxReason = 256
)

// Errors. Every denial matches media.ErrRestricted (errors.Is) without repeating its text.
var (
	ErrUnknownApp error = restrictedError("resthook: unknown appKey")
	ErrDenied     error = restrictedError("resthook: denied by the backend")
	ErrBackend    error = restrictedError("resthook: no usable answer from the backend")
)

type restrictedError string

func (e restrictedError) Error() string        { return string(e) }
func (e restrictedError) Is(target error) bool { return target == media.ErrRestricted }

// DeniedError is a backend's refusal (a non-200 status, or a failure to get an answer).
type DeniedError struct {
	App, Method string
	Status      int    // HTTP status; 0 when there was no answer
	Info        string // the backend's reason ("info" of its JSON answer), may be empty
	Err         error  // ErrDenied or ErrBackend (with the cause)
}

func (e *DeniedError) Error() string {
	s := fmt.Sprintf("%s/%s", e.App, e.Method)
	if e.Status != 0 {
		s += " status " + strconv.Itoa(e.Status)
	}
	if e.Info != "" {
		s += " (" + e.Info + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *DeniedError) Unwrap() error { return e.Err }

// Reason is the info string the client should see instead of "Restricted access" ("" for the default).
func (e *DeniedError) Reason() string { return e.Info }

// Duration is a time.Duration in JSON: a string ("5s") or a number of seconds (WCS's rest_request_timeout=15).
type Duration time.Duration

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := ParseTimeout(s)
		*d = Duration(v)
		return err
	}
	var n float64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("timeout: want \"5s\" or a number of seconds: %w", err)
	}
	*d = Duration(time.Duration(n * float64(time.Second)))
	return nil
}

// ParseTimeout reads a duration ("5s") or a bare number of seconds ("15", WCS style).
func ParseTimeout(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("timeout %q: want \"5s\" or a number of seconds", s)
	}
	return d, nil
}

// App is one application of the apps file.
type App struct {
	Name    string   `json:"name"`
	AppKey  string   `json:"appKey"`
	URL     string   `json:"url"`     // backend base URL; the method name is appended
	Methods []string `json:"methods"` // enabled methods; ["*"] or ["all"] for every one
	// Timeout overrides Config.Timeout for this app (0: the global one).
	Timeout Duration `json:"timeout,omitempty"`
	// RestUsername/RestPassword: HTTP Basic authentication towards the backend (WCS's -u/-p of add app).
	RestUsername string `json:"restUsername,omitempty"`
	RestPassword string `json:"restPassword,omitempty"`
}

// ParseApps reads an apps document: a JSON array of apps or {"apps": [...]}, unknown fields rejected, every
// problem reported.
func ParseApps(b []byte) ([]App, error) {
	var apps []App
	t := bytes.TrimSpace(b)
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.DisallowUnknownFields()
	if bytes.HasPrefix(t, []byte("[")) {
		if err := dec.Decode(&apps); err != nil {
			return nil, fmt.Errorf("apps: %w", err)
		}
	} else {
		var doc struct {
			Apps []App `json:"apps"`
		}
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("apps: %w", err)
		}
		apps = doc.Apps
	}
	return apps, validate(apps)
}

// LoadApps reads an apps file, or inline JSON when s starts with '[' or '{'.
func LoadApps(s string) ([]App, error) {
	if t := strings.TrimSpace(s); strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{") {
		return ParseApps([]byte(t))
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("apps: %w", err)
	}
	apps, err := ParseApps(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	return apps, nil
}

func validate(apps []App) error {
	var errs []error
	keys := map[string]bool{}
	for i := range apps {
		a := &apps[i]
		where := fmt.Sprintf("app %d (%s)", i, a.Name)
		if a.AppKey == "" {
			errs = append(errs, fmt.Errorf("%s: appKey missing", where))
		} else if keys[a.AppKey] {
			errs = append(errs, fmt.Errorf("%s: appKey %q used twice", where, a.AppKey))
		}
		keys[a.AppKey] = true
		if slices.Contains(a.Methods, "*") || slices.Contains(a.Methods, "all") {
			a.Methods = slices.Clone(Methods)
		}
		for _, m := range a.Methods {
			if !slices.Contains(Methods, m) {
				errs = append(errs, fmt.Errorf("%s: unknown method %q (known: %s)", where, m, strings.Join(Methods, ", ")))
			}
		}
		if len(a.Methods) > 0 {
			u, err := url.Parse(a.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				errs = append(errs, fmt.Errorf("%s: url %q: want http:// or https://", where, a.URL))
			}
		}
		if a.Timeout < 0 {
			errs = append(errs, fmt.Errorf("%s: negative timeout", where))
		}
	}
	return errors.Join(errs...)
}

// Config configures Hooks.
type Config struct {
	Apps      []App
	Timeout   time.Duration // per request; default 15 s; negative: none (WCS's rest_request_timeout=0)
	SecretKey string        // sign bodies (Authorization: WCS <HMAC-MD5 hex>) when set
	NodeID    string        // "nodeId" in every body
	// MaxInFlight bounds the concurrent direct invocations (default 64); more wait (for their ctx).
	MaxInFlight int
	// EventQueue and EventWorkers: the events' bounded queue (default 1024) and senders (default 4).
	EventQueue, EventWorkers int
	Client                   *http.Client // default: a client of its own that follows no redirects
	Logger                   *slog.Logger
}

// MethodStats are the counters of one method.
type MethodStats struct {
	Allowed   uint64  `json:"allowed"`
	Denied    uint64  `json:"denied"` // non-200 answers
	Errors    uint64  `json:"errors"` // no usable answer (down, timeout, malformed, too big)
	Dropped   uint64  `json:"dropped,omitempty"`
	MeanMs    float64 `json:"meanMs"` // mean request latency
	count, ns uint64
}

type counters struct {
	allowed, denied, errors, dropped, count, ns atomic.Uint64
}

// Hooks sends the hooks of the configured apps. Its zero value is not usable: use New.
type Hooks struct {
	cfg    Config
	apps   map[string]*App
	client *http.Client
	log    *slog.Logger
	sem    chan struct{}
	events chan event
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
	stats  map[string]*counters
}

type event struct {
	app    *App
	method string
	body   []byte
}

// New returns Hooks for cfg.Apps (validated again) and starts the event workers; Close stops them.
func New(cfg Config) (*Hooks, error) {
	apps := slices.Clone(cfg.Apps)
	if err := validate(apps); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	if cfg.EventQueue <= 0 {
		cfg.EventQueue = 1024
	}
	if cfg.EventWorkers <= 0 {
		cfg.EventWorkers = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Hooks{cfg: cfg, apps: map[string]*App{}, client: cfg.Client, log: cfg.Logger,
		sem: make(chan struct{}, cfg.MaxInFlight), events: make(chan event, cfg.EventQueue), stats: map[string]*counters{}}
	if h.client == nil {
		h.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	for i := range apps {
		h.apps[apps[i].AppKey] = &apps[i]
	}
	for _, m := range Methods {
		h.stats[m] = &counters{}
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	for range cfg.EventWorkers {
		h.wg.Add(1)
		go h.worker()
	}
	return h, nil
}

// Close stops the event workers (events still queued are dropped) and waits for them.
func (h *Hooks) Close() {
	h.cancel()
	h.wg.Wait()
}

// Known reports whether appKey names a configured app.
func (h *Hooks) Known(appKey string) bool { return h.apps[appKey] != nil }

// Enabled reports whether appKey's app has method enabled.
func (h *Hooks) Enabled(appKey, method string) bool {
	a := h.apps[appKey]
	return a != nil && slices.Contains(a.Methods, method)
}

// Stats returns the counters per method.
func (h *Hooks) Stats() map[string]MethodStats {
	out := make(map[string]MethodStats, len(h.stats))
	for m, c := range h.stats {
		s := MethodStats{Allowed: c.allowed.Load(), Denied: c.denied.Load(), Errors: c.errors.Load(), Dropped: c.dropped.Load(),
			count: c.count.Load(), ns: c.ns.Load()}
		if s.count > 0 {
			s.MeanMs = float64(s.ns) / float64(s.count) / 1e6
		}
		out[m] = s
	}
	return out
}

// Call runs the direct invocation method for appKey with body (the request's fields). It returns the fields to
// use afterwards: body itself, with "custom" replaced when the backend's 200 answer carries one. An unknown
// appKey is ErrUnknownApp; a method the app does not enable allows at once. Errors wrap media.ErrRestricted.
func (h *Hooks) Call(ctx context.Context, appKey, method string, body map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	a := h.apps[appKey]
	if a == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownApp, appKey)
	}
	if !slices.Contains(a.Methods, method) {
		return body, nil
	}
	b, err := h.encode(a, body)
	if err != nil {
		return nil, err
	}
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, &DeniedError{App: a.AppKey, Method: method, Err: fmt.Errorf("%w: %w", ErrBackend, context.Cause(ctx))}
	}
	defer func() { <-h.sem }()
	status, answer, err := h.post(ctx, a, method, b)
	c := h.stats[method]
	switch {
	case err != nil:
		c.errors.Add(1)
		h.log.Warn("REST hook failed, denying", "app", a.AppKey, "method", method, "url", a.URL, "err", err)
		return nil, &DeniedError{App: a.AppKey, Method: method, Status: status, Err: fmt.Errorf("%w: %w", ErrBackend, err)}
	case status != http.StatusOK:
		c.denied.Add(1)
		de := &DeniedError{App: a.AppKey, Method: method, Status: status, Info: reasonOf(answer), Err: ErrDenied}
		h.log.Info("REST hook denied", "app", a.AppKey, "method", method, "status", status, "info", de.Info)
		return nil, de
	}
	out := body
	if len(bytes.TrimSpace(answer)) > 0 {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(answer, &fields); err != nil || fields == nil {
			c.errors.Add(1)
			h.log.Warn("REST hook answer is not a JSON object, denying", "app", a.AppKey, "method", method, "err", err)
			return nil, &DeniedError{App: a.AppKey, Method: method, Status: status,
				Err: fmt.Errorf("%w: 200 answer is not a JSON object", ErrBackend)}
		}
		if custom, ok := fields["custom"]; ok {
			out = make(map[string]json.RawMessage, len(body))
			for k, v := range body {
				out[k] = v
			}
			out["custom"] = custom
		}
	}
	c.allowed.Add(1)
	return out, nil
}

// Notify queues the event method for appKey (nothing when the app does not enable it). It never blocks.
func (h *Hooks) Notify(appKey, method string, body map[string]json.RawMessage) {
	a := h.apps[appKey]
	if a == nil || !slices.Contains(a.Methods, method) {
		return
	}
	b, err := h.encode(a, body)
	if err != nil {
		h.log.Error("REST event not encoded", "method", method, "err", err)
		return
	}
	select {
	case h.events <- event{a, method, b}:
	default:
		if h.stats[method].dropped.Add(1)%100 == 1 {
			h.log.Warn("REST event queue full, events dropped", "method", method, "dropped", h.stats[method].dropped.Load())
		}
	}
}

func (h *Hooks) worker() {
	defer h.wg.Done()
	for {
		select {
		case <-h.ctx.Done():
			return
		case ev := <-h.events:
			status, _, err := h.post(h.ctx, ev.app, ev.method, ev.body)
			c := h.stats[ev.method]
			switch {
			case err != nil:
				c.errors.Add(1)
				h.log.Debug("REST event failed", "app", ev.app.AppKey, "method", ev.method, "err", err)
			case status != http.StatusOK:
				c.denied.Add(1)
			default:
				c.allowed.Add(1)
			}
		}
	}
}

// encode marshals body with the app's appKey and our nodeId filled in.
func (h *Hooks) encode(a *App, body map[string]json.RawMessage) ([]byte, error) {
	m := make(map[string]json.RawMessage, len(body)+2)
	for k, v := range body {
		m[k] = v
	}
	m["appKey"], _ = json.Marshal(a.AppKey)
	if _, ok := m["nodeId"]; !ok && h.cfg.NodeID != "" {
		m["nodeId"], _ = json.Marshal(h.cfg.NodeID)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("resthook: encode %s body: %w", a.AppKey, err)
	}
	return b, nil
}

// post sends one request and reads at most maxAnswer bytes of the answer.
func (h *Hooks) post(ctx context.Context, a *App, method string, body []byte) (int, []byte, error) {
	t0 := time.Now()
	c := h.stats[method]
	defer func() {
		c.count.Add(1)
		c.ns.Add(uint64(time.Since(t0)))
	}()
	timeout := h.cfg.Timeout
	if a.Timeout > 0 {
		timeout = time.Duration(a.Timeout)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, fmt.Errorf("no answer in %v (rest_request_timeout)", timeout))
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(a.URL, "/")+"/"+method, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if h.cfg.SecretKey != "" {
		req.Header.Set("Authorization", "WCS "+Sign(h.cfg.SecretKey, body))
	} else if a.RestUsername != "" {
		req.SetBasicAuth(a.RestUsername, a.RestPassword)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return 0, nil, fmt.Errorf("%w (%w)", cause, err)
		}
		return 0, nil, fmt.Errorf("backend unreachable: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read answer: %w", err)
	}
	if len(answer) > maxAnswer {
		return resp.StatusCode, nil, fmt.Errorf("answer over %d KiB", maxAnswer>>10)
	}
	return resp.StatusCode, answer, nil
}

// Sign is the hex HMAC-MD5 of body with key: WCS's "Authorization: WCS <hash>" with rest_hook_send_hash.
func Sign(key string, body []byte) string {
	m := hmac.New(md5.New, []byte(key))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// reasonOf is the "info" string of a JSON answer, capped.
func reasonOf(answer []byte) string {
	var v struct {
		Info string `json:"info"`
	}
	if json.Unmarshal(answer, &v) != nil {
		return ""
	}
	s := strings.TrimSpace(v.Info)
	if len(s) > maxReason {
		s = s[:maxReason]
	}
	return s
}

// Kind of an Authorize call.
type Kind int

const (
	Publish Kind = iota + 1
	Play
)

// Call is an authorization request of a protocol other than the WCS WebSocket (WHIP/WHEP).
type Call struct {
	Kind           Kind
	AppKey         string // default DefaultAppKey
	Name           string // stream name
	MediaSessionID string // optional
	Token          string // sent as custom.token (e.g. the WHIP bearer token)
	RemoteAddr     string // the client's address; sessionId is "/<RemoteAddr>/whip"
}

// Result is an allowed Call: the custom object the backend returned (or the one sent).
type Result struct {
	Custom json.RawMessage
}

// Authorize posts a publishStream (Kind Publish) or playStream body for c to its app's backend. Denials (and an
// unknown appKey) wrap media.ErrRestricted; with no such method enabled it allows.
func (h *Hooks) Authorize(ctx context.Context, c Call) (Result, error) {
	appKey := c.AppKey
	if appKey == "" {
		appKey = DefaultAppKey
	}
	method, provider, published := MethodPublishStream, "WHIP", true
	if c.Kind == Play {
		method, provider, published = MethodPlayStream, "WHEP", false
	} else if c.Kind != Publish {
		return Result{}, fmt.Errorf("resthook: Authorize: unknown kind %d", c.Kind)
	}
	custom, _ := json.Marshal(map[string]string{"token": c.Token})
	body := map[string]json.RawMessage{}
	set := func(k string, v any) { body[k], _ = json.Marshal(v) }
	set("name", c.Name)
	set("mediaSessionId", c.MediaSessionID)
	set("sessionId", "/"+c.RemoteAddr+"/"+strings.ToLower(provider))
	set("published", published)
	set("hasVideo", true)
	set("hasAudio", true)
	set("status", "PENDING")
	set("record", false)
	set("mediaProvider", provider)
	body["custom"] = custom
	out, err := h.Call(ctx, appKey, method, body)
	if err != nil {
		return Result{}, err
	}
	return Result{Custom: out["custom"]}, nil
}
