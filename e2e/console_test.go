package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/relay"
)

// Issue 10, parts 5 and 6 end to end: the console page of a server with a REST token, driven in headless Chromium,
// shows a stream the official SDK publishes there with a moving bitrate plot, starts a push to a second server
// from its form and terminates it with the row's button; the REST metrics and the Prometheus text of the same
// real binary carry the stream.

const consoleToken = "console-secret"

// authCall is restCall with the bearer token.
func authCall(t testing.TB, base, path string, body any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+consoleToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, rb
}

func authAgents(t testing.TB, srv *Server) []relay.AgentInfo {
	t.Helper()
	code, body := authCall(t, srv.HTTP, "/rest-api/pull/find_all", map[string]any{})
	if code != 200 {
		t.Fatalf("find_all: %d %s", code, body)
	}
	var out []relay.AgentInfo
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// until polls cond every 200 ms for up to d.
func until(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type consoleSeries struct {
	Samples []struct {
		T    float64 `json:"t"`
		Rate float64 `json:"rate"`
		Loss float64 `json:"loss"`
	} `json:"samples"`
	Players int    `json:"players"`
	Status  string `json:"status"`
}

type consoleView struct {
	Polls   int                      `json:"polls"`
	Errors  int                      `json:"errors"`
	Streams map[string]consoleSeries `json:"streams"`
	Relays  map[string]consoleSeries `json:"relays"`
	Poll    string                   `json:"poll"`
	Canvas  string                   `json:"canvas"` // the stream's plot as a data URL
	Form    string                   `json:"form"`
	Row     string                   `json:"row"`
}

func TestConsoleRelay(t *testing.T) {
	requireBrowser(t)
	a := relayServer(t, "A", "--rest-token", consoleToken)
	b := relayServer(t, "B")
	br := startRelayBrowser(t)
	br.open("pubA", a)
	br.publish("pubA", "pub", "cam")

	view := func() consoleView {
		t.Helper()
		r := br.do(map[string]any{"do": "eval", "page": "console", "expr": `(() => {
			const s = window.consoleState || {};
			const c = document.querySelector('#streams tr[data-key="cam"] canvas');
			const row = document.querySelector('#streams tr[data-key="cam"]');
			return { polls: s.polls || 0, errors: s.errors || 0, streams: s.streams || {}, relays: s.relays || {},
				poll: document.getElementById('pollStatus').textContent, form: document.getElementById('formStatus').textContent,
				canvas: c ? c.toDataURL() : '', row: row ? row.textContent : '' };
		})()`})
		var v consoleView
		if err := json.Unmarshal(r, &v); err != nil {
			t.Fatalf("console state: %v (%s)", err, r)
		}
		return v
	}

	br.do(map[string]any{"do": "goto", "page": "console", "url": a.HTTP + "/console.html"})
	// Without the token every poll is refused, and the page says so.
	until(t, 10*time.Second, "the console reports 401", func() bool {
		v := view()
		return v.Errors > 0 && strings.Contains(v.Poll, "unauthorized")
	})
	br.do(map[string]any{"do": "fill", "page": "console", "selector": "#token", "value": consoleToken})
	br.do(map[string]any{"do": "click", "page": "console", "selector": "#saveToken"})
	if tok := string(br.do(map[string]any{"do": "eval", "page": "console", "expr": `sessionStorage.getItem('rtcrelay-rest-token')`})); tok != `"`+consoleToken+`"` {
		t.Fatalf("token in sessionStorage: %s", tok)
	}

	// The stream appears with a bitrate, and its plot moves between two looks 3 s apart.
	var v1 consoleView
	until(t, 20*time.Second, "stream cam in the console with 3 samples of video", func() bool {
		v1 = view()
		s, ok := v1.Streams["cam"]
		return ok && len(s.Samples) >= 3 && s.Samples[len(s.Samples)-1].Rate > 0
	})
	time.Sleep(3 * time.Second)
	v2 := view()
	s1, s2 := v1.Streams["cam"], v2.Streams["cam"]
	if len(s2.Samples) < len(s1.Samples)+2 || s2.Samples[len(s2.Samples)-1].T <= s1.Samples[len(s1.Samples)-1].T {
		t.Errorf("the series did not advance: %d samples then %d", len(s1.Samples), len(s2.Samples))
	}
	if v1.Canvas == "" || v1.Canvas == v2.Canvas {
		t.Errorf("the plot did not change in 3 s (canvas %d bytes)", len(v1.Canvas))
	}
	last := s2.Samples[len(s2.Samples)-1]
	t.Logf("console: %d polls, cam at %.0f kbit/s, row %q", v2.Polls, last.Rate/1000, v2.Row)
	if last.Rate < 20e3 {
		t.Errorf("cam bitrate %.0f bit/s: too low for the fake camera's video", last.Rate)
	}
	shot := filepath.Join(t.ArtifactDir(), "console.png")
	br.do(map[string]any{"do": "screenshot", "page": "console", "path": shot})
	if st, err := os.Stat(shot); err != nil || st.Size() < 1000 {
		t.Errorf("screenshot %s: %v", shot, err)
	}
	t.Logf("console screenshot: %s", shot)

	// The same binary's metrics: WCS's map and the Prometheus text.
	code, body := authCall(t, a.HTTP, "/rest-api/stream/find", map[string]any{"name": "cam", "published": true, "display": []string{"metrics"}})
	var found []struct {
		Metrics map[string]any `json:"metrics"`
	}
	if code != 200 || json.Unmarshal(body, &found) != nil || len(found) != 1 {
		t.Fatalf("stream/find display metrics: %d %s", code, body)
	}
	m := found[0].Metrics
	for _, k := range []string{"VIDEO_RATE", "VIDEO_FPS", "AUDIO_RATE", "VIDEO_CODEC", "AUDIO_CODEC", "VIDEO_NACK", "VIDEO_PLI", "VIDEO_LOST", "AUDIO_LOST"} {
		if _, ok := m[k]; !ok {
			t.Errorf("metrics lack %s: %v", k, m)
		}
	}
	if r, _ := m["VIDEO_RATE"].(float64); r <= 0 {
		t.Errorf("VIDEO_RATE %v", m["VIDEO_RATE"])
	}
	if f, _ := m["VIDEO_FPS"].(float64); f <= 0 {
		t.Errorf("VIDEO_FPS %v", m["VIDEO_FPS"])
	}
	t.Logf("metrics of cam: %v", m)
	resp, err := http.Get(a.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	prom, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") ||
		!strings.Contains(string(prom), `rtcrelay_stream_bitrate_bits_per_second{stream="cam",kind="video"}`) {
		t.Errorf("GET /metrics: %s\n%s", ct, truncate(string(prom), 2000))
	}

	// A push to B from the form.
	for sel, val := range map[string]string{"#direction": "push", "#uri": b.WS, "#localStreamName": "cam", "#remoteStreamName": "camB"} {
		br.do(map[string]any{"do": "fill", "page": "console", "selector": sel, "value": val})
	}
	br.do(map[string]any{"do": "click", "page": "console", "selector": "#start"})
	var ag relay.AgentInfo
	until(t, relayUp, "A's push of cam to B is PROCESSED_REMOTE", func() bool {
		for _, x := range authAgents(t, a) {
			if x.LocalStreamName == "cam" && x.RemoteStreamName == "camB" && x.Direction == relay.DirectionPush && x.Status == relay.StatusProcessedRemote {
				ag = x
				return true
			}
		}
		return false
	})
	until(t, 10*time.Second, "camB published on B", func() bool { return contains(streamNames(t, b), "camB") })
	until(t, 10*time.Second, "the relay row in the console, established and plotted", func() bool {
		r, ok := view().Relays[ag.LocalMediaSessionID]
		return ok && r.Status == relay.StatusProcessedRemote && len(r.Samples) >= 2 && r.Samples[len(r.Samples)-1].Rate > 0
	})
	t.Logf("console form: %q", view().Form)
	br.do(map[string]any{"do": "screenshot", "page": "console", "path": filepath.Join(t.ArtifactDir(), "console-relay.png")})

	// Terminate from the row's button.
	br.do(map[string]any{"do": "click", "page": "console", "selector": `#relays tr[data-key="` + ag.LocalMediaSessionID + `"] button.terminate`})
	until(t, 10*time.Second, "the push gone from A's /pull/find_all", func() bool {
		for _, x := range authAgents(t, a) {
			if x.LocalMediaSessionID == ag.LocalMediaSessionID {
				return false
			}
		}
		return true
	})
	until(t, 10*time.Second, "camB gone from B", func() bool { return !contains(streamNames(t, b), "camB") })
	until(t, 5*time.Second, "the relay row gone from the console", func() bool {
		_, ok := view().Relays[ag.LocalMediaSessionID]
		return !ok
	})
}
