package relay

// The WHIP/WHEP adapter: a relay.Conn over whip.Client, so that push agents publish to a WHIP endpoint and pull
// agents play a WHEP endpoint (http:// or https:// URIs).

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rtcrelay/rtcrelay/netguard"
	"github.com/rtcrelay/rtcrelay/relayauth"
	"github.com/rtcrelay/rtcrelay/signaling"
	"github.com/rtcrelay/rtcrelay/whip"
)

// deleteTimeout bounds the DELETE of a resource left behind by an attempt that ended without Stop.
const deleteTimeout = 2 * time.Second

// IsHTTP reports whether uri is an http:// or https:// (WHIP/WHEP) URI.
func IsHTTP(uri string) bool {
	l := strings.ToLower(uri)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// WHIPDialer returns a DialFunc for http(s):// URIs: the URI is the WHIP (push) or WHEP (pull) endpoint; when
// its path ends with "/", the remote stream name is appended. Dial itself sends nothing: each Publish/Play is
// one POST, Stop and Close DELETE the resource. The agent's relay path goes in whip.PathHeader and, with auth
// set, a fresh relay token in relayauth.Header.
func WHIPDialer(log *slog.Logger, guard *netguard.Policy, auth *relayauth.Signer) DialFunc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(_ context.Context, uri string, tlsConfig *tls.Config) (Conn, error) {
		tr := &http.Transport{TLSClientConfig: tlsConfig, Proxy: nil, DialContext: guardDial(guard)}
		return &whipConn{uri: uri, log: log, tr: tr, auth: auth, hc: &http.Client{Transport: tr}, done: make(chan struct{}),
			sessions: map[string]*whipSession{}}, nil
	}
}

// WHIPProbe returns a ProbeFunc for http(s):// URIs: the server ID from an OPTIONS of the endpoint.
func WHIPProbe(guard *netguard.Policy) ProbeFunc {
	return func(ctx context.Context, uri string, tlsConfig *tls.Config) (string, error) {
		tr := &http.Transport{TLSClientConfig: tlsConfig, Proxy: nil, DialContext: guardDial(guard)}
		defer tr.CloseIdleConnections()
		c := &whip.Client{HTTP: &http.Client{Transport: tr}}
		return c.ServerID(ctx, uri)
	}
}

type whipConn struct {
	uri  string
	auth *relayauth.Signer
	log  *slog.Logger
	tr   *http.Transport
	hc   *http.Client
	done chan struct{}

	mu       sync.Mutex
	sessions map[string]*whipSession // by mediaSessionId
	closed   bool
}

type whipSession struct {
	res       *whip.Resource
	statuses  chan StreamStatus
	published bool
}

var _ Conn = (*whipConn)(nil)

func (c *whipConn) endpoint(name string) string {
	u, err := url.Parse(c.uri)
	if err != nil || !strings.HasSuffix(u.Path, "/") {
		return c.uri
	}
	u.Path += name
	u.RawPath = ""
	return u.String()
}

func (c *whipConn) open(ctx context.Context, name, id, offer string, custom json.RawMessage, published bool) (string, <-chan StreamStatus, error) {
	cl := &whip.Client{HTTP: c.hc, Header: http.Header{}}
	if path := signaling.ParsePath(custom); len(path) > 0 {
		cl.Header.Set(whip.PathHeader, whip.FormatPath(path))
	}
	if c.auth != nil {
		cl.Header.Set(relayauth.Header, c.auth.Sign(time.Now()).Encode())
	}
	res, answer, err := cl.Post(ctx, c.endpoint(name), offer)
	if err != nil {
		if se, ok := errors.AsType[*whip.StatusError](err); ok {
			return "", nil, &RemoteStatusError{Status: "FAILED", Reason: se.Error()}
		}
		return "", nil, err
	}
	st := &whipSession{res: res, statuses: make(chan StreamStatus, statusBuffer), published: published}
	want := "PLAYING"
	if published {
		want = "PUBLISHING"
	}
	st.statuses <- StreamStatus{Status: want}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.deleteQuietly(res)
		return "", nil, errConnClosed
	}
	c.sessions[id] = st
	c.mu.Unlock()
	return answer, st.statuses, nil
}

func (c *whipConn) Publish(ctx context.Context, name, id, offer string, custom json.RawMessage) (string, <-chan StreamStatus, error) {
	return c.open(ctx, name, id, offer, custom, true)
}

func (c *whipConn) Play(ctx context.Context, name, id, offer string, custom json.RawMessage) (string, <-chan StreamStatus, error) {
	return c.open(ctx, name, id, offer, custom, false)
}

// Stop DELETEs the session's resource and reports the terminal status.
func (c *whipConn) Stop(ctx context.Context, id string, _ bool) error {
	c.mu.Lock()
	st := c.sessions[id]
	delete(c.sessions, id)
	c.mu.Unlock()
	if st == nil {
		return nil
	}
	err := st.res.Delete(ctx)
	final := "STOPPED"
	if st.published {
		final = "UNPUBLISHED"
	}
	st.statuses <- StreamStatus{Status: final}
	close(st.statuses)
	return err
}

func (c *whipConn) deleteQuietly(res *whip.Resource) {
	ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
	defer cancel()
	if err := res.Delete(ctx); err != nil {
		c.log.Debug("whip resource delete", "resource", res.URL, "err", err)
	}
}

// Close DELETEs every resource that was not stopped (an attempt that lost its media leaves none behind).
func (c *whipConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	left := c.sessions
	c.sessions = nil
	close(c.done)
	c.mu.Unlock()
	for _, st := range left {
		c.deleteQuietly(st.res)
		close(st.statuses)
	}
	c.tr.CloseIdleConnections()
	return nil
}

func (c *whipConn) Done() <-chan struct{} { return c.done }
