package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func newTestManager(t *testing.T, e Engine, r *fakeRemote, mod func(*Config)) *Manager {
	t.Helper()
	cfg := Config{Engine: e, Dial: r.dial, ServerID: "A"}
	if mod != nil {
		mod(&cfg)
	}
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func waitStatus(t *testing.T, m *Manager, id, status string) AgentInfo {
	t.Helper()
	ai, err := m.Wait(t.Context(), id, func(ai AgentInfo) bool { return ai.Status == status })
	if err != nil {
		t.Fatalf("waiting for %s: %v (last %+v)", status, err, ai)
	}
	return ai
}

func TestPushLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newFakeEngine("s")
		e.paths["s"] = []string{"X"}
		r := newFakeRemote()
		m := newTestManager(t, e, r, nil)

		ai, err := m.Push(t.Context(), Spec{URI: "ws://B:8080", LocalStreamName: "s", RemoteStreamName: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if ai.Status != StatusNew || ai.RemoteMediaSessionID != nil || ai.Direction != DirectionPush {
			t.Fatalf("created agent: %+v", ai)
		}
		b, _ := json.Marshal(ai)
		if !strings.Contains(string(b), `"remoteMediaSessionId":null`) {
			t.Fatalf("JSON %s", b)
		}
		got := waitStatus(t, m, ai.LocalMediaSessionID, StatusProcessedRemote)
		if got.RemoteMediaSessionID == nil || got.Packets != 10 || got.URI != "ws://B:8080" {
			t.Fatalf("established agent: %+v", got)
		}
		c := r.conns[0]
		msgs := c.messages()
		want := "publish t " + *got.RemoteMediaSessionID + ` {"rtcrelayPath":["X","A"]}`
		if len(msgs) != 1 || msgs[0] != want {
			t.Fatalf("messages %q, want %q", msgs, want)
		}
		if o := e.lastOut(); o.answer != "answer" {
			t.Fatalf("answer not applied: %q", o.answer)
		}

		// Find by any field, normalized uri.
		for _, f := range []Filter{{URI: "WS://b:8080/websocket"}, {LocalStreamName: "s"}, {Direction: "push"},
			{RemoteMediaSessionID: *got.RemoteMediaSessionID}, {Status: "PROCESSED_REMOTE"}} {
			if n := len(m.Find(f)); n != 1 {
				t.Errorf("Find(%+v) = %d agents", f, n)
			}
		}
		if n := len(m.Find(Filter{RemoteStreamName: "other"})); n != 0 {
			t.Errorf("non-matching filter found %d", n)
		}

		n, err := m.Terminate(Filter{URI: "ws://b:8080/", LocalStreamName: "s", RemoteStreamName: "t"})
		if err != nil || n != 1 {
			t.Fatalf("terminate: %d %v", n, err)
		}
		msgs = c.messages()
		if len(msgs) != 2 || msgs[1] != "unPublishStream "+*got.RemoteMediaSessionID {
			t.Fatalf("terminate messages %q", msgs)
		}
		if !isClosed(c.done) || !isClosed(e.lastOut().done) {
			t.Fatal("terminate left the connection or session open")
		}
		if len(m.FindAll()) != 0 {
			t.Fatal("terminated agent still listed")
		}
		if _, err := m.Terminate(Filter{}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("terminate of nothing: %v", err)
		}
	})
}

func TestCreateErrors(t *testing.T) {
	e := newFakeEngine("s", "busy")
	e.paths["looped"] = []string{"A", "B"}
	e.streams["looped"] = make(chan struct{})
	r := newFakeRemote()
	m := newTestManager(t, e, r, func(c *Config) { c.AllowHosts = []string{"b", "c:9000"}; c.RetryFailed = -1 })
	if _, err := m.Push(t.Context(), Spec{URI: "ws://b:8080", LocalStreamName: "s", RemoteStreamName: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Pull(t.Context(), Spec{URI: "ws://b:8080", LocalStreamName: "p", RemoteStreamName: "s"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  Direction
		spec Spec
		want error
	}{
		{"missing local", DirectionPush, Spec{URI: "ws://b", RemoteStreamName: "x"}, ErrBadRequest},
		{"missing remote", DirectionPull, Spec{URI: "ws://b", LocalStreamName: "x"}, ErrBadRequest},
		{"missing uri", DirectionPush, Spec{LocalStreamName: "s", RemoteStreamName: "x"}, ErrBadRequest},
		{"ftp scheme", DirectionPush, Spec{URI: "ftp://b", LocalStreamName: "s", RemoteStreamName: "x"}, ErrBadRequest},
		{"wss without agent TLS", DirectionPush, Spec{URI: "wss://b", LocalStreamName: "s", RemoteStreamName: "x"}, ErrBadRequest},
		{"host not allowed", DirectionPush, Spec{URI: "ws://evil:8080", LocalStreamName: "s", RemoteStreamName: "x"}, ErrBadRequest},
		{"port not allowed", DirectionPush, Spec{URI: "ws://c:9001", LocalStreamName: "s", RemoteStreamName: "x"}, ErrBadRequest},
		{"garbage uri", DirectionPush, Spec{URI: "ws://[::1", LocalStreamName: "s", RemoteStreamName: "x"}, ErrBadRequest},
		{"push unpublished", DirectionPush, Spec{URI: "ws://b", LocalStreamName: "nope", RemoteStreamName: "x"}, ErrNotFound},
		{"same push", DirectionPush, Spec{URI: "WS://B:8080/websocket", LocalStreamName: "s", RemoteStreamName: "s"}, ErrConflict},
		{"same pull", DirectionPull, Spec{URI: "ws://b:8080/", LocalStreamName: "p", RemoteStreamName: "s"}, ErrConflict},
		{"pull into same local name", DirectionPull, Spec{URI: "ws://c:9000", LocalStreamName: "p", RemoteStreamName: "z"}, ErrConflict},
		{"pull into published name", DirectionPull, Spec{URI: "ws://b", LocalStreamName: "busy", RemoteStreamName: "z"}, ErrConflict},
		{"loop", DirectionPush, Spec{URI: "ws://b", LocalStreamName: "looped", RemoteStreamName: "z"}, ErrLoop},
		{"other port is another agent", DirectionPush, Spec{URI: "ws://c:9000", LocalStreamName: "s", RemoteStreamName: "s"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.dir == DirectionPush {
				_, err = m.Push(t.Context(), tt.spec)
			} else {
				_, err = m.Pull(t.Context(), tt.spec)
			}
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRemoteStreamNotFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newFakeEngine()
		r := newFakeRemote()
		r.reply = func(*fakeConn, string) (string, *StreamStatus, error) {
			return "answer", &StreamStatus{Status: "FAILED", Info: "Stream not found"}, nil
		}
		m := newTestManager(t, e, r, func(c *Config) { c.RetryFailed = 3 * time.Second; c.FailedTTL = 10 * time.Second })
		ai, err := m.Pull(t.Context(), Spec{URI: "ws://b", LocalStreamName: "l", RemoteStreamName: "r"})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		got := waitStatus(t, m, ai.LocalMediaSessionID, StatusFailed)
		if got.Info != "Stream not found" {
			t.Fatalf("info %q", got.Info)
		}
		// It keeps retrying (staying FAILED) and then gives up; still listed until FailedTTL.
		<-m.agentDone(ai.LocalMediaSessionID)
		gaveUp := time.Since(start)
		if gaveUp > 3*time.Second {
			t.Fatalf("gave up after %v", gaveUp)
		}
		got = m.Find(Filter{LocalMediaSessionID: ai.LocalMediaSessionID})[0]
		if got.Status != StatusFailed || got.Reconnects < 3 || got.Info != "Stream not found" {
			t.Fatalf("after giving up: %+v", got)
		}
		if e.HasStream("l") {
			t.Fatal("failed pull left the local stream published")
		}
		// A new identical pull replaces the stopped agent instead of a conflict.
		time.Sleep(5 * time.Second)
		if len(m.FindAll()) != 1 {
			t.Fatal("failed agent expired early")
		}
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if len(m.FindAll()) != 0 {
			t.Fatal("failed agent not removed after FailedTTL")
		}
	})
}

func TestStoppedAgentIsReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newFakeEngine("s")
		r := newFakeRemote()
		r.dialErr = errors.New("connection refused")
		m := newTestManager(t, e, r, func(c *Config) { c.RetryFailed = -1 })
		spec := Spec{URI: "ws://b", LocalStreamName: "s", RemoteStreamName: "s"}
		ai, err := m.Push(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		<-m.agentDone(ai.LocalMediaSessionID)
		if got := m.FindAll(); len(got) != 1 || got[0].Status != StatusFailed || !strings.Contains(got[0].Info, "connection refused") {
			t.Fatalf("%+v", got)
		}
		ai2, err := m.Push(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.FindAll(); len(got) != 1 || got[0].LocalMediaSessionID != ai2.LocalMediaSessionID {
			t.Fatalf("%+v", got)
		}
	})
}

func TestReconnectAfterRemoteDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newFakeEngine("s")
		r := newFakeRemote()
		m := newTestManager(t, e, r, nil)
		ai, err := m.Push(t.Context(), Spec{URI: "ws://b", LocalStreamName: "s", RemoteStreamName: "s"})
		if err != nil {
			t.Fatal(err)
		}
		first := waitStatus(t, m, ai.LocalMediaSessionID, StatusProcessedRemote)
		c := <-r.dials
		dropped := time.Now()
		c.Close() // the remote went away
		c2 := <-r.dials
		if d := time.Since(dropped); d > 500*time.Millisecond {
			t.Fatalf("first retry after %v", d)
		}
		again := waitStatus(t, m, ai.LocalMediaSessionID, StatusProcessedRemote)
		if again.Reconnects != 1 || *again.RemoteMediaSessionID == *first.RemoteMediaSessionID {
			t.Fatalf("after reconnect: %+v", again)
		}
		// The remote fails the stream: reconnect again.
		c2.status <- StreamStatus{Status: "FAILED", Info: "Failed by RTP activity"}
		<-r.dials
		again = waitStatus(t, m, ai.LocalMediaSessionID, StatusProcessedRemote)
		if again.Reconnects != 2 {
			t.Fatalf("reconnects %d", again.Reconnects)
		}
	})
}

func TestBackoffWhileRemoteDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newFakeEngine("s")
		r := newFakeRemote()
		m := newTestManager(t, e, r, nil)
		ai, _ := m.Push(t.Context(), Spec{URI: "ws://b", LocalStreamName: "s", RemoteStreamName: "s"})
		waitStatus(t, m, ai.LocalMediaSessionID, StatusProcessedRemote)
		c := <-r.dials
		r.mu.Lock()
		r.dialErr = errors.New("dial tcp: connection refused")
		r.mu.Unlock()
		c.Close()
		got := waitStatus(t, m, ai.LocalMediaSessionID, StatusPending)
		if got.Info != errConnClosed.Error() {
			t.Fatalf("lost info %q", got.Info)
		}
		got = waitStatus(t, m, ai.LocalMediaSessionID, StatusFailed)
		if !strings.Contains(got.Info, "connection refused") {
			t.Fatalf("info %q", got.Info)
		}
		// Established once: keeps retrying beyond RetryFailed, with delays capped at RetryMax.
		time.Sleep(time.Minute)
		got = m.Find(Filter{})[0]
		// 250 ms, then the 500 ms cap: about 120 attempts in a minute.
		if got.Status != StatusFailed || got.Reconnects < 110 || got.Reconnects > 125 {
			t.Fatalf("after a minute down: %+v", got)
		}
		r.mu.Lock()
		r.dialErr = nil
		r.mu.Unlock()
		waitStatus(t, m, ai.LocalMediaSessionID, StatusProcessedRemote)
	})
}

func TestNoMediaTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newFakeEngine()
		r := newFakeRemote()
		m := newTestManager(t, e, r, func(c *Config) { c.NoMediaTimeout = 2 * time.Second })
		ai, _ := m.Pull(t.Context(), Spec{URI: "ws://b", LocalStreamName: "l", RemoteStreamName: "r"})
		waitStatus(t, m, ai.LocalMediaSessionID, StatusProcessedRemote)
		<-r.dials
		o := e.lastOut()
		for range 5 { // media flows for 5 s: no reconnect
			time.Sleep(time.Second)
			o.touch(time.Now())
		}
		if got := m.FindAll()[0]; got.Reconnects != 0 || got.Status != StatusProcessedRemote {
			t.Fatalf("%+v", got)
		}
		got := waitStatus(t, m, ai.LocalMediaSessionID, StatusPending)
		if !strings.Contains(got.Info, "no media") {
			t.Fatalf("info %q", got.Info)
		}
		if !e.HasStream("l") {
			t.Fatal("pull ended its local stream during a reconnect")
		}
		<-r.dials
		waitStatus(t, m, ai.LocalMediaSessionID, StatusProcessedRemote)
		if o.ended {
			t.Fatal("EndLocal during reconnect")
		}
		// Terminate: stopStream, local stream ends.
		if _, err := m.Terminate(Filter{LocalMediaSessionID: ai.LocalMediaSessionID}); err != nil {
			t.Fatal(err)
		}
		if e.HasStream("l") {
			t.Fatal("terminated pull left its local stream")
		}
		msgs := r.conns[1].messages()
		if len(msgs) != 2 || !strings.HasPrefix(msgs[0], `play r `) || !strings.HasSuffix(msgs[0], `{"rtcrelayPath":["A"]}`) ||
			!strings.HasPrefix(msgs[1], "stopStream ") {
			t.Fatalf("messages %q", msgs)
		}
	})
}

func TestPushEndsWithLocalStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newFakeEngine("s")
		r := newFakeRemote()
		m := newTestManager(t, e, r, nil)
		ai, _ := m.Push(t.Context(), Spec{URI: "ws://b", LocalStreamName: "s", RemoteStreamName: "s"})
		waitStatus(t, m, ai.LocalMediaSessionID, StatusProcessedRemote)
		c := <-r.dials
		e.unpublish("s")
		<-m.agentDone(ai.LocalMediaSessionID)
		got := m.FindAll()[0]
		if got.Status != StatusFailed || got.Info != "local stream stopped" {
			t.Fatalf("%+v", got)
		}
		if msgs := c.messages(); len(msgs) != 2 || !strings.HasPrefix(msgs[1], "unPublishStream ") {
			t.Fatalf("messages %q", msgs)
		}
	})
}

func TestAttemptFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *fakeEngine, r *fakeRemote)
		info  string
	}{
		{"publish refused", func(_ *fakeEngine, r *fakeRemote) {
			r.reply = func(*fakeConn, string) (string, *StreamStatus, error) {
				return "", nil, &RemoteStatusError{Status: "FAILED", Reason: "Stream name is already in use"}
			}
		}, "Stream name is already in use"},
		{"bad answer", func(_ *fakeEngine, r *fakeRemote) {
			r.reply = func(*fakeConn, string) (string, *StreamStatus, error) { return "bad", nil, nil }
		}, "remote answer: bad answer"},
		{"ICE deadline", func(e *fakeEngine, _ *fakeRemote) { e.noReady = true }, "attempt timed out"},
		{"local offer", func(e *fakeEngine, _ *fakeRemote) { e.offerErr = errors.New("no socket") }, "local offer: no socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newFakeEngine("s")
				r := newFakeRemote()
				tt.setup(e, r)
				m := newTestManager(t, e, r, func(c *Config) { c.RetryFailed = -1; c.AttemptTimeout = 3 * time.Second })
				ai, _ := m.Push(t.Context(), Spec{URI: "ws://b", LocalStreamName: "s", RemoteStreamName: "s"})
				<-m.agentDone(ai.LocalMediaSessionID)
				got := m.FindAll()[0]
				if got.Status != StatusFailed || !strings.Contains(got.Info, tt.info) {
					t.Fatalf("%+v, want info %q", got, tt.info)
				}
			})
		})
	}
}

// TestClosedPort dials a real closed loopback port: FAILED with info well within 5 s.
func TestClosedPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dial := func(ctx context.Context, uri string, _ *tls.Config) (Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c.Close()
		return nil, errors.New("unexpected listener")
	}
	m, err := NewManager(Config{Engine: newFakeEngine("s"), Dial: dial, ServerID: "A"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	start := time.Now()
	ai, err := m.Push(t.Context(), Spec{URI: "ws://" + addr, LocalStreamName: "s", RemoteStreamName: "s"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got, err := m.Wait(ctx, ai.LocalMediaSessionID, func(ai AgentInfo) bool { return ai.Status == StatusFailed })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got.Info, "connection refused") {
		t.Fatalf("info %q", got.Info)
	}
	t.Logf("FAILED after %v: %s", time.Since(start), got.Info)
}

func (m *Manager) agentDone(id string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.agents[id].done
}
