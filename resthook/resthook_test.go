package resthook

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/media"
)

// backend is a real HTTP backend: it records the last body and answers by stream name.
func backend(t *testing.T, secret string) (*httptest.Server, chan map[string]any) {
	t.Helper()
	seen := make(chan map[string]any, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if secret != "" {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "WCS ")
			if !hmac.Equal([]byte(got), []byte(Sign(secret, b))) {
				w.WriteHeader(http.StatusForbidden)
				return
			}
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		m["_path"] = r.URL.Path
		seen <- m
		switch m["name"] {
		case "denied":
			w.WriteHeader(http.StatusForbidden)
		case "reason":
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"info":"Token expired"}`))
		case "broken":
			w.WriteHeader(http.StatusInternalServerError)
		case "slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		case "custom":
			_, _ = w.Write([]byte(`{"custom":{"role":"viewer"},"name":"ignored"}`))
		case "garbage":
			_, _ = w.Write([]byte(`not json`))
		case "huge":
			_, _ = w.Write([]byte(`{"custom":"` + strings.Repeat("x", 70<<10) + `"}`))
		default:
			_, _ = w.Write([]byte(`{}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

func newHooks(t *testing.T, url, secret string, timeout time.Duration) *Hooks {
	t.Helper()
	h, err := New(Config{Apps: []App{{Name: "a", AppKey: "defaultApp", URL: url + "/app", Methods: []string{"*"}}},
		SecretKey: secret, Timeout: timeout, NodeID: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func body(name string) map[string]json.RawMessage {
	n, _ := json.Marshal(name)
	return map[string]json.RawMessage{"name": n, "custom": json.RawMessage(`{"a":1}`)}
}

func TestHookAllowDenyErrors(t *testing.T) {
	srv, seen := backend(t, "")
	h := newHooks(t, srv.URL, "", 300*time.Millisecond)
	ctx := context.Background()

	out, err := h.Call(ctx, "defaultApp", MethodPublishStream, body("allowed"))
	if err != nil {
		t.Fatalf("allowed: %v", err)
	}
	if string(out["custom"]) != `{"a":1}` {
		t.Errorf("custom changed without an overwrite: %s", out["custom"])
	}
	m := <-seen
	if m["_path"] != "/app/publishStream" || m["appKey"] != "defaultApp" || m["nodeId"] != "node1" {
		t.Errorf("request: %v", m)
	}

	for _, tc := range []struct {
		name, reason string
		backendErr   bool
	}{{"denied", "", false}, {"reason", "Token expired", false}, {"broken", "", false}, {"slow", "", true}, {"garbage", "", true}, {"huge", "", true}} {
		t0 := time.Now()
		_, err := h.Call(ctx, "defaultApp", MethodPlayStream, body(tc.name))
		if !errors.Is(err, media.ErrRestricted) {
			t.Errorf("%s: %v, want ErrRestricted", tc.name, err)
			continue
		}
		de, ok := errors.AsType[*DeniedError](err)
		if !ok || de.Reason() != tc.reason || errors.Is(err, ErrBackend) != tc.backendErr {
			t.Errorf("%s: %#v", tc.name, err)
		}
		if tc.name == "slow" && time.Since(t0) > 2*time.Second {
			t.Errorf("timeout not honoured: %v", time.Since(t0))
		}
	}
	st := h.Stats()[MethodPlayStream]
	if st.Denied != 3 || st.Errors != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestHookOverwriteCustom(t *testing.T) {
	srv, _ := backend(t, "")
	h := newHooks(t, srv.URL, "", time.Second)
	out, err := h.Call(context.Background(), "defaultApp", MethodConnect, body("custom"))
	if err != nil {
		t.Fatal(err)
	}
	if string(out["custom"]) != `{"role":"viewer"}` || string(out["name"]) != `"custom"` {
		t.Errorf("overwrite: %s %s", out["custom"], out["name"])
	}
}

func TestHookHMAC(t *testing.T) {
	srv, _ := backend(t, "s3cret")
	good := newHooks(t, srv.URL, "s3cret", time.Second)
	if _, err := good.Call(context.Background(), "defaultApp", MethodConnect, body("x")); err != nil {
		t.Fatalf("signed request refused: %v", err)
	}
	bad := newHooks(t, srv.URL, "wrong", time.Second)
	if _, err := bad.Call(context.Background(), "defaultApp", MethodConnect, body("x")); !errors.Is(err, ErrDenied) {
		t.Fatalf("badly signed request: %v, want ErrDenied", err)
	}
}

func TestHookUnknownAppAndDown(t *testing.T) {
	h, err := New(Config{Apps: []App{{Name: "a", AppKey: "k", URL: "http://127.0.0.1:1/x", Methods: []string{"connect"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.Call(context.Background(), "nope", MethodConnect, body("x")); !errors.Is(err, ErrUnknownApp) {
		t.Errorf("unknown app: %v", err)
	}
	if _, err := h.Call(context.Background(), "k", MethodConnect, body("x")); !errors.Is(err, ErrBackend) {
		t.Errorf("backend down: %v", err)
	}
	if _, err := h.Call(context.Background(), "k", MethodPublishStream, body("x")); err != nil {
		t.Errorf("method not enabled must allow: %v", err)
	}
}

func TestHookAuthorizeAndEvents(t *testing.T) {
	srv, seen := backend(t, "")
	h := newHooks(t, srv.URL, "", time.Second)
	if _, err := h.Authorize(context.Background(), Call{Kind: Publish, Name: "denied", Token: "t"}); !errors.Is(err, media.ErrRestricted) {
		t.Errorf("Authorize denied: %v", err)
	}
	m := <-seen
	if m["published"] != true || m["mediaProvider"] != "WHIP" || m["custom"].(map[string]any)["token"] != "t" {
		t.Errorf("Authorize body %v", m)
	}
	if _, err := h.Authorize(context.Background(), Call{Kind: Play, Name: "ok"}); err != nil {
		t.Errorf("Authorize play: %v", err)
	}
	<-seen
	h.Notify("defaultApp", MethodStreamStatusEvent, body("ev"))
	select {
	case m := <-seen:
		if m["_path"] != "/app/StreamStatusEvent" {
			t.Errorf("event %v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("event not sent")
	}
}

func TestHookParseApps(t *testing.T) {
	apps, err := ParseApps([]byte(`{"apps":[{"name":"a","appKey":"k","url":"http://h/x","methods":["connect"],"timeout":5}]}`))
	if err != nil || len(apps) != 1 || time.Duration(apps[0].Timeout) != 5*time.Second {
		t.Fatalf("%v %+v", err, apps)
	}
	for _, bad := range []string{`[{"appKey":"k","methods":["nope"],"url":"http://h"}]`, `[{"appKey":"k","methods":["connect"],"url":"ftp://h"}]`,
		`[{"appKey":"k"},{"appKey":"k"}]`, `[{"appKey":"k","extra":1}]`, `[{"name":"no key"}]`} {
		if _, err := ParseApps([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
