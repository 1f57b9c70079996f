package rest

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/rtcrelay/rtcrelay/signaling"
)

type fakeMetrics map[string]map[string]any

func (f fakeMetrics) StreamMetrics(name string) (map[string]any, bool) {
	m, ok := f[name]
	return m, ok
}

// PlayerMetrics: players are keyed "name/mediaSessionId".
func (f fakeMetrics) PlayerMetrics(name, id string) (map[string]any, bool) {
	m, ok := f[name+"/"+id]
	return m, ok
}

func TestMetricsDisplay(t *testing.T) {
	sg := &fakeSignaling{streams: []signaling.StreamInfo{
		{MediaSessionID: "m1", Name: "s", Published: true, Status: "PUBLISHING", MediaType: "publish"},
		{MediaSessionID: "m2", Name: "s", Published: false, Status: "PLAYING", MediaType: "play"},
		{MediaSessionID: "m3", Name: "gone", Published: true, Status: "PUBLISHING", MediaType: "publish"},
	}}
	fm := fakeMetrics{"s": {"VIDEO_RATE": 1187440, "VIDEO_FPS": 24.5, "AUDIO_RATE": 32000, "VIDEO_CODEC": 102}}
	srv := httptest.NewServer(NewHandler(Config{Streams: sg, Metrics: fm, Token: "tok"}))
	t.Cleanup(srv.Close)

	type stream struct {
		MediaSessionID string             `json:"mediaSessionId"`
		Name           string             `json:"name"`
		Published      bool               `json:"published"`
		Metrics        map[string]float64 `json:"metrics"`
	}
	decode := func(t *testing.T, r result) []stream {
		t.Helper()
		if r.code != 200 {
			t.Fatalf("status %d: %s", r.code, r.body)
		}
		var out []stream
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			t.Fatalf("%v: %s", err, r.body)
		}
		return out
	}

	t.Run("find with display metrics", func(t *testing.T) {
		out := decode(t, do(t, srv, "POST", "/rest-api/stream/find", `{"name":"s","published":true,"display":["metrics"]}`, "tok"))
		if len(out) != 1 || out[0].MediaSessionID != "m1" {
			t.Fatalf("got %+v", out)
		}
		m := out[0].Metrics
		if m["VIDEO_RATE"] != 1187440 || m["VIDEO_FPS"] != 24.5 || m["AUDIO_RATE"] != 32000 || m["VIDEO_CODEC"] != 102 {
			t.Fatalf("metrics %v", m)
		}
	})
	t.Run("find without display has no metrics key", func(t *testing.T) {
		r := do(t, srv, "POST", "/rest-api/stream/find", `{"name":"s"}`, "tok")
		var raw []map[string]any
		if err := json.Unmarshal([]byte(r.body), &raw); err != nil || len(raw) != 2 {
			t.Fatalf("%v %s", err, r.body)
		}
		for _, s := range raw {
			if _, ok := s["metrics"]; ok {
				t.Fatalf("metrics without display: %s", r.body)
			}
		}
	})
	t.Run("stream/metrics lists all, players and unknown streams without a map", func(t *testing.T) {
		out := decode(t, do(t, srv, "POST", "/rest-api/stream/metrics", "", "tok"))
		if len(out) != 3 {
			t.Fatalf("got %+v", out)
		}
		for _, s := range out {
			if want := s.MediaSessionID == "m1"; (s.Metrics != nil) != want {
				t.Errorf("%s: metrics %v", s.MediaSessionID, s.Metrics)
			}
		}
	})
	t.Run("stream/metrics with a filter that matches nothing is []", func(t *testing.T) {
		r := do(t, srv, "GET", "/rest-api/stream/metrics", `{"name":"nope"}`, "tok")
		if r.code != 200 || r.body != "[]" {
			t.Fatalf("%d %q", r.code, r.body)
		}
	})
	t.Run("stream/metrics needs the token", func(t *testing.T) {
		if r := do(t, srv, "POST", "/rest-api/stream/metrics", "", ""); r.code != 401 {
			t.Fatalf("status %d", r.code)
		}
	})
}
