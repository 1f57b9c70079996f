package signaling

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

const waitTimeout = 5 * time.Second

// rawClient is a bare gobwas WebSocket client for driving the server in tests.
type rawClient struct {
	t      *testing.T
	nc     net.Conn
	wmu    sync.Mutex
	msgs   chan Message
	pongs  chan []byte
	closed chan ws.StatusCode // close code received, then closed
	noPong bool               // do not answer JSON pings
	mu     sync.Mutex
	pings  int
}

func newTestServer(t *testing.T, cfg ServerConfig) (*Server, *httptest.Server, *fakeEngine) {
	t.Helper()
	fe := newFakeEngine()
	if cfg.Engine == nil {
		cfg.Engine = fe
	}
	srv := NewServer(cfg)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
	})
	return srv, hs, fe
}

func wsURL(hs *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(hs.URL, "http") + path
}

func dialRaw(t *testing.T, hs *httptest.Server, noPong bool) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, wsURL(hs, "/any/path"))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	var src io.Reader = nc
	if br != nil {
		src = io.MultiReader(br, nc)
	}
	c := &rawClient{t: t, nc: nc, msgs: make(chan Message, 128), pongs: make(chan []byte, 8), closed: make(chan ws.StatusCode, 1), noPong: noPong}
	go c.readLoop(bufio.NewReader(src))
	t.Cleanup(func() { _ = nc.Close() })
	return c
}

func (c *rawClient) readLoop(src io.Reader) {
	defer close(c.msgs)
	rd := wsutil.NewClientSideReader(src)
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			return
		}
		p, err := io.ReadAll(rd)
		if err != nil {
			return
		}
		switch hdr.OpCode {
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameData(p)
			c.closed <- code
			close(c.closed)
			return
		case ws.OpPong:
			c.pongs <- p
		case ws.OpPing:
			c.writeFrame(ws.OpPong, p)
		case ws.OpText:
			m, err := DecodeMessage(p)
			if err != nil {
				c.t.Errorf("server sent malformed message %q: %v", p, err)
				continue
			}
			if m.Data == nil {
				c.t.Errorf("server message without data array: %s", p)
			}
			if m.Name == MsgPing {
				c.mu.Lock()
				c.pings++
				c.mu.Unlock()
				if !c.noPong {
					c.send(MsgPong, nil)
				}
				continue
			}
			c.msgs <- m
		}
	}
}

func (c *rawClient) writeFrame(op ws.OpCode, p []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := wsutil.WriteClientMessage(c.nc, op, p); err != nil && !errors.Is(err, net.ErrClosed) {
		c.t.Logf("client write: %v", err)
	}
}

func (c *rawClient) sendRaw(s string) { c.writeFrame(ws.OpText, []byte(s)) }

func (c *rawClient) send(name string, payload any) {
	b, err := json.Marshal(map[string]any{"message": name, "data": []any{payload}})
	if err != nil {
		c.t.Fatal(err)
	}
	c.writeFrame(ws.OpText, b)
}

// next returns the next non-ping message.
func (c *rawClient) next() Message {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("connection closed while waiting for a message")
		}
		return m
	case <-time.After(waitTimeout):
		c.t.Fatalf("timeout waiting for a message")
	}
	return Message{}
}

// expect returns the payload of the next message, which must be called name.
func (c *rawClient) expect(name string) map[string]any {
	c.t.Helper()
	m := c.next()
	if m.Name != name {
		c.t.Fatalf("got message %q %s, want %q", m.Name, m.Data, name)
	}
	var v map[string]any
	if p := m.Payload(); p != nil {
		if err := json.Unmarshal(p, &v); err != nil {
			c.t.Fatalf("%s payload: %v", name, err)
		}
	}
	return v
}

// expectStatus reads the next notifyStreamStatusEvent and checks id, status and info.
func (c *rawClient) expectStatus(id, status, info string) map[string]any {
	c.t.Helper()
	v := c.expect(MsgNotifyStreamStatusEvent)
	if v["mediaSessionId"] != id || v["status"] != status || v["info"] != info {
		c.t.Fatalf("status event %v, want id=%s status=%s info=%q", v, id, status, info)
	}
	return v
}

// expectSDP reads setRemoteSDP and checks the positional [id, sdp] form.
func (c *rawClient) expectSDP(id string) string {
	c.t.Helper()
	m := c.next()
	if m.Name != MsgSetRemoteSDP || len(m.Data) != 2 {
		c.t.Fatalf("got %q %s, want positional setRemoteSDP", m.Name, m.Data)
	}
	var gotID, sdp string
	if json.Unmarshal(m.Data[0], &gotID) != nil || json.Unmarshal(m.Data[1], &sdp) != nil || gotID != id {
		c.t.Fatalf("setRemoteSDP data %s, want [%q, sdp]", m.Data, id)
	}
	return sdp
}

// expectClosed waits for the server's close frame.
func (c *rawClient) expectClosed() ws.StatusCode {
	c.t.Helper()
	select {
	case code := <-c.closed:
		return code
	case <-time.After(waitTimeout):
		c.t.Fatalf("server did not close the connection")
	}
	return 0
}

// quiet asserts no message arrives within d.
func (c *rawClient) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if ok {
			c.t.Fatalf("unexpected message %q %s", m.Name, m.Data)
		}
	case <-time.After(d):
	}
}

func (c *rawClient) handshake() map[string]any {
	c.t.Helper()
	c.send(MsgConnection, map[string]any{"appKey": "defaultApp", "mediaProviders": []string{"WebRTC", "MSE"}, "clientVersion": "2.0", "custom": map[string]any{"k": "v"}})
	return c.expect(MsgGetUserData)
}

func (c *rawClient) publish(id, name, sdp string) {
	c.send(MsgPublishStream, map[string]any{"mediaSessionId": id, "name": name, "published": true, "hasVideo": true, "hasAudio": true, "status": "PENDING", "record": false, "mediaProvider": "WebRTC", "sdp": sdp, "bitrate": 0})
}

func (c *rawClient) play(id, name, sdp string) {
	c.send(MsgPlayStream, map[string]any{"mediaSessionId": id, "name": name, "published": false, "hasVideo": true, "hasAudio": true, "status": "PENDING", "record": false, "width": 0, "height": 0, "mediaProvider": "WebRTC", "sdp": sdp, "quality": 0})
}

// waitFor polls cond (state changed by other goroutines without an event to wait on).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func contextWithTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), waitTimeout)
}

func wrap(err error) error { return fmt.Errorf("context: %w", err) }

func contextDeadline() error {
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-ctx.Done()
	return ctx.Err()
}
