package signaling

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/rtcrelay/rtcrelay/media"
)

func dialClient(t *testing.T, uri string, cfg ClientConfig) *Client {
	t.Helper()
	ctx, cancel := contextWithTimeout()
	defer cancel()
	c, err := Dial(ctx, uri, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func nextStatus(t *testing.T, ch <-chan StreamStatus) StreamStatus {
	t.Helper()
	select {
	case st, ok := <-ch:
		if !ok {
			t.Fatal("status channel closed")
		}
		return st
	case <-time.After(waitTimeout):
		t.Fatal("timeout waiting for a status")
	}
	return StreamStatus{}
}

func TestClientRoundTrip(t *testing.T) {
	srv, hs, _ := newTestServer(t, ServerConfig{PingInterval: 10 * time.Millisecond, MaxMissedPongs: 10})
	ctx, cancel := contextWithTimeout()
	defer cancel()

	pub := dialClient(t, wsURL(hs, "/websocket"), ClientConfig{Custom: json.RawMessage(`{"relayPath":["a"]}`)})
	var ud map[string]any
	if err := json.Unmarshal(pub.UserData(), &ud); err != nil || ud["status"] != "ESTABLISHED" || ud["appKey"] != "defaultApp" {
		t.Fatalf("user data %s (%v)", pub.UserData(), err)
	}
	conns := srv.Connections()
	if len(conns) != 1 || string(conns[0].Custom) != `{"relayPath":["a"]}` || conns[0].ClientVersion != "2.0" || len(conns[0].MediaProviders) != 1 {
		t.Fatalf("connections %+v", conns)
	}
	answer, err := pub.Publish(ctx, "s", "p1", "offer-p", json.RawMessage(`{"x":1}`))
	if err != nil || answer != "answer-to:offer-p" {
		t.Fatalf("publish: %q %v", answer, err)
	}
	if st := nextStatus(t, pub.Status("p1")); st.Status != StatusPublishing || st.Name != "s" {
		t.Fatalf("status %+v", st)
	}
	if got := srv.Streams(&StreamFilter{Name: "s"}); len(got) != 1 || string(got[0].Custom) != `{"x":1}` {
		t.Fatalf("streams %+v", got)
	}
	ok, _, err := pub.Available(ctx, "s")
	if err != nil || !ok {
		t.Fatalf("available: %v %v", ok, err)
	}
	ok, info, err := pub.Available(ctx, "none")
	if err != nil || ok || info != InfoStreamNotFound {
		t.Fatalf("available none: %v %q %v", ok, info, err)
	}

	ply := dialClient(t, wsURL(hs, "/"), ClientConfig{})
	answer, err = ply.Play(ctx, "s", "", "offer-v", nil)
	if err != nil || answer != "answer-to:offer-v" {
		t.Fatalf("play: %q %v", answer, err)
	}
	var playID string
	for _, s := range srv.Streams(&StreamFilter{Name: "s"}) {
		if !s.Published {
			playID = s.MediaSessionID
		}
	}
	plyStatus := ply.Status(playID)
	if st := nextStatus(t, plyStatus); st.Status != StatusPlaying {
		t.Fatalf("status %+v", st)
	}

	// Errors come back as *StreamError matching the sentinels.
	_, err = ply.Play(ctx, "missing", "", "offer", nil)
	if !errors.Is(err, media.ErrNotFound) || InfoFor(err) != InfoStreamNotFound {
		t.Fatalf("play missing: %v", err)
	}
	_, err = ply.Publish(ctx, "s", "", "offer", nil)
	if !errors.Is(err, media.ErrNameInUse) {
		t.Fatalf("publish taken: %v", err)
	}

	// Pings every 10 ms, 10 misses allowed: without pongs the client would be dropped within 300 ms.
	time.Sleep(300 * time.Millisecond)
	select {
	case <-pub.Done():
		t.Fatalf("client dropped: %v", pub.Err())
	default:
	}

	// Unpublish: the publisher gets UNPUBLISHED, the player FAILED publisher stop.
	if err := pub.Stop(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if st := nextStatus(t, plyStatus); st.Status != StatusFailed || st.Info != InfoPublisherStop {
		t.Fatalf("player status %+v", st)
	}
	if _, open := <-plyStatus; open {
		t.Fatal("status channel not closed after terminal status")
	}
	if err := pub.Stop(ctx, "p1"); err != nil {
		t.Fatalf("second stop: %v", err)
	}

	// Server closes: Done, and open streams end locally.
	if _, err = pub.Publish(ctx, "s2", "p2", "offer", nil); err != nil {
		t.Fatal(err)
	}
	st2 := pub.Status("p2")
	nextStatus(t, st2)
	sid, _ := ud["sessionId"].(string)
	if !srv.Terminate(sid) {
		t.Fatal("terminate")
	}
	select {
	case <-pub.Done():
	case <-time.After(waitTimeout):
		t.Fatal("client not done after server close")
	}
	if st := nextStatus(t, st2); st.Status != StatusFailed || !st.Local {
		t.Fatalf("local end %+v", st)
	}
	if _, err := pub.Publish(ctx, "s3", "", "offer", nil); !errors.Is(err, ErrClientClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

func TestClientStopPlayer(t *testing.T) {
	_, hs, fe := newTestServer(t, ServerConfig{})
	ctx, cancel := contextWithTimeout()
	defer cancel()
	c := dialClient(t, wsURL(hs, "/"), ClientConfig{})
	if _, err := c.Publish(ctx, "s", "p", "offer", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Play(ctx, "s", "v", "offer", nil); err != nil {
		t.Fatal(err)
	}
	ch := c.Status("v")
	nextStatus(t, ch)
	if err := c.Stop(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	var last StreamStatus
	for st := range ch {
		last = st
	}
	if last.Status != StatusStopped || last.Info != InfoUser {
		t.Fatalf("last status %+v", last)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "media closed", func() bool { return fe.open() == 0 })
}

func TestClientTLS(t *testing.T) {
	srv := NewServer(ServerConfig{Engine: newFakeEngine()})
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	ctx, cancel := contextWithTimeout()
	defer cancel()
	uri := "wss" + strings.TrimPrefix(hs.URL, "https") + "/websocket"
	if _, err := Dial(ctx, uri, ClientConfig{}); err == nil {
		t.Fatal("dial with an untrusted certificate succeeded")
	}
	roots := x509.NewCertPool()
	roots.AddCert(hs.Certificate())
	c := dialClient(t, uri, ClientConfig{TLS: &tls.Config{RootCAs: roots, ServerName: "example.com"}})
	if _, err := c.Publish(ctx, "s", "", "offer", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := contextWithTimeout()
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
}

func TestClientDialErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Dial(ctx, "ws://127.0.0.1:1/", ClientConfig{}); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	// A peer that upgrades but never answers connection: ctx bounds Dial.
	release := make(chan struct{})
	mute := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer nc.Close()
		<-release
	}))
	defer mute.Close()
	defer close(release)
	start := time.Now()
	if _, err := Dial(ctx, wsURL(mute, "/"), ClientConfig{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial to a mute peer: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("Dial not bounded by ctx")
	}
	// A peer that is not a WebSocket server.
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	if _, err := Dial(context.Background(), wsURL(plain, "/"), ClientConfig{}); err == nil {
		t.Fatal("dial to a plain HTTP server succeeded")
	}
}
