package relay

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/media"
	"github.com/rtcrelay/rtcrelay/signaling"
)

// remoteEngine is the remote server's media side: sessions are ready at once.
type remoteEngine struct {
	mu        sync.Mutex
	published map[string]bool
	serverID  string
}

type remoteSession struct {
	once sync.Once
	done chan struct{}
	e    *remoteEngine
	name string // published name, "" for a player
}

func (s *remoteSession) Ready(context.Context) error { return nil }
func (s *remoteSession) Done() <-chan struct{}       { return s.done }
func (s *remoteSession) Err() error                  { return nil }
func (s *remoteSession) Close(error) {
	s.once.Do(func() {
		close(s.done)
		if s.name != "" {
			s.e.mu.Lock()
			delete(s.e.published, s.name)
			s.e.mu.Unlock()
		}
	})
}

func (e *remoteEngine) Publish(_ context.Context, req media.PublishRequest) (media.Session, string, error) {
	if slices.Contains(req.Path, e.serverID) {
		return nil, "", media.ErrRestricted
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.published[req.Name] {
		return nil, "", media.ErrNameInUse
	}
	e.published[req.Name] = true
	return &remoteSession{done: make(chan struct{}), e: e, name: req.Name}, "answer:" + req.SDP, nil
}

func (e *remoteEngine) Play(_ context.Context, req media.PlayRequest) (media.Session, string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.published[req.Name] {
		return nil, "", media.ErrNotFound
	}
	return &remoteSession{done: make(chan struct{}), e: e}, "answer:" + req.SDP, nil
}

func (e *remoteEngine) Available(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.published[name]
}

// localEngine is our media side: outbound sessions ready at once, media always fresh.
type localEngine struct {
	mu      sync.Mutex
	streams map[string]chan struct{}
}

type localOut struct {
	once   sync.Once
	done   chan struct{}
	answer string
}

func (o *localOut) Accept(a string) error {
	if !strings.HasPrefix(a, "answer:offer") {
		return errors.New("unexpected answer " + a)
	}
	o.answer = a
	return nil
}
func (o *localOut) Ready(context.Context) error { return nil }
func (o *localOut) Done() <-chan struct{}       { return o.done }
func (o *localOut) Err() error                  { return nil }
func (o *localOut) Close(error)                 { o.once.Do(func() { close(o.done) }) }
func (o *localOut) EndLocal()                   {}
func (o *localOut) Stats() media.OutboundStats {
	return media.OutboundStats{Packets: 1, LastPacket: time.Now()}
}

func (e *localEngine) HasStream(n string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.streams[n] != nil
}

func (e *localEngine) StreamDone(n string) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.streams[n]; c != nil {
		return c
	}
	c := make(chan struct{})
	close(c)
	return c
}
func (e *localEngine) StreamPath(string) []string { return []string{"B"} }
func (e *localEngine) OfferPush(context.Context, string) (media.Outbound, string, error) {
	return &localOut{done: make(chan struct{})}, "offer-push", nil
}
func (e *localEngine) OfferPull(context.Context, string) (media.Outbound, string, error) {
	return &localOut{done: make(chan struct{})}, "offer-pull", nil
}

func setup(t *testing.T, remoteID string) (*Manager, *signaling.Server, string) {
	t.Helper()
	re := &remoteEngine{published: map[string]bool{}, serverID: remoteID}
	srv := signaling.NewServer(signaling.ServerConfig{Engine: re})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	m, err := NewManager(Config{
		Engine: &localEngine{streams: map[string]chan struct{}{"s": make(chan struct{})}},
		Dial:   WCSDialer(nil, nil, nil), ServerID: "A", RetryFailed: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, srv, "ws://" + strings.TrimPrefix(hs.URL, "http://")
}

func wait(t *testing.T, m *Manager, id string, cond func(AgentInfo) bool) AgentInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ai, err := m.Wait(ctx, id, cond)
	if err != nil {
		t.Fatalf("%v (last %+v)", err, ai)
	}
	return ai
}

func status(s string) func(AgentInfo) bool {
	return func(ai AgentInfo) bool { return ai.Status == s }
}

func TestPushOverWCS(t *testing.T) {
	m, srv, uri := setup(t, "C")
	ai, err := m.Push(t.Context(), Spec{URI: uri, LocalStreamName: "s", RemoteStreamName: "t"})
	if err != nil {
		t.Fatal(err)
	}
	got := wait(t, m, ai.LocalMediaSessionID, status(StatusProcessedRemote))
	streams := srv.Streams(nil)
	if len(streams) != 1 || streams[0].Name != "t" || !streams[0].Published || streams[0].Status != "PUBLISHING" ||
		streams[0].MediaSessionID != *got.RemoteMediaSessionID || string(streams[0].Custom) != `{"rtcrelayPath":["B","A"]}` {
		t.Fatalf("remote streams %+v", streams)
	}

	// The remote drops our connection: the agent reconnects.
	conns := srv.Connections()
	if len(conns) != 1 || !srv.Terminate(conns[0].SessionID) {
		t.Fatalf("connections %+v", conns)
	}
	again := wait(t, m, ai.LocalMediaSessionID, func(ai AgentInfo) bool {
		return ai.Status == StatusProcessedRemote && ai.Reconnects == 1
	})
	if *again.RemoteMediaSessionID == *got.RemoteMediaSessionID {
		t.Fatal("same remote media session id after reconnect")
	}

	// terminate sends unPublishStream: the remote stream ends.
	if _, err := m.Terminate(Filter{LocalMediaSessionID: ai.LocalMediaSessionID}); err != nil {
		t.Fatal(err)
	}
	if s := srv.Streams(nil); len(s) != 0 {
		t.Fatalf("remote still has %+v", s)
	}
}

func TestRemoteFailures(t *testing.T) {
	m, _, uri := setup(t, "B")
	pull, err := m.Pull(t.Context(), Spec{URI: uri, LocalStreamName: "l", RemoteStreamName: "absent"})
	if err != nil {
		t.Fatal(err)
	}
	got := wait(t, m, pull.LocalMediaSessionID, status(StatusFailed))
	if got.Info != signaling.InfoStreamNotFound {
		t.Fatalf("pull info %q", got.Info)
	}
	// Our stream s arrived through B: pushing it to B is a loop the remote refuses.
	push, err := m.Push(t.Context(), Spec{URI: uri, LocalStreamName: "s", RemoteStreamName: "s"})
	if err != nil {
		t.Fatal(err)
	}
	got = wait(t, m, push.LocalMediaSessionID, status(StatusFailed))
	if got.Info != signaling.InfoRestrictedAccess {
		t.Fatalf("loop info %q", got.Info)
	}
}

// TestPushLoopRefusedAtOnce: a stream that came here from server B (path [B]) pushed back to B is refused by the
// REST-facing Push itself, because the probe reads B's serverId from getUserData.
func TestPushLoopRefusedAtOnce(t *testing.T) {
	for _, tc := range []struct {
		remoteID string
		want     error
	}{{"B", ErrLoop}, {"C", nil}} {
		t.Run(tc.remoteID, func(t *testing.T) {
			srv := signaling.NewServer(signaling.ServerConfig{Engine: &remoteEngine{published: map[string]bool{}}, ServerID: tc.remoteID})
			hs := httptest.NewServer(srv)
			t.Cleanup(hs.Close)
			m, err := NewManager(Config{
				Engine: &localEngine{streams: map[string]chan struct{}{"s": make(chan struct{})}},
				Dial:   WCSDialer(nil, nil, nil), Probe: WCSProbe(nil, nil), ServerID: "A", RetryFailed: -1,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Close() })
			uri := "ws://" + strings.TrimPrefix(hs.URL, "http://")
			_, err = m.Push(t.Context(), Spec{URI: uri, LocalStreamName: "s", RemoteStreamName: "s"})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Push to %s: %v, want %v", tc.remoteID, err, tc.want)
			}
		})
	}
}

func TestHookRelayAppKey(t *testing.T) {
	m, srv, uri := setup(t, "C")
	ai, err := m.Push(t.Context(), Spec{URI: uri, LocalStreamName: "s", RemoteStreamName: "t", AppKey: "relayApp"})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, m, ai.LocalMediaSessionID, status(StatusProcessedRemote))
	if conns := srv.Connections(); len(conns) != 1 || conns[0].AppKey != "relayApp" {
		t.Fatalf("connections %+v, want appKey relayApp", conns)
	}
}
