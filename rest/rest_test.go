package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rtcrelay/rtcrelay/relay"
	"github.com/rtcrelay/rtcrelay/signaling"
)

type fakeRelays struct {
	mu     sync.Mutex
	specs  []string // "push uri local remote"
	agents []relay.AgentInfo
	err    error
}

func (f *fakeRelays) create(dir string, s relay.Spec) (relay.AgentInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return relay.AgentInfo{}, f.err
	}
	switch {
	case s.LocalStreamName == "" || s.RemoteStreamName == "":
		return relay.AgentInfo{}, fmt.Errorf("%w: names required", relay.ErrBadRequest)
	case s.LocalStreamName == "missing":
		return relay.AgentInfo{}, fmt.Errorf("%w: stream not published", relay.ErrNotFound)
	case s.LocalStreamName == "dup":
		return relay.AgentInfo{}, fmt.Errorf("%w: exists", relay.ErrConflict)
	case s.LocalStreamName == "loop":
		return relay.AgentInfo{}, fmt.Errorf("%w: path", relay.ErrLoop)
	}
	f.specs = append(f.specs, dir+" "+s.URI+" "+s.LocalStreamName+" "+s.RemoteStreamName)
	return relay.AgentInfo{LocalStreamName: s.LocalStreamName}, nil
}

func (f *fakeRelays) Push(_ context.Context, s relay.Spec) (relay.AgentInfo, error) {
	return f.create("push", s)
}

func (f *fakeRelays) Pull(_ context.Context, s relay.Spec) (relay.AgentInfo, error) {
	return f.create("pull", s)
}

func (f *fakeRelays) Find(flt relay.Filter) []relay.AgentInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []relay.AgentInfo
	for _, a := range f.agents {
		if (flt.LocalStreamName == "" || flt.LocalStreamName == a.LocalStreamName) &&
			(flt.Status == "" || flt.Status == a.Status) {
			out = append(out, a)
		}
	}
	return out
}

func (f *fakeRelays) Terminate(flt relay.Filter) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n := len(f.Find(flt))
	if n == 0 {
		return 0, relay.ErrNotFound
	}
	return n, nil
}

type fakeSignaling struct {
	streams    []signaling.StreamInfo
	conns      []signaling.ConnectionInfo
	terminated []string
	lastInfo   string
}

func (f *fakeSignaling) Streams(flt *signaling.StreamFilter) []signaling.StreamInfo {
	var out []signaling.StreamInfo
	for _, s := range f.streams {
		if flt == nil || ((flt.Name == "" || flt.Name == s.Name) && (flt.Published == nil || *flt.Published == s.Published) &&
			(flt.MediaSessionID == "" || flt.MediaSessionID == s.MediaSessionID) &&
			(len(flt.MediaSessionIDs) == 0 || slices.Contains(flt.MediaSessionIDs, s.MediaSessionID))) {
			out = append(out, s)
		}
	}
	return out
}

func (f *fakeSignaling) TerminateStream(flt signaling.StreamFilter, info string) int {
	f.lastInfo = info
	out := f.Streams(&flt)
	for _, s := range out {
		f.terminated = append(f.terminated, s.MediaSessionID)
	}
	return len(out)
}

func (f *fakeSignaling) Connections() []signaling.ConnectionInfo { return f.conns }

func (f *fakeSignaling) Terminate(id string) bool {
	for _, c := range f.conns {
		if c.SessionID == id {
			f.terminated = append(f.terminated, id)
			return true
		}
	}
	return false
}

func newTestServer(t *testing.T, token string) (*httptest.Server, *fakeRelays, *fakeSignaling) {
	t.Helper()
	rl := &fakeRelays{agents: []relay.AgentInfo{
		{LocalMediaSessionID: "a1", LocalStreamName: "s", RemoteStreamName: "s", URI: "ws://b", Status: "PROCESSED_REMOTE", Direction: "push"},
		{LocalMediaSessionID: "a2", LocalStreamName: "p", RemoteStreamName: "q", URI: "ws://c", Status: "FAILED", Direction: "pull"},
	}}
	sg := &fakeSignaling{
		streams: []signaling.StreamInfo{
			{MediaSessionID: "m1", Name: "s", Published: true, Status: "PUBLISHING"},
			{MediaSessionID: "m2", Name: "s", Published: false, Status: "PLAYING"},
		},
		conns: []signaling.ConnectionInfo{{SessionID: "/1.2.3.4:5/6.7.8.9:8080", AppKey: "defaultApp", ClientVersion: "2.0"}},
	}
	srv := httptest.NewServer(NewHandler(Config{Relays: rl, Streams: sg, Connections: sg, Token: token, MaxBody: 1024}))
	t.Cleanup(srv.Close)
	return srv, rl, sg
}

type result struct {
	code int
	body string
	hdr  http.Header
}

func do(t *testing.T, srv *httptest.Server, method, path, body, token string) result {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, string(b), resp.Header}
}

func TestMethods(t *testing.T) {
	srv, rl, sg := newTestServer(t, "")
	push := `{"uri":"ws://b:8080","localStreamName":"s","remoteStreamName":"t","extra":{"x":1}}`
	tests := []struct {
		name, method, path, body string
		code                     int
		contains                 string // in the body; "" = empty body expected for 200
	}{
		{"push", "POST", "/rest-api/pull/push", push, 200, ""},
		{"pull", "POST", "/rest-api/pull/pull", `{"uri":"ws://b","localStreamName":"l","remoteStreamName":"r"}`, 200, ""},
		{"push empty body", "POST", "/rest-api/pull/push", "", 400, `"status":400`},
		{"push malformed", "POST", "/rest-api/pull/push", `{"uri":`, 400, "bad request body"},
		{"push array", "POST", "/rest-api/pull/push", `[1,2]`, 400, "JSON object"},
		{"push trailing", "POST", "/rest-api/pull/push", `{} {}`, 400, "after the JSON object"},
		{"push wrong type", "POST", "/rest-api/pull/push", `{"uri":5}`, 400, "bad request body"},
		{"push not published", "POST", "/rest-api/pull/push", `{"uri":"ws://b","localStreamName":"missing","remoteStreamName":"r"}`, 404, "not published"},
		{"push conflict", "POST", "/rest-api/pull/push", `{"uri":"ws://b","localStreamName":"dup","remoteStreamName":"r"}`, 409, `"status":409`},
		{"push loop", "POST", "/rest-api/pull/push", `{"uri":"ws://b","localStreamName":"loop","remoteStreamName":"r"}`, 409, "relay loop"},
		{"push too large", "POST", "/rest-api/pull/push", `{"uri":"` + strings.Repeat("x", 2000) + `"}`, 413, `"status":413`},
		{"find_all GET", "GET", "/rest-api/pull/find_all", "", 200, `"localMediaSessionId":"a1"`},
		{"find_all POST", "POST", "/rest-api/pull/find_all", "{}", 200, `"localMediaSessionId":"a2"`},
		{"find", "POST", "/rest-api/pull/find", `{"localStreamName":"p"}`, 200, `"remoteStreamName":"q"`},
		{"find none", "POST", "/rest-api/pull/find", `{"localStreamName":"zz"}`, 404, "no relay agent"},
		{"find bad field", "POST", "/rest-api/pull/find", `{"status":true}`, 400, "bad request body"},
		{"terminate", "POST", "/rest-api/pull/terminate", `{"localStreamName":"s","remoteStreamName":"s","uri":"ws://b"}`, 200, ""},
		{"terminate none", "POST", "/rest-api/pull/terminate", `{"localStreamName":"zz"}`, 404, `"status":404`},
		{"stream find_all", "GET", "/rest-api/stream/find_all", "", 200, `"mediaSessionId":"m2"`},
		{"stream find", "POST", "/rest-api/stream/find", `{"name":"s","published":true,"display":["metrics"]}`, 200, `"mediaSessionId":"m1"`},
		{"stream find none", "POST", "/rest-api/stream/find", `{"name":"x"}`, 404, "stream not found"},
		{"stream find bad published", "POST", "/rest-api/stream/find", `{"published":"yes"}`, 400, "bad request body"},
		{"connection find_all", "GET", "/rest-api/connection/find_all", "", 200, `"clientVersion":"2.0"`},
		{"connection find", "POST", "/rest-api/connection/find", `{"clientVersion":"2.0","appKey":"defaultApp"}`, 200, `"sessionId"`},
		{"connection find none", "POST", "/rest-api/connection/find", `{"clientVersion":"1.0"}`, 404, "connection not found"},
		{"connection terminate missing", "POST", "/rest-api/connection/terminate", `{}`, 400, "sessionId is required"},
		{"connection terminate unknown", "POST", "/rest-api/connection/terminate", `{"sessionId":"x"}`, 404, `"status":404`},
		{"connection terminate", "POST", "/rest-api/connection/terminate", `{"sessionId":"/1.2.3.4:5/6.7.8.9:8080"}`, 200, ""},
		{"stream terminate one", "POST", "/rest-api/stream/terminate", `{"mediaSessionId":"m2"}`, 200, ""},
		{"stream terminate none", "POST", "/rest-api/stream/terminate", `{"mediaSessionIds":["zz"]}`, 404, "stream not found"},
		{"stream terminate all", "POST", "/rest-api/stream/terminate", `{}`, 200, ""},
		{"unknown method", "POST", "/rest-api/pull/nope", `{}`, 404, "no REST method"},
		{"wrong verb", "DELETE", "/rest-api/pull/find_all", "", 405, "method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, srv, tt.method, tt.path, tt.body, "")
			if res.code != tt.code {
				t.Fatalf("status %d, want %d; body %s", res.code, tt.code, res.body)
			}
			if res.hdr.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("no CORS header")
			}
			switch {
			case tt.contains == "" && res.body != "":
				t.Errorf("body %q, want empty", res.body)
			case !strings.Contains(res.body, tt.contains):
				t.Errorf("body %q lacks %q", res.body, tt.contains)
			}
			if tt.code != 200 {
				var eb errorBody
				if err := json.Unmarshal([]byte(res.body), &eb); err != nil || eb.Status != tt.code || eb.Error == "" {
					t.Errorf("error body %q: %v", res.body, err)
				}
			}
		})
	}
	if !slices.Equal(rl.specs, []string{"push ws://b:8080 s t", "pull ws://b l r"}) {
		t.Errorf("relay calls %q", rl.specs)
	}
	if sg.lastInfo != InfoTerminate || !slices.Equal(sg.terminated, []string{"/1.2.3.4:5/6.7.8.9:8080", "m2", "m1", "m2"}) {
		t.Errorf("terminated %q info %q", sg.terminated, sg.lastInfo)
	}
}

func TestEmptyListings(t *testing.T) {
	srv := httptest.NewServer(NewHandler(Config{Relays: &fakeRelays{}, Streams: &fakeSignaling{}, Connections: &fakeSignaling{}}))
	defer srv.Close()
	for _, p := range []string{"/rest-api/pull/find_all", "/rest-api/stream/find_all", "/rest-api/connection/find_all"} {
		res := do(t, srv, "GET", p, "", "")
		if res.code != 200 || res.body != "[]" || !strings.HasPrefix(res.hdr.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %q", p, res.code, res.body)
		}
	}
}

func TestInternalErrorsAndUnavailable(t *testing.T) {
	srv := httptest.NewServer(NewHandler(Config{Relays: &fakeRelays{err: errors.New("disk on fire")}}))
	defer srv.Close()
	tests := []struct{ path, contains string }{
		{"/rest-api/pull/push", "disk on fire"},
		{"/rest-api/pull/terminate", "disk on fire"},
		{"/rest-api/stream/find_all", "not available"},
		{"/rest-api/stream/terminate", "not available"},
		{"/rest-api/connection/find", "not available"},
		{"/rest-api/connection/terminate", "not available"},
	}
	for _, tt := range tests {
		res := do(t, srv, "POST", tt.path, `{"uri":"ws://b","localStreamName":"a","remoteStreamName":"b"}`, "")
		if res.code != 500 || !strings.Contains(res.body, tt.contains) {
			t.Errorf("%s: %d %s", tt.path, res.code, res.body)
		}
	}
	srv2 := httptest.NewServer(NewHandler(Config{}))
	defer srv2.Close()
	if res := do(t, srv2, "GET", "/rest-api/pull/find_all", "", ""); res.code != 500 {
		t.Errorf("nil relays: %d", res.code)
	}
}

func TestAuthAndPreflight(t *testing.T) {
	srv, _, _ := newTestServer(t, "sekret")
	if res := do(t, srv, "GET", "/rest-api/pull/find_all", "", ""); res.code != 401 ||
		!strings.Contains(res.body, `"status":401`) || res.hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d %s", res.code, res.body)
	}
	if res := do(t, srv, "GET", "/rest-api/pull/find_all", "", "wrong"); res.code != 401 {
		t.Errorf("wrong token: %d", res.code)
	}
	if res := do(t, srv, "GET", "/rest-api/pull/find_all", "", "sekret"); res.code != 200 {
		t.Errorf("right token: %d %s", res.code, res.body)
	}
	res := do(t, srv, "OPTIONS", "/rest-api/pull/push", "", "")
	if res.code != 200 || res.hdr.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(res.hdr.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(res.hdr.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("preflight: %d %v", res.code, res.hdr)
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{&http.MaxBytesError{Limit: 1}, 413},
		{fmt.Errorf("x: %w", ErrBadBody), 400},
		{relay.ErrBadRequest, 400},
		{ErrUnauthorized, 401},
		{relay.ErrNotFound, 404},
		{ErrNotFound, 404},
		{relay.ErrConflict, 409},
		{relay.ErrLoop, 409},
		{errors.New("boom"), 500},
		{ErrUnavailable, 500},
		{ErrMethod, 405},
	}
	for _, tt := range tests {
		if got := statusOf(tt.err); got != tt.code {
			t.Errorf("statusOf(%v) = %d, want %d", tt.err, got, tt.code)
		}
	}
}

func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{``, `{}`, ` {"uri":"ws://b","localStreamName":"s","remoteStreamName":"t"} `,
		`{"uri":5}`, `[`, `{"a":{"b":[1,2,{"c":null}]}}`, `{} x`, "\xff", `{"published":true,"mediaSessionIds":["a"]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var spec relay.Spec
		err := decodeJSON(b, &spec)
		if err != nil && !errors.Is(err, ErrBadBody) {
			t.Fatalf("error outside ErrBadBody: %v", err)
		}
		var sf streamFilter
		_ = decodeJSON(b, &sf)
		var m map[string]any
		if decodeJSON(b, &m) == nil && m != nil {
			_ = matchJSON(signaling.ConnectionInfo{SessionID: "x"}, m)
		}
	})
}
