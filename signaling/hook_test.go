package signaling

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/media"
)

// fakeAuth is an Authorizer: appKey "bad" is refused at connect, stream names "denied" and "reason" are refused,
// "custom" gets a custom overwrite; every call and event is recorded.
type fakeAuth struct {
	mu     sync.Mutex
	calls  []string
	events []string
}

type reasonErr struct{ r string }

func (e reasonErr) Error() string  { return "denied: " + e.r }
func (e reasonErr) Unwrap() error  { return media.ErrRestricted }
func (e reasonErr) Reason() string { return e.r }

func (a *fakeAuth) Call(_ context.Context, appKey, method string, body map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	var name string
	_ = json.Unmarshal(body["name"], &name)
	a.mu.Lock()
	a.calls = append(a.calls, method+":"+name)
	a.mu.Unlock()
	switch {
	case appKey == "bad":
		return nil, fmt.Errorf("unknown app: %w", media.ErrRestricted)
	case name == "denied":
		return nil, fmt.Errorf("403: %w", media.ErrRestricted)
	case name == "reason":
		return nil, reasonErr{"Token expired"}
	case name == "custom":
		body["custom"] = json.RawMessage(`{"role":"viewer"}`)
	}
	return body, nil
}

func (a *fakeAuth) Notify(_, method string, body map[string]json.RawMessage) {
	var status string
	_ = json.Unmarshal(body["status"], &status)
	a.mu.Lock()
	a.events = append(a.events, method+":"+status)
	a.mu.Unlock()
}

func (a *fakeAuth) has(events bool, s string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	list := a.calls
	if events {
		list = a.events
	}
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestHookSignalingStreams(t *testing.T) {
	auth := &fakeAuth{}
	_, hs, _ := newTestServer(t, ServerConfig{Authorizer: auth})
	c := dialRaw(t, hs, false)
	c.handshake()
	waitFor(t, "connect call and ESTABLISHED event", func() bool {
		return auth.has(false, "connect:") && auth.has(true, "ConnectionStatusEvent:ESTABLISHED")
	})
	c.publish("p1", "denied", "offer")
	c.expectStatus("p1", StatusFailed, InfoRestrictedAccess)
	c.publish("p2", "reason", "offer")
	c.expectStatus("p2", StatusFailed, "Token expired")
	c.publish("p3", "custom", "offer")
	c.expectSDP("p3")
	st := c.expectStatus("p3", StatusPublishing, "")
	if cu, _ := st["custom"].(map[string]any); cu["role"] != "viewer" {
		t.Fatalf("custom not overwritten: %v", st["custom"])
	}
	c.play("v1", "custom", "offer-play")
	c.expectSDP("v1")
	c.expectStatus("v1", StatusPlaying, "")
	if !auth.has(false, "publishStream:denied") || !auth.has(false, "playStream:custom") {
		t.Fatal("publishStream/playStream hooks not called")
	}
	waitFor(t, "status events", func() bool {
		return auth.has(true, "StreamStatusEvent:FAILED") && auth.has(true, "StreamStatusEvent:PUBLISHING")
	})
}

func TestHookSignalingConnectDenied(t *testing.T) {
	auth := &fakeAuth{}
	_, hs, _ := newTestServer(t, ServerConfig{Authorizer: auth})
	c := dialRaw(t, hs, false)
	c.send(MsgConnection, map[string]any{"appKey": "bad", "clientVersion": "2.0"})
	f := c.expect(MsgFail)
	if f["apiMethod"] != "ConnectionStatusEvent" || f["status"] != "FAILED" || f["info"] != InfoRestrictedAccess {
		t.Fatalf("fail %v", f)
	}
	// The socket closes without a close frame (the SDK then reports the session FAILED).
	select {
	case _, ok := <-c.msgs:
		if ok {
			t.Fatal("message after fail")
		}
	case <-time.After(waitTimeout):
		t.Fatal("socket not closed")
	}
	select {
	case code := <-c.closed:
		t.Fatalf("close frame %d sent, want an abrupt close", code)
	default:
	}
}
