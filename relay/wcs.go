package relay

// The WCS adapter: signaling.Client (the WCS WebSocket client) as a Conn, so that relay agents speak the
// protocol browsers speak.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/rtcrelay/rtcrelay/netguard"
	"github.com/rtcrelay/rtcrelay/relayauth"
	"github.com/rtcrelay/rtcrelay/signaling"
)

// statusBuffer is how many statuses of one stream may wait for the agent (it reads them promptly; a full
// buffer drops, and the terminal status is also seen through Done).
const statusBuffer = 16

type appKeyCtx struct{}

// ContextWithAppKey returns ctx carrying the appKey a DialFunc presents ("" leaves the default, "defaultApp").
func ContextWithAppKey(ctx context.Context, appKey string) context.Context {
	if appKey == "" {
		return ctx
	}
	return context.WithValue(ctx, appKeyCtx{}, appKey)
}

// AppKeyFromContext is the appKey ContextWithAppKey put in ctx ("" if none).
func AppKeyFromContext(ctx context.Context) string {
	k, _ := ctx.Value(appKeyCtx{}).(string)
	return k
}

// WCSDialer returns a DialFunc over signaling.Dial; guard, when set, refuses connections to forbidden
// addresses at connect time (whatever the URI's name resolves to then); auth, when set, signs every connection
// (a fresh relay token in the custom object of `connection`). The connection presents the appKey of the dial's
// context (ContextWithAppKey), default "defaultApp".
func WCSDialer(log *slog.Logger, guard *netguard.Policy, auth *relayauth.Signer) DialFunc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return dialWCS(signaling.ClientConfig{Logger: log, NetDial: guardDial(guard)}, auth)
}

// dialTimeout bounds an agent's TCP connect.
const dialTimeout = 10 * time.Second

// guardDial is the TCP dial of relay agents under guard (nil: the default dialer, no check).
func guardDial(guard *netguard.Policy) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if guard == nil {
		return nil
	}
	return guard.Dialer(dialTimeout).DialContext
}

// dialWCS is WCSDialer with the client's configuration (TLS and OnStatus are set per dial).
func dialWCS(cfg signaling.ClientConfig, auth *relayauth.Signer) DialFunc {
	return func(ctx context.Context, uri string, tlsConfig *tls.Config) (Conn, error) {
		a := &wcsConn{subs: map[string]chan StreamStatus{}}
		cfg := cfg
		cfg.TLS, cfg.OnStatus, cfg.AppKey = tlsConfig, a.onStatus, AppKeyFromContext(ctx)
		if auth != nil {
			cfg.Custom = auth.Sign(time.Now()).Custom(cfg.Custom)
		}
		c, err := signaling.Dial(ctx, uri, cfg)
		if err != nil {
			return nil, err
		}
		a.c = c
		go func() {
			<-c.Done()
			a.mu.Lock()
			defer a.mu.Unlock()
			a.closed = true
			for id, ch := range a.subs {
				close(ch)
				delete(a.subs, id)
			}
		}()
		return a, nil
	}
}

// WCSProbe returns a ProbeFunc: it connects to uri, reads the server ID from getUserData ("serverId", sent by
// rtcrelay; "" for servers that do not send one) and disconnects.
func WCSProbe(log *slog.Logger, guard *netguard.Policy) ProbeFunc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, uri string, tlsConfig *tls.Config) (string, error) {
		c, err := signaling.Dial(ctx, uri, signaling.ClientConfig{TLS: tlsConfig, Logger: log, NetDial: guardDial(guard)})
		if err != nil {
			return "", err
		}
		defer c.Close()
		var ud struct {
			ServerID string `json:"serverId"`
		}
		_ = json.Unmarshal(c.UserData(), &ud)
		return ud.ServerID, nil
	}
}

type wcsConn struct {
	c *signaling.Client

	mu     sync.Mutex
	subs   map[string]chan StreamStatus // by mediaSessionId
	closed bool
}

var _ Conn = (*wcsConn)(nil)

// onStatus runs on the client's reader goroutine: route without blocking.
func (a *wcsConn) onStatus(st signaling.StreamStatus) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := a.subs[st.MediaSessionID]
	if ch == nil {
		return
	}
	select {
	case ch <- StreamStatus{Status: st.Status, Info: st.Info}:
	default:
	}
}

func (a *wcsConn) subscribe(id string) chan StreamStatus {
	ch := make(chan StreamStatus, statusBuffer)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		close(ch)
		return ch
	}
	a.subs[id] = ch
	return ch
}

func (a *wcsConn) unsubscribe(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ch, ok := a.subs[id]; ok {
		close(ch)
		delete(a.subs, id)
	}
}

func (a *wcsConn) Publish(ctx context.Context, name, id, offer string, custom json.RawMessage) (string, <-chan StreamStatus, error) {
	ch := a.subscribe(id)
	answer, err := a.c.Publish(ctx, name, id, offer, custom)
	if err != nil {
		a.unsubscribe(id)
		return "", nil, err
	}
	return answer, ch, nil
}

func (a *wcsConn) Play(ctx context.Context, name, id, offer string, custom json.RawMessage) (string, <-chan StreamStatus, error) {
	ch := a.subscribe(id)
	answer, err := a.c.Play(ctx, name, id, offer, custom)
	if err != nil {
		a.unsubscribe(id)
		return "", nil, err
	}
	return answer, ch, nil
}

// Stop sends unPublishStream/stopStream (the client knows which) and waits for the terminal status.
func (a *wcsConn) Stop(ctx context.Context, id string, _ bool) error { return a.c.Stop(ctx, id) }

func (a *wcsConn) Close() error          { return a.c.Close() }
func (a *wcsConn) Done() <-chan struct{} { return a.c.Done() }
