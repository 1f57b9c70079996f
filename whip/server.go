// Package whip serves WebRTC-HTTP ingestion (WHIP, RFC 9725) and egress (WHEP) on top of the media engine, and
// has the small HTTP client relay agents use to push to a WHIP endpoint or pull from a WHEP endpoint.
//
// Resources (Handler):
//   - POST /whip/<name> with an application/sdp offer publishes stream <name>: 201 Created, the answer (ICE-lite,
//     every candidate inline), Location /whip/<name>/<id>, ETag, Accept-Patch.
//   - POST /whep/<name> plays stream <name> the same way (Location /whep/<name>/<id>).
//   - POST /rest-api/stream/publish/<name> is WCS's own WHIP endpoint: the same as POST /whip/<name>, but it
//     answers 202 Accepted, as WCS does.
//   - DELETE on a Location ends the session (200); the resource also disappears when its media session ends.
//   - PATCH application/trickle-ice-sdpfrag: trickled candidates are accepted and ignored (204: the server is
//     ICE-lite, it learns the client's addresses from the client's checks), an ICE restart is refused (422), a
//     stale If-Match gets 412.
//   - OPTIONS answers CORS preflights (204, Accept-Post: application/sdp); every response carries CORS headers.
//
// statusOf is the one place that maps errors to status codes.
package whip

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtcrelay/rtcrelay/limits"
	"github.com/rtcrelay/rtcrelay/media"
	"github.com/rtcrelay/rtcrelay/relayauth"
	"github.com/rtcrelay/rtcrelay/sdp"
)

// DefaultMaxBody is the request body limit when Config.MaxBody is 0.
const DefaultMaxBody = 64 << 10

// PathHeader carries the relay path (server IDs, oldest first, comma-separated) of a relay agent's request, for
// loop prevention; it is read into PublishRequest.Path / PlayRequest.Path.
const PathHeader = "X-Rtcrelay-Path"

// ServerIDHeader is sent on every response with this server's ID, so that a pushing relay can refuse a loop
// before it starts (an OPTIONS is enough to learn it).
const ServerIDHeader = "X-Rtcrelay-Server-Id"

// maxPathLen bounds the relay path a request may carry.
const maxPathLen = 32

// Engine is what the handler needs from the media engine (*media.Engine implements it).
type Engine interface {
	Publish(ctx context.Context, req media.PublishRequest) (media.Session, string, error)
	Play(ctx context.Context, req media.PlayRequest) (media.Session, string, error)
}

var _ Engine = (*media.Engine)(nil)

// Edge makes remote streams playable here on demand (relay.Edge implements it), as for the WebSocket players:
// Acquire returns at once for a local stream; an error wrapping media.ErrNotFound lets the play go on (and fail
// with 404); release is called once when the player's session ends.
type Edge interface {
	Acquire(ctx context.Context, name string, path []string) (release func(), err error)
}

// AuthRequest is what the Authorize hook decides on.
type AuthRequest struct {
	Kind       string // "publish" or "play"
	Name       string // stream name
	Token      string // the bearer token of the request ("" when none was sent)
	RemoteAddr string
	UserAgent  string
}

// Config configures a Handler.
type Config struct {
	Engine Engine
	Edge   Edge // optional: on-demand edge pulls for WHEP players
	// Token, when set, is the bearer token every POST, PATCH and DELETE must carry (else 401).
	Token string
	// Authorize, when set, is asked before every publish and play (after the token check); an error wrapping
	// media.ErrRestricted answers 403, any other error 500.
	Authorize func(ctx context.Context, req AuthRequest) error
	// RelayAuth, when set, verifies the relay token of a POST (relayauth.Header): a request with a valid token
	// whose offer carries the signed DTLS fingerprint is an authenticated relay: its PathHeader is trusted and
	// Token and Authorize do not apply to it. The PathHeader of every other request is ignored.
	RelayAuth *relayauth.Verifier
	// RelayRequireAuth (with RelayAuth) answers 403 to a POST with an invalid token, or with a relay path and
	// no token.
	RelayRequireAuth bool
	MaxBody          int64  // request body limit in bytes (default DefaultMaxBody)
	ServerID         string // sent in ServerIDHeader
	Logger           *slog.Logger
}

// Errors of the handler (besides the media sentinels); statusOf maps them.
var (
	ErrContentType  = errors.New("whip: unsupported content type")
	ErrBadRequest   = errors.New("whip: bad request")
	ErrUnauthorized = errors.New("whip: missing or wrong bearer token")
	ErrNoResource   = errors.New("whip: no such session resource")
	ErrPrecondition = errors.New("whip: If-Match does not match the session's ETag")
	ErrICERestart   = errors.New("whip: ICE restart is not supported")
	ErrMethod       = errors.New("whip: method not allowed")
	ErrClosing      = errors.New("whip: server is shutting down")
	errDeleted      = errors.New("whip: session deleted by the client")
)

// Stats are the handler's counters.
type Stats struct {
	Publishers int    `json:"publishers"` // live sessions
	Players    int    `json:"players"`
	Created    uint64 `json:"created"` // sessions created
	Refused    uint64 `json:"refused"` // requests answered with an error status (every one is logged)
	// RelaysAuthenticated counts POSTs with a valid relay token; RelayAuthFailures invalid tokens and
	// fingerprints, and relay paths without a token refused.
	RelaysAuthenticated uint64 `json:"relaysAuthenticated"`
	RelayAuthFailures   uint64 `json:"relayAuthFailures"`
}

// Handler serves the WHIP and WHEP resources. Mount it with Mount.
type Handler struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux

	created, refused atomic.Uint64
	relaysAuthed     atomic.Uint64 // POSTs with a valid relay token
	relayFailures    atomic.Uint64 // invalid relay tokens, fingerprints and unauthenticated relay paths refused or ignored

	mu        sync.Mutex
	resources map[string]*resource // by id
	closing   bool
	wg        sync.WaitGroup
}

// resource is one WHIP or WHEP session.
type resource struct {
	id, name, kind string // kind: "publish" or "play"
	location       string
	etag           string
	sess           media.Session
	release        func() // what Edge.Acquire took (nil: nothing)
	relay          bool   // created by an authenticated relay
	remote         string // the POST's client address
	created        time.Time
}

// Session is one live WHIP publisher or WHEP player (Sessions).
type Session struct {
	ID, Name, Kind string // Kind: "publish" or "play"
	Location       string // the resource path
	Remote         string // the client's address
	Relay          bool   // an authenticated relay
	Created        time.Time
}

// Sessions lists the live sessions, oldest first.
func (h *Handler) Sessions() []Session {
	h.mu.Lock()
	out := make([]Session, 0, len(h.resources))
	for _, r := range h.resources {
		out = append(out, Session{ID: r.id, Name: r.name, Kind: r.kind, Location: r.location, Remote: r.remote, Relay: r.relay, Created: r.created})
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b Session) int { return a.Created.Compare(b.Created) })
	return out
}

// Terminate ends the live session id (as a DELETE would); it reports whether there was one.
func (h *Handler) Terminate(id string, cause error) bool {
	h.mu.Lock()
	res := h.resources[id]
	delete(h.resources, id)
	h.mu.Unlock()
	if res == nil {
		return false
	}
	res.sess.Close(cause)
	return true
}

// NewHandler returns a Handler; cfg.Engine is required.
func NewHandler(cfg Config) *Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), resources: map[string]*resource{}}
	h.mux.HandleFunc("POST /whip/{name}", h.post("publish", http.StatusCreated, "/whip/"))
	h.mux.HandleFunc("POST /whep/{name}", h.post("play", http.StatusCreated, "/whep/"))
	h.mux.HandleFunc("POST /rest-api/stream/publish/{name}", h.post("publish", http.StatusAccepted, "/whip/"))
	for _, p := range []string{"/whip/{name}/{id}", "/whep/{name}/{id}"} {
		h.mux.HandleFunc("DELETE "+p, h.delete)
		h.mux.HandleFunc("PATCH "+p, h.patch)
	}
	h.mux.HandleFunc("OPTIONS /", h.options)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "OPTIONS, POST, PATCH, DELETE")
		h.fail(w, r, fmt.Errorf("%w: %s %s", ErrMethod, r.Method, r.URL.Path))
	})
	return h
}

// Mount routes the handler's paths on mux: /whip/, /whep/ and /rest-api/stream/publish/ (more specific than a
// /rest-api/ pattern, so it wins over the REST handler).
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.Handle("/whip/", h)
	mux.Handle("/whep/", h)
	mux.Handle("/rest-api/stream/publish/", h)
}

// ServeHTTP serves one request; every response carries the CORS headers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", "*")
	hd.Set("Access-Control-Allow-Methods", "OPTIONS, POST, PATCH, DELETE")
	hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match, "+PathHeader)
	hd.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch, Accept-Post, "+ServerIDHeader)
	if h.cfg.ServerID != "" {
		hd.Set(ServerIDHeader, h.cfg.ServerID)
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) options(w http.ResponseWriter, _ *http.Request) {
	hd := w.Header()
	hd.Set("Accept-Post", "application/sdp")
	hd.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	hd.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// post answers an offer: kind is "publish" or "play", ok the success status, prefix the resource path's.
func (h *Handler) post(kind string, ok int, prefix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		relay, err := h.relayAuth(r)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if relay == nil {
			if err := h.authenticate(w, r); err != nil {
				h.fail(w, r, err)
				return
			}
		}
		if err := contentType(r, "application/sdp"); err != nil {
			h.fail(w, r, err)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
		if err != nil {
			h.fail(w, r, fmt.Errorf("read offer: %w", err))
			return
		}
		if len(body) == 0 {
			h.fail(w, r, fmt.Errorf("%w: empty SDP offer", ErrBadRequest))
			return
		}
		if name == "" {
			h.fail(w, r, fmt.Errorf("%w: no stream name in the path", ErrBadRequest))
			return
		}
		path, err := parsePath(r.Header.Get(PathHeader))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if h.cfg.RelayAuth != nil {
			trust, err := relayauth.CheckStart(relay, h.cfg.RelayRequireAuth, len(path) > 0, string(body))
			if err != nil {
				h.relayFailures.Add(1)
				h.fail(w, r, err)
				return
			}
			if !trust && len(path) > 0 {
				h.log.Info("relay path of an unauthenticated request ignored", "path", path, "remote", r.RemoteAddr)
				path = nil
			}
		}
		if h.cfg.Authorize != nil && relay == nil {
			token, _ := bearer(r)
			if err := h.cfg.Authorize(r.Context(), AuthRequest{Kind: kind, Name: name, Token: token,
				RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent()}); err != nil {
				h.fail(w, r, fmt.Errorf("authorize %s %q: %w", kind, name, err))
				return
			}
		}
		res, answer, err := h.open(r.Context(), kind, name, prefix, string(body), path, relay != nil, r.RemoteAddr)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		hd := w.Header()
		hd.Set("Content-Type", "application/sdp")
		hd.Set("Location", res.location)
		hd.Set("ETag", res.etag)
		hd.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
		hd.Set("Cache-Control", "no-store")
		w.WriteHeader(ok)
		_, _ = io.WriteString(w, answer)
	}
}

// relayAuth verifies the request's relay token: the token when valid, nil when there is none (or it is invalid
// and not required: the request goes on as an ordinary client's), an error when an invalid one is refused.
func (h *Handler) relayAuth(r *http.Request) (*relayauth.Token, error) {
	hv := r.Header.Get(relayauth.Header)
	if hv == "" {
		return nil, nil
	}
	if h.cfg.RelayAuth == nil {
		h.log.Debug("relay token ignored: no relay secret configured here")
		return nil, nil
	}
	tok, err := relayauth.Decode(hv)
	if err == nil {
		err = h.cfg.RelayAuth.Verify(tok)
	}
	if err == nil {
		h.relaysAuthed.Add(1)
		return &tok, nil
	}
	h.relayFailures.Add(1)
	if h.cfg.RelayRequireAuth {
		return nil, err
	}
	h.log.Warn("relay token refused; the request goes on as an ordinary client's", "server", tok.Server, "err", err)
	return nil, nil
}

// open asks the engine for the session and registers its resource.
func (h *Handler) open(ctx context.Context, kind, name, prefix, offer string, path []string, relay bool, remote string) (*resource, string, error) {
	h.mu.Lock()
	closing := h.closing
	if !closing {
		h.wg.Add(1) // the open itself and then the resource's watcher
	}
	h.mu.Unlock()
	if closing {
		return nil, "", ErrClosing
	}
	id := randomHex(12)
	var release func()
	if kind == "play" && h.cfg.Edge != nil {
		rel, err := h.cfg.Edge.Acquire(ctx, name, path)
		switch {
		case err == nil:
			release = rel
		case errors.Is(err, media.ErrNotFound): // not in the cluster: the play below says 404
		default:
			h.wg.Done()
			return nil, "", fmt.Errorf("edge pull of %q: %w", name, err)
		}
	}
	var sess media.Session
	var answer string
	var err error
	if kind == "publish" {
		sess, answer, err = h.cfg.Engine.Publish(ctx, media.PublishRequest{Name: name, MediaSessionID: id, SDP: offer, Path: path})
	} else {
		sess, answer, err = h.cfg.Engine.Play(ctx, media.PlayRequest{Name: name, MediaSessionID: id, SDP: offer, Path: path})
	}
	if err == nil && sess == nil {
		err = errors.New("whip: engine returned no media session")
	}
	if err != nil {
		if release != nil {
			release()
		}
		h.wg.Done()
		return nil, "", err
	}
	res := &resource{id: id, name: name, kind: kind, location: prefix + name + "/" + id, etag: `"` + randomHex(8) + `"`,
		sess: sess, release: release, relay: relay, remote: remote, created: time.Now()}
	h.mu.Lock()
	if h.closing { // Close ran meanwhile: it did not see this session
		h.mu.Unlock()
		sess.Close(ErrClosing)
		if release != nil {
			release()
		}
		h.wg.Done()
		return nil, "", ErrClosing
	}
	h.resources[id] = res
	h.mu.Unlock()
	h.created.Add(1)
	h.log.Info("session created", "kind", kind, "stream", name, "resource", res.location, "path", path)
	go h.watch(res)
	return res, answer, nil
}

// watch removes the resource when its media session ended.
func (h *Handler) watch(res *resource) {
	defer h.wg.Done()
	<-res.sess.Done()
	h.mu.Lock()
	if h.resources[res.id] == res {
		delete(h.resources, res.id)
	}
	h.mu.Unlock()
	if res.release != nil {
		res.release()
	}
	h.log.Info("session ended", "kind", res.kind, "stream", res.name, "resource", res.location, "cause", res.sess.Err())
}

// lookup finds the resource of a DELETE or PATCH request (its name must match too).
func (h *Handler) lookup(r *http.Request) (*resource, error) {
	kind := "publish"
	if strings.HasPrefix(r.URL.Path, "/whep/") {
		kind = "play"
	}
	h.mu.Lock()
	res := h.resources[r.PathValue("id")]
	h.mu.Unlock()
	if res == nil || res.name != r.PathValue("name") || res.kind != kind {
		return nil, fmt.Errorf("%w: %s", ErrNoResource, r.URL.Path)
	}
	return res, nil
}

// authorizeResource finds the request's session resource after the bearer token check, which does not apply to
// the resources of authenticated relays (their unguessable URL is the capability).
func (h *Handler) authorizeResource(w http.ResponseWriter, r *http.Request) (*resource, error) {
	res, err := h.lookup(r)
	if err == nil && res.relay {
		return res, nil
	}
	if aerr := h.authenticate(w, r); aerr != nil {
		return nil, aerr
	}
	return res, err
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	res, err := h.authorizeResource(w, r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.Terminate(res.id, errDeleted) // gone for every later request at once; the watcher finishes the rest
	h.log.Info("session deleted", "kind", res.kind, "stream", res.name, "resource", res.location)
	w.WriteHeader(http.StatusOK)
}

// patch implements the PATCH policy of an ICE-lite server with all its candidates in the answer: trickled
// candidates are accepted and ignored (204), an ICE restart gets 422, a stale If-Match 412.
func (h *Handler) patch(w http.ResponseWriter, r *http.Request) {
	res, err := h.authorizeResource(w, r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := contentType(r, "application/trickle-ice-sdpfrag"); err != nil {
		h.fail(w, r, err)
		return
	}
	frag, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		h.fail(w, r, fmt.Errorf("read sdpfrag: %w", err))
		return
	}
	im := strings.TrimSpace(r.Header.Get("If-Match"))
	if im == "*" || fragHasCredentials(string(frag)) {
		h.fail(w, r, ErrICERestart)
		return
	}
	if im != "" && !etagMatches(im, res.etag) {
		h.fail(w, r, fmt.Errorf("%w: %s, the session's is %s", ErrPrecondition, im, res.etag))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fragHasCredentials reports whether an SDP fragment carries ice-ufrag/ice-pwd: RFC 9725 makes that an ICE
// restart.
func fragHasCredentials(frag string) bool {
	for l := range strings.Lines(frag) {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "a=ice-ufrag:") || strings.HasPrefix(l, "a=ice-pwd:") {
			return true
		}
	}
	return false
}

func etagMatches(ifMatch, etag string) bool {
	for t := range strings.SplitSeq(ifMatch, ",") {
		if t = strings.TrimPrefix(strings.TrimSpace(t), "W/"); t == etag {
			return true
		}
	}
	return false
}

// authenticate checks the bearer token when one is configured.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) error {
	if h.cfg.Token == "" {
		return nil
	}
	got, ok := bearer(r)
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.cfg.Token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rtcrelay"`)
		return ErrUnauthorized
	}
	return nil
}

func bearer(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	if len(a) < 7 || !strings.EqualFold(a[:7], "Bearer ") {
		return "", false
	}
	return strings.TrimSpace(a[7:]), true
}

func contentType(r *http.Request, want string) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !strings.EqualFold(mt, want) {
		return fmt.Errorf("%w: %q, want %s", ErrContentType, ct, want)
	}
	return nil
}

// parsePath reads the relay path header: server IDs separated by commas.
func parsePath(v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var path []string
	for id := range strings.SplitSeq(v, ",") {
		if id = strings.TrimSpace(id); id != "" {
			path = append(path, id)
		}
	}
	if len(path) > maxPathLen {
		return nil, fmt.Errorf("%w: %s holds %d server IDs, at most %d", ErrBadRequest, PathHeader, len(path), maxPathLen)
	}
	return path, nil
}

// FormatPath is the PathHeader value of a relay path.
func FormatPath(path []string) string { return strings.Join(path, ",") }

// statusOf is the one mapping from errors to HTTP status codes.
func statusOf(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrContentType):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, ErrBadRequest), errors.Is(err, sdp.ErrInvalid), errors.Is(err, sdp.ErrTooLarge),
		errors.Is(err, media.ErrNoCommonCodecs), errors.Is(err, media.ErrBadName):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, limits.ErrLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, media.ErrRestricted), errors.Is(err, relayauth.ErrAuth):
		return http.StatusForbidden
	case errors.Is(err, ErrNoResource), errors.Is(err, media.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, media.ErrNameInUse):
		return http.StatusConflict
	case errors.Is(err, ErrPrecondition):
		return http.StatusPreconditionFailed
	case errors.Is(err, ErrICERestart):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrClosing), errors.Is(err, media.ErrClosed), errors.Is(err, media.ErrCapacity):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// reason is the plain-text body of an error response: the words a client can show.
func reason(err error, code int) string {
	switch {
	case code == http.StatusNotFound && errors.Is(err, media.ErrNotFound):
		return "Stream not found"
	case code == http.StatusConflict:
		return "Stream name is already in use"
	}
	if ae, ok := errors.AsType[*relayauth.Error](err); ok {
		return ae.Reason()
	}
	return err.Error()
}

// fail writes an error response (plain text) and counts and logs it.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	h.refused.Add(1)
	lvl := slog.LevelInfo
	if code >= 500 && code != http.StatusServiceUnavailable {
		lvl = slog.LevelWarn
	}
	h.log.Log(r.Context(), lvl, "request refused", "method", r.Method, "path", r.URL.Path, "status", code,
		"remote", r.RemoteAddr, "err", err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, reason(err, code)+"\n")
}

// Stats reads the counters.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	st := Stats{Created: h.created.Load(), Refused: h.refused.Load(), RelaysAuthenticated: h.relaysAuthed.Load(),
		RelayAuthFailures: h.relayFailures.Load()}
	for _, res := range h.resources {
		if res.kind == "publish" {
			st.Publishers++
		} else {
			st.Players++
		}
	}
	h.mu.Unlock()
	return st
}

// Close refuses new sessions (503), ends every live one and waits for their goroutines, or until ctx ends.
func (h *Handler) Close(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	live := make([]*resource, 0, len(h.resources))
	for _, res := range h.resources {
		live = append(live, res)
	}
	h.mu.Unlock()
	for _, res := range live {
		res.sess.Close(fmt.Errorf("%w: %w", media.ErrClosed, ErrClosing))
	}
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("whip: close: %w", context.Cause(ctx))
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
