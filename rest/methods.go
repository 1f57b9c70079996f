package rest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"

	"github.com/rtcrelay/rtcrelay/relay"
	"github.com/rtcrelay/rtcrelay/signaling"
)

// ---- /pull/ ----

func (h *handler) relays() (RelaysAPI, error) {
	if h.cfg.Relays == nil {
		return nil, fmt.Errorf("relaying is %w", ErrUnavailable)
	}
	return h.cfg.Relays, nil
}

func (h *handler) pullPush(r *http.Request) (any, error) { return h.pullCreate(r, relay.DirectionPush) }
func (h *handler) pullPull(r *http.Request) (any, error) { return h.pullCreate(r, relay.DirectionPull) }

func (h *handler) pullCreate(r *http.Request, dir relay.Direction) (any, error) {
	rl, err := h.relays()
	if err != nil {
		return nil, err
	}
	var spec relay.Spec
	if err := decodeBody(r.Body, &spec); err != nil {
		return nil, err
	}
	var ai relay.AgentInfo
	if dir == relay.DirectionPush {
		ai, err = rl.Push(r.Context(), spec)
	} else {
		ai, err = rl.Pull(r.Context(), spec)
	}
	if err != nil {
		return nil, err
	}
	h.log.Info("rest relay created", "direction", dir, "agent", ai.LocalMediaSessionID, "uri", spec.URI)
	return nil, nil
}

func (h *handler) pullFilter(r *http.Request) (RelaysAPI, relay.Filter, error) {
	var f relay.Filter
	rl, err := h.relays()
	if err != nil {
		return nil, f, err
	}
	err = decodeBody(r.Body, &f)
	return rl, f, err
}

func (h *handler) pullFind(r *http.Request) (any, error) {
	rl, f, err := h.pullFilter(r)
	if err != nil {
		return nil, err
	}
	out := rl.Find(f)
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no relay agent matches", ErrNotFound)
	}
	return out, nil
}

func (h *handler) pullFindAll(r *http.Request) (any, error) {
	rl, err := h.relays()
	if err != nil {
		return nil, err
	}
	out := rl.Find(relay.Filter{})
	if out == nil {
		out = []relay.AgentInfo{}
	}
	return out, nil
}

func (h *handler) pullTerminate(r *http.Request) (any, error) {
	rl, f, err := h.pullFilter(r)
	if err != nil {
		return nil, err
	}
	if _, err := rl.Terminate(f); err != nil {
		return nil, err
	}
	return nil, nil
}

// ---- /stream/ ----

// streamFilter is the JSON body of /stream/find and /stream/terminate.
type streamFilter struct {
	MediaSessionID  string   `json:"mediaSessionId"`
	MediaSessionIDs []string `json:"mediaSessionIds"`
	Name            string   `json:"name"`
	Published       *bool    `json:"published"`
	Status          string   `json:"status"`
	SessionID       string   `json:"sessionId"`
	Display         []string `json:"display"` // ["metrics"] adds each published stream's metrics map
}

// streamWithMetrics is a stream object with WCS's metrics map (display:["metrics"]).
type streamWithMetrics struct {
	signaling.StreamInfo
	Metrics map[string]any `json:"metrics,omitempty"`
}

func (h *handler) streamsFilter(r *http.Request) (StreamsAPI, signaling.StreamFilter, error) {
	st, f, _, err := h.streamsQuery(r)
	return st, f, err
}

// streamsQuery decodes a /stream/ body: the filter, and whether display asks for metrics.
func (h *handler) streamsQuery(r *http.Request) (StreamsAPI, signaling.StreamFilter, bool, error) {
	if h.cfg.Streams == nil {
		return nil, signaling.StreamFilter{}, false, fmt.Errorf("streams are %w", ErrUnavailable)
	}
	var sf streamFilter
	if err := decodeBody(r.Body, &sf); err != nil {
		return nil, signaling.StreamFilter{}, false, err
	}
	return h.cfg.Streams, signaling.StreamFilter{
		MediaSessionID: sf.MediaSessionID, MediaSessionIDs: sf.MediaSessionIDs, Name: sf.Name,
		Published: sf.Published, Status: sf.Status, SessionID: sf.SessionID,
	}, slices.Contains(sf.Display, "metrics"), nil
}

func (h *handler) streamFind(r *http.Request) (any, error) {
	st, f, metrics, err := h.streamsQuery(r)
	if err != nil {
		return nil, err
	}
	out := st.Streams(&f)
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: stream not found", ErrNotFound)
	}
	if metrics {
		return h.withMetrics(out), nil
	}
	return out, nil
}

// streamMetrics is /stream/find with display:["metrics"] implied (an empty filter lists every stream, [] when
// there is none, like find_all).
func (h *handler) streamMetrics(r *http.Request) (any, error) {
	st, f, _, err := h.streamsQuery(r)
	if err != nil {
		return nil, err
	}
	return h.withMetrics(st.Streams(&f)), nil
}

// withMetrics adds the metrics map to each published stream and to each player (its bandwidth estimate,
// simulcast layer, retransmissions).
func (h *handler) withMetrics(in []signaling.StreamInfo) []streamWithMetrics {
	out := make([]streamWithMetrics, 0, len(in))
	for _, si := range in {
		sm := streamWithMetrics{StreamInfo: si}
		if h.cfg.Metrics != nil && si.Published {
			if m, ok := h.cfg.Metrics.StreamMetrics(si.Name); ok {
				sm.Metrics = m
			}
		} else if h.cfg.Metrics != nil && si.MediaSessionID != "" {
			if m, ok := h.cfg.Metrics.PlayerMetrics(si.Name, si.MediaSessionID); ok {
				sm.Metrics = m
			}
		}
		out = append(out, sm)
	}
	return out
}

func (h *handler) streamFindAll(*http.Request) (any, error) {
	if h.cfg.Streams == nil {
		return nil, fmt.Errorf("streams are %w", ErrUnavailable)
	}
	out := h.cfg.Streams.Streams(nil)
	if out == nil {
		out = []signaling.StreamInfo{}
	}
	return out, nil
}

func (h *handler) streamTerminate(r *http.Request) (any, error) {
	st, f, err := h.streamsFilter(r)
	if err != nil {
		return nil, err
	}
	if st.TerminateStream(f, InfoTerminate) == 0 {
		return nil, fmt.Errorf("%w: stream not found", ErrNotFound)
	}
	return nil, nil
}

// ---- /connection/ ----

func (h *handler) connections() (ConnectionsAPI, error) {
	if h.cfg.Connections == nil {
		return nil, fmt.Errorf("connections are %w", ErrUnavailable)
	}
	return h.cfg.Connections, nil
}

func (h *handler) connFindAll(*http.Request) (any, error) {
	c, err := h.connections()
	if err != nil {
		return nil, err
	}
	out := c.Connections()
	if out == nil {
		out = []signaling.ConnectionInfo{}
	}
	return out, nil
}

// connFind filters connections by any of their JSON fields (values compared as JSON).
func (h *handler) connFind(r *http.Request) (any, error) {
	c, err := h.connections()
	if err != nil {
		return nil, err
	}
	var filter map[string]any
	if err := decodeBody(r.Body, &filter); err != nil {
		return nil, err
	}
	out := []signaling.ConnectionInfo{}
	for _, ci := range c.Connections() {
		if matchJSON(ci, filter) {
			out = append(out, ci)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: connection not found", ErrNotFound)
	}
	return out, nil
}

func (h *handler) connTerminate(r *http.Request) (any, error) {
	c, err := h.connections()
	if err != nil {
		return nil, err
	}
	var body struct {
		SessionID string `json:"sessionId"`
	}
	if err := decodeBody(r.Body, &body); err != nil {
		return nil, err
	}
	if body.SessionID == "" {
		return nil, fmt.Errorf("%w: sessionId is required", ErrBadBody)
	}
	if !c.Terminate(body.SessionID) {
		return nil, fmt.Errorf("%w: session %q", ErrNotFound, body.SessionID)
	}
	return nil, nil
}

// matchJSON reports whether every key of filter equals the record's JSON field of that name.
func matchJSON(record any, filter map[string]any) bool {
	if len(filter) == 0 {
		return true
	}
	b, err := json.Marshal(record)
	if err != nil {
		return false
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		return false
	}
	for k, want := range filter {
		if !reflect.DeepEqual(fields[k], want) {
			return false
		}
	}
	return true
}
