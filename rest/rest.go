// Package rest serves the WCS-compatible REST API under /rest-api/ (wcs-protocol.md §7): relay agents
// (/pull/...), streams (/stream/...) and WebSocket connections (/connection/...).
//
// Conventions (the same for every method):
//   - POST with a JSON object body, or GET (any body is read the same way; an empty body is {}). Unknown
//     fields are accepted, because WCS clients send extras. Malformed JSON or a wrongly typed field → 400.
//   - CORS: every response carries Access-Control-Allow-Origin: *; OPTIONS answers preflights with 200.
//   - Success is 200: action methods (push, pull, terminate) with an empty body, find methods with a JSON array.
//   - find_all always answers 200 with an array, [] when there is nothing (a listing of an empty set is not an
//     error, and the SDK's REST helper treats anything but 200 as a failure); find and terminate with
//     filters answer 404 when nothing matches, as WCS documents ("Stream not found").
//   - Errors carry {"error": "<reason>", "status": N}; statusOf is the one place mapping errors to codes.
//   - With Config.Token set, every request except OPTIONS needs "Authorization: Bearer <token>" (else 401).
package rest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/rtcrelay/rtcrelay/directory"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/rtcrelay/rtcrelay/relay"
	"github.com/rtcrelay/rtcrelay/signaling"
)

// DefaultMaxBody is the request body limit when Config.MaxBody is 0.
const DefaultMaxBody = 64 << 10

// InfoTerminate is the info of streams ended by /stream/terminate.
const InfoTerminate = "Stopped by rest /terminate"

// RelaysAPI is the relay agent manager (*relay.Manager implements it).
type RelaysAPI interface {
	Push(ctx context.Context, spec relay.Spec) (relay.AgentInfo, error)
	Pull(ctx context.Context, spec relay.Spec) (relay.AgentInfo, error)
	Find(f relay.Filter) []relay.AgentInfo
	Terminate(f relay.Filter) (int, error)
}

// DirectoryAPI lists the cluster's stream directory (a directory.Directory implements it).
type DirectoryAPI interface {
	List(ctx context.Context) ([]directory.Entry, error)
}

// StreamsAPI lists and ends streams (*signaling.Server implements it).
type StreamsAPI interface {
	Streams(f *signaling.StreamFilter) []signaling.StreamInfo
	TerminateStream(f signaling.StreamFilter, info string) int
}

// ConnectionsAPI lists and closes WebSocket sessions (*signaling.Server implements it).
type ConnectionsAPI interface {
	Connections() []signaling.ConnectionInfo
	Terminate(sessionID string) bool
}

// MetricsAPI gives the WCS metrics map of a published stream (display:["metrics"], /stream/metrics): keys such
// as VIDEO_RATE, VIDEO_FPS, AUDIO_RATE with numeric values. ok is false when the stream is not published here.
type MetricsAPI interface {
	StreamMetrics(name string) (m map[string]any, ok bool)
	// PlayerMetrics is the metrics map of the player mediaSessionID of the stream name.
	PlayerMetrics(name, mediaSessionID string) (m map[string]any, ok bool)
}

// Config configures the handler. A nil API makes its methods answer 500 "not available".
type Config struct {
	Relays      RelaysAPI
	Streams     StreamsAPI
	Connections ConnectionsAPI
	Directory   DirectoryAPI // the cluster's stream directory (nil: /directory/* answer 404)
	Metrics     MetricsAPI   // stream metrics (nil: display:["metrics"] adds nothing)
	Token       string       // bearer token; empty = no authentication
	MaxBody     int64        // request body limit in bytes (default DefaultMaxBody)
	Logger      *slog.Logger
}

// Errors the handler maps to status codes (besides the relay sentinels).
var (
	ErrBadBody      = errors.New("bad request body")
	ErrUnauthorized = errors.New("missing or wrong bearer token")
	ErrNotFound     = errors.New("not found")
	ErrUnavailable  = errors.New("not available on this server")
	ErrMethod       = errors.New("method not allowed (use GET or POST)")
)

type handler struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// NewHandler returns the /rest-api/ handler.
func NewHandler(cfg Config) http.Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	routes := map[string]func(*http.Request) (any, error){
		"/pull/push":            h.pullPush,
		"/pull/pull":            h.pullPull,
		"/pull/find":            h.pullFind,
		"/pull/find_all":        h.pullFindAll,
		"/pull/terminate":       h.pullTerminate,
		"/stream/find":          h.streamFind,
		"/stream/find_all":      h.streamFindAll,
		"/stream/terminate":     h.streamTerminate,
		"/stream/metrics":       h.streamMetrics,
		"/connection/find":      h.connFind,
		"/connection/find_all":  h.connFindAll,
		"/connection/terminate": h.connTerminate,
		"/directory/find_all":   h.directoryFindAll,
	}
	for path, fn := range routes {
		hf := h.wrap(fn)
		h.mux.HandleFunc("POST /rest-api"+path, hf)
		h.mux.HandleFunc("GET /rest-api"+path, hf)
	}
	h.mux.HandleFunc("OPTIONS /rest-api/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusOK)
	})
	h.mux.HandleFunc("/rest-api/", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := routes[strings.TrimPrefix(r.URL.Path, "/rest-api")]; ok {
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			h.fail(w, r, fmt.Errorf("%w: %s", ErrMethod, r.Method))
			return
		}
		h.fail(w, r, fmt.Errorf("%w: no REST method %s", ErrNotFound, r.URL.Path))
	})
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", "*")
	hd.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
	hd.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	h.mux.ServeHTTP(w, r)
}

// wrap authenticates, runs fn and writes its result: nil → 200 empty, else a JSON array/object.
func (h *handler) wrap(fn func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rtcrelay"`)
			h.fail(w, r, ErrUnauthorized)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBody)
		res, err := fn(r)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if res == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		b, err := json.Marshal(res)
		if err != nil {
			h.fail(w, r, fmt.Errorf("encode response: %w", err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}
}

func (h *handler) authorized(r *http.Request) bool {
	if h.cfg.Token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(h.cfg.Token)) == 1
}

// statusOf is the one mapping from errors to HTTP status codes.
func statusOf(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBadBody), errors.Is(err, relay.ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrNotFound), errors.Is(err, relay.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, relay.ErrConflict), errors.Is(err, relay.ErrLoop):
		return http.StatusConflict
	case errors.Is(err, ErrMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, directory.ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

type errorBody struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	if code >= 500 {
		h.log.Error("rest", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	} else {
		h.log.Debug("rest", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	b, _ := json.Marshal(errorBody{Error: err.Error(), Status: code}) // strings and ints always marshal
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// decodeBody reads a JSON object body into v. An empty (or all-space) body leaves v as is. Unknown fields
// are accepted; anything but one JSON object is ErrBadBody; a body over the limit is *http.MaxBytesError.
func decodeBody(r io.Reader, v any) error {
	b, err := io.ReadAll(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrBadBody, err)
	}
	return decodeJSON(b, v)
}

// decodeJSON is decodeBody on bytes (the fuzz target).
func decodeJSON(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil
	}
	if b[0] != '{' {
		return fmt.Errorf("%w: the body must be a JSON object", ErrBadBody)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadBody, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the JSON object", ErrBadBody)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the JSON object", ErrBadBody)
	}
	return nil
}

var (
	_ RelaysAPI      = (*relay.Manager)(nil)
	_ StreamsAPI     = (*signaling.Server)(nil)
	_ ConnectionsAPI = (*signaling.Server)(nil)
)

// directoryFindAll lists every stream the cluster's directory knows (which server publishes it, where).
func (h *handler) directoryFindAll(r *http.Request) (any, error) {
	if h.cfg.Directory == nil {
		return nil, fmt.Errorf("the directory is %w", ErrUnavailable)
	}
	entries, err := h.cfg.Directory.List(r.Context())
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	if entries == nil {
		entries = []directory.Entry{}
	}
	return entries, nil
}
