package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return resp, string(b)
}

func TestHandlerServesPages(t *testing.T) {
	srv := httptest.NewServer(Handler(Config{WSPort: 8080, WSSPort: 8443}))
	defer srv.Close()

	tests := []struct {
		path, contentType string
		contains          []string
	}{
		{"/", "text/html", []string{"two-way-streaming.html", "player.html"}},
		{"/two-way-streaming.html", "text/html", []string{"localVideo", "remoteVideo", "publishStatus", "playStatus", "installHooks"}},
		{"/player.html", "text/html", []string{"remoteVideo", "autoplay", "playStatus"}},
		{"/rtcrelay-client.js", "text/javascript", []string{"publishStream", "playStream", "setRemoteSDP", "notifyStreamStatusEvent", "unPublishStream", "stopStream", "pong", "getUserData"}},
		{"/page.js", "text/javascript", []string{"window.e2e"}},
		{"/style.css", "text/css", nil},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := get(t, srv, tc.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("Content-Type %q, want %s", ct, tc.contentType)
			}
			for _, s := range tc.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q", s)
				}
			}
		})
	}
}

func TestHandlerConfigJSON(t *testing.T) {
	for _, cfg := range []Config{{WSPort: 8080, WSSPort: 8443}, {WSPort: 41234}, {}} {
		srv := httptest.NewServer(Handler(cfg))
		resp, body := get(t, srv, "/rtcrelay-config.json")
		srv.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var got map[string]int
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("config %q: %v", body, err)
		}
		if got["wsPort"] != cfg.WSPort || got["wssPort"] != cfg.WSSPort || len(got) != 2 {
			t.Errorf("config %v, want wsPort %d wssPort %d", got, cfg.WSPort, cfg.WSSPort)
		}
	}
}

func TestHandlerRejectsAndMisses(t *testing.T) {
	srv := httptest.NewServer(Handler(Config{WSPort: 1}))
	defer srv.Close()
	if resp, _ := get(t, srv, "/nope.html"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing page: status %d, want 404", resp.StatusCode)
	}
	resp, err := srv.Client().Post(srv.URL+"/player.html", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", resp.StatusCode)
	}
}

func TestNoOfficialSDKEmbedded(t *testing.T) {
	entries, err := static.ReadDir("static")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(strings.ToLower(e.Name()), "flashphoner") {
			t.Errorf("embedded %s: the official SDK must never be committed", e.Name())
		}
	}
}

func TestConsolePage(t *testing.T) {
	srv := httptest.NewServer(Handler(Config{WSPort: 8080}))
	defer srv.Close()
	for path, want := range map[string][]string{
		"/":             {`href="console.html"`},
		"/console.html": {`id="token"`, `id="relayForm"`, `id="direction"`, `id="uri"`, `id="localStreamName"`, `id="remoteStreamName"`, `id="streams"`, `id="players"`, `id="relays"`, "console.js"},
		"/console.js":   {"sessionStorage", "Authorization", "Bearer ", "/stream/metrics", "/pull/find_all", "/pull/terminate", "getContext('2d')", "window.consoleState", "setInterval(poll, 1000)"},
	} {
		resp, body := get(t, srv, path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		for _, s := range want {
			if !strings.Contains(body, s) {
				t.Errorf("%s lacks %q", path, s)
			}
		}
		// everything is embedded: no external scripts or styles
		for _, s := range []string{"http://", "https://", "//cdn"} {
			if strings.Contains(body, "src=\""+s) || strings.Contains(body, "from '"+s) {
				t.Errorf("%s loads something external (%s)", path, s)
			}
		}
	}
}
