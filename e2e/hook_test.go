package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookBackend is the application backend of the REST hooks test: it allows the stream name "allowed" and
// denies "denied" (publishStream/playStream), denies a connect whose custom token is "bad", and records the
// events it gets.
type hookBackend struct {
	mu     sync.Mutex
	events []string
	calls  []string
}

func (hb *hookBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var m struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Custom struct {
			Token string `json:"token"`
		} `json:"custom"`
	}
	_ = json.Unmarshal(b, &m)
	method := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	hb.mu.Lock()
	hb.calls = append(hb.calls, method+":"+m.Name)
	if strings.HasSuffix(method, "Event") {
		hb.events = append(hb.events, method+":"+m.Status)
	}
	hb.mu.Unlock()
	switch {
	case method == "connect" && m.Custom.Token == "bad":
		w.WriteHeader(http.StatusForbidden)
	case (method == "publishStream" || method == "playStream") && m.Name != "allowed":
		w.WriteHeader(http.StatusForbidden)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}
}

func (hb *hookBackend) saw(list *[]string, s string) bool {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	for _, x := range *list {
		if x == s {
			return true
		}
	}
	return false
}

// TestHookBrowser: the real server with an apps file pointing at a backend in the test; the official Web SDK in
// Chromium publishes a denied name (FAILED "Restricted access"), an allowed one (PUBLISHING), plays it on a second
// page (frames decoded), and connects with an unknown appKey and with a token the backend refuses (session FAILED).
func TestHookBrowser(t *testing.T) {
	requireBrowser(t)
	hb := &hookBackend{}
	backend := httptest.NewServer(hb)
	defer backend.Close()
	apps := filepath.Join(t.TempDir(), "apps.json")
	doc := `{"apps":[{"name":"test","appKey":"defaultApp","url":"` + backend.URL + `/rtcrelay",
		"methods":["connect","publishStream","playStream","StreamStatusEvent","ConnectionStatusEvent"],"timeout":"3s"}]}`
	if err := os.WriteFile(apps, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, ServerOpts{Name: "hooks", ExtraArgs: []string{"--apps", apps}})
	b := startRelayBrowser(t)

	b.open("A", srv)
	if v := b.view(map[string]any{"do": "publish", "page": "A", "handle": "d", "name": "denied"}); v.Status != "FAILED" || v.Info != "Restricted access" {
		t.Fatalf("denied publish: %s %q", v.Status, v.Info)
	}
	t0 := time.Now()
	b.publish("A", "pub", "allowed")
	publishTime := time.Since(t0)
	b.open("B", srv)
	b.mustPlay("B", "p1", "allowed")
	s := b.sample(PageRef{Page: "B", Handle: "p1"}, PageRef{Page: "A", Handle: "pub"}, 2)
	if s.FirstFrameMs < 0 || s.FramesDecoded[1] <= 0 {
		t.Fatalf("no frames decoded by the player of the allowed stream: %+v", s)
	}
	if v := b.play("B", "p2", "denied"); v.Status != "FAILED" || v.Info != "Restricted access" {
		t.Fatalf("denied play: %s %q", v.Status, v.Info)
	}

	var r struct {
		Status  string   `json:"status"`
		History []string `json:"history"`
	}
	for _, tc := range []struct{ page, appKey, token string }{{"C", "noSuchApp", ""}, {"D", "", "bad"}} {
		cmd := map[string]any{"do": "open", "page": tc.page, "ws": srv.WS, "expectFail": true, "timeoutMs": 8000}
		if tc.appKey != "" {
			cmd["appKey"] = tc.appKey
		}
		if tc.token != "" {
			cmd["custom"] = map[string]string{"token": tc.token}
		}
		if err := json.Unmarshal(b.do(cmd), &r); err != nil {
			t.Fatal(err)
		}
		if r.Status != "FAILED" {
			t.Fatalf("connect appKey %q token %q: session %s %v, want FAILED", tc.appKey, tc.token, r.Status, r.History)
		}
	}
	if !hb.saw(&hb.calls, "publishStream:denied") || !hb.saw(&hb.calls, "playStream:allowed") {
		t.Errorf("backend calls %v", hb.calls)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !hb.saw(&hb.events, "StreamStatusEvent:PUBLISHING") || !hb.saw(&hb.events, "ConnectionStatusEvent:ESTABLISHED") {
		if time.Now().After(deadline) {
			t.Fatalf("events %v", hb.events)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, body := restCall(t, srv.HTTP, "/metrics?format=json", nil)
	var m struct {
		Hooks map[string]struct {
			Allowed, Denied, Errors uint64
			MeanMs                  float64 `json:"meanMs"`
		} `json:"hooks"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	pub := m.Hooks["publishStream"]
	if pub.Allowed != 1 || pub.Denied != 1 || m.Hooks["connect"].Denied != 1 {
		t.Errorf("hook metrics %s", body)
	}
	t.Logf("publish→PUBLISHING %v; hook latency (mean): connect %.2f ms, publishStream %.2f ms, playStream %.2f ms",
		publishTime, m.Hooks["connect"].MeanMs, pub.MeanMs, m.Hooks["playStream"].MeanMs)
}

// TestHookWHIP: WHIP and WHEP go through the same REST hooks: the backend allows "allowed" and denies
// "denied" (403 with the reason).
func TestHookWHIP(t *testing.T) {
	hb := &hookBackend{}
	backend := httptest.NewServer(hb)
	defer backend.Close()
	apps := filepath.Join(t.TempDir(), "apps.json")
	doc := `{"apps":[{"name":"test","appKey":"defaultApp","url":"` + backend.URL + `/rtcrelay","methods":["publishStream","playStream"]}]}`
	if err := os.WriteFile(apps, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, ServerOpts{Name: "hooks-whip", ExtraArgs: []string{"--apps", apps}})
	post := func(path, offer string) int {
		req, err := http.NewRequest(http.MethodPost, srv.HTTP+path, strings.NewReader(offer))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/sdp")
		req.Header.Set("Authorization", "Bearer app-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden && !strings.Contains(string(b), "denied by the backend") {
			t.Errorf("POST %s: 403 %q, want the reason", path, b)
		}
		return resp.StatusCode
	}
	if code := post("/whip/denied", validOffer(t)); code != http.StatusForbidden {
		t.Fatalf("WHIP publish of a denied name: %d, want 403", code)
	}
	if code := post("/whip/allowed", validOffer(t)); code != http.StatusCreated {
		t.Fatalf("WHIP publish of an allowed name: %d, want 201", code)
	}
	if code := post("/whep/denied", validOffer(t)); code != http.StatusForbidden {
		t.Fatalf("WHEP play of a denied name: %d, want 403", code)
	}
	if !hb.saw(&hb.calls, "publishStream:denied") || !hb.saw(&hb.calls, "publishStream:allowed") || !hb.saw(&hb.calls, "playStream:denied") {
		t.Fatalf("backend calls %v", hb.calls)
	}
}
