package signaling

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/rtcrelay/rtcrelay/limits"
	"github.com/rtcrelay/rtcrelay/relayauth"
)

// ServerConfig configures a Server. The zero value of every field has a
// usable default.
type ServerConfig struct {
	Engine         Engine
	Logger         *slog.Logger
	PingInterval   time.Duration // server ping period; default 5 s
	MaxMissedPongs int           // close after this many unanswered pings; default 10
	MaxMessageSize int64         // largest accepted message; default 1 MiB
	WriteTimeout   time.Duration // one frame write; default 10 s
	ReadyTimeout   time.Duration // publish/play until ICE+DTLS are up; default 30 s
	QueueSize      int           // outbound frames per connection; default 256
	// ServerID, when set, is sent as "serverId" in getUserData (an addition the Web SDK ignores), so that relay
	// agents can tell which server they reached and refuse relay loops before they start.
	ServerID string
	// Edge, when set, is asked before every playStream: it may start an on-demand pull of a stream that another
	// server of the cluster publishes (relay.Edge) and wait until it flows here.
	Edge Edge
	// Authorizer, when set, is asked before a session is established and before every publish and play (WCS
	// REST hooks: resthook.Hooks implements it) and told of status changes; nil allows everything.
	Authorizer Authorizer
	// ConnLimit, when set, is asked for every WebSocket upgrade (Acquire, by client IP; Release when the
	// session ends): a refusal answers 429 before the upgrade. PublishLimit is asked (Allow) for every
	// publishStream: a refusal fails it with InfoTooMany. *limits.Limiter implements both.
	ConnLimit, PublishLimit Limiter
	// HandshakeTimeout closes a session that has not sent `connection` within it; default 10 s.
	HandshakeTimeout time.Duration
	// RelayAuth, when set, verifies the relay token a `connection` presents (custom.rtcrelayAuth, see
	// relayauth). A connection with a valid token is a relay of the signing server: its relay path is trusted,
	// the Authorizer and PublishLimit do not apply to it, and every publish/play SDP it sends must carry the
	// signed DTLS fingerprint. The relay path of every other connection is ignored (an ordinary client).
	RelayAuth *relayauth.Verifier
	// RelayRequireAuth (with RelayAuth) refuses a `connection` with an invalid token, and a publish/play that
	// carries a relay path from a connection without a valid one, each with a "Relay authentication ..." info.
	RelayRequireAuth bool
}

// Limiter is a per-client-address budget (limits.Limiter).
type Limiter interface {
	Allow(netip.Addr) error
	Acquire(netip.Addr) error
	Release(netip.Addr)
}

// remoteIP is the address part of an http.Request.RemoteAddr or a conn's remote ("" → invalid).
func remoteIP(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Authorizer is an application backend (WCS REST hooks). Call runs a direct invocation (connect, publishStream,
// playStream) for the connection's appKey and returns the request's fields to go on with (the backend may have
// replaced "custom"), or an error wrapping media.ErrRestricted (an error with a Reason() string gives the info
// the client sees). Notify sends an event (StreamStatusEvent, ConnectionStatusEvent, unPublishStream,
// stopStream) without blocking. An unknown appKey makes Call fail.
type Authorizer interface {
	Call(ctx context.Context, appKey, method string, body map[string]json.RawMessage) (map[string]json.RawMessage, error)
	Notify(appKey, method string, body map[string]json.RawMessage)
}

// defaultAppKey is the Web SDK's appKey, used for connections that send none.
const defaultAppKey = "defaultApp"

// Edge makes remote streams playable here on demand (relay.Edge implements it). Acquire returns at once for a
// local stream; for a name that no server publishes it returns an error, after which the play goes on and fails
// with "Stream not found". release is called once when the player ends.
type Edge interface {
	Acquire(ctx context.Context, name string, path []string) (release func(), err error)
}

func (c *ServerConfig) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 5 * time.Second
	}
	if c.MaxMissedPongs <= 0 {
		c.MaxMissedPongs = 10
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 1 << 20
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 30 * time.Second
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 256
	}
}

// ServerStats are counters of the server's lifetime.
type ServerStats struct {
	Accepted, Active                    int64
	Malformed, Binary, Oversized        uint64
	Unknown, QueueOverflows, MissedPong uint64
	BadNames                            uint64 // publish/play refused by the stream name rule
	Limited                             uint64 // upgrades and publishes refused by the per-IP limits
	HandshakeTimeouts                   uint64 // sessions closed for sending no `connection` in time
	BadClosed                           uint64 // sessions closed after too many malformed messages
	RelaysAuthenticated                 uint64 // connections that presented a valid relay token
	RelayAuthFailures                   uint64 // invalid relay tokens, and relay paths refused for want of one
}

// Server is the WCS WebSocket endpoint for browsers. It is an http.Handler
// that upgrades on any path; serve it over TLS with the caller's listener for wss.
type Server struct {
	cfg ServerConfig
	log *slog.Logger

	// mu guards all control-plane state below and every conn's streams and
	// every stream's state: one owner for the control plane.
	mu         sync.Mutex
	conns      map[string]*conn
	players    map[string]map[*stream]struct{} // stream name → answered players
	publishers map[string]*stream              // stream name → answered publisher owning it
	closing    bool
	wg         sync.WaitGroup // connection goroutines
	streamsWG  sync.WaitGroup // per-stream goroutines

	accepted                              atomic.Int64
	malformed, binary, oversized, unknown atomic.Uint64
	badNames, limited, handshakeTimeouts  atomic.Uint64
	badClosed                             atomic.Uint64
	relaysAuthed, relayAuthFailures       atomic.Uint64
	overflows, missedPong                 atomic.Uint64
}

// NewServer returns a Server; cfg.Engine is required.
func NewServer(cfg ServerConfig) *Server {
	cfg.defaults()
	return &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		conns:      map[string]*conn{},
		players:    map[string]map[*stream]struct{}{},
		publishers: map[string]*stream{},
	}
}

var _ http.Handler = (*Server)(nil)

// ServeHTTP upgrades the request to a WebSocket (any path, no subprotocol)
// and serves the session until the socket closes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	ip := remoteIP(r.RemoteAddr)
	release := func() {}
	if l := s.cfg.ConnLimit; l != nil {
		if err := l.Acquire(ip); err != nil {
			s.limited.Add(1)
			s.log.Info("websocket refused", "remote", r.RemoteAddr, "err", err)
			if le, ok := errors.AsType[*limits.Error](err); ok && le.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(le.RetryAfter/time.Second)+1))
			}
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		}
		release = func() { l.Release(ip) }
	}
	nc, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		release()
		s.log.Debug("websocket upgrade", "remote", r.RemoteAddr, "err", err)
		return
	}
	_ = nc.SetDeadline(time.Time{}) // the HTTP server's read/write timeouts do not apply to a WebSocket session
	local := ""
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = a.String()
	} else if a := nc.LocalAddr(); a != nil {
		local = a.String()
	}
	c := s.newConn(nc, hijackedReader(nc, rw.Reader), r.RemoteAddr, local)
	if c == nil {
		release()
		_ = nc.Close()
		return
	}
	c.release = release
	s.accepted.Add(1)
	// The connection gets a goroutine of its own, and this handler returns: net/http then lets go of its state
	// for the hijacked connection (its 4 KB write buffer, the request), which it keeps until the handler returns.
	go c.run()
}

// wsReadBuffer is the read buffer of a WebSocket session: frame headers and small messages in one read.
const wsReadBuffer = 512

// hijackedReader is what the session reads from: the bytes net/http had already buffered (a frame sent right
// behind the upgrade request), then the socket through a small buffer of its own, so that net/http's 4 KB
// reader is not kept for the life of the connection.
func hijackedReader(nc net.Conn, br *bufio.Reader) io.Reader {
	small := bufio.NewReaderSize(nc, wsReadBuffer)
	if br == nil || br.Buffered() == 0 {
		return small
	}
	pending, _ := br.Peek(br.Buffered())
	return io.MultiReader(bytes.NewReader(bytes.Clone(pending)), small)
}

// newConn registers a connection under a unique session id, or nil when shutting down.
func (s *Server) newConn(nc net.Conn, br readerSource, remote, local string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	id := "/" + remote + "/" + local
	for n := 2; s.conns[id] != nil; n++ {
		id = "/" + remote + "/" + local + "#" + itoa(n)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &conn{
		ctx:     ctx,
		cancel:  cancel,
		srv:     s,
		nc:      nc,
		br:      br,
		id:      id,
		remote:  remote,
		log:     s.log.With("session", id),
		wake:    make(chan struct{}, 1),
		closeCh: make(chan struct{}),
		done:    make(chan struct{}),
		streams: map[string]*stream{},
		created: time.Now(),
	}
	s.conns[id] = c
	s.wg.Add(1)
	return c
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	active := int64(len(s.conns))
	s.mu.Unlock()
	return ServerStats{
		Accepted:            s.accepted.Load(),
		Active:              active,
		Malformed:           s.malformed.Load(),
		Binary:              s.binary.Load(),
		Oversized:           s.oversized.Load(),
		Unknown:             s.unknown.Load(),
		QueueOverflows:      s.overflows.Load(),
		MissedPong:          s.missedPong.Load(),
		BadNames:            s.badNames.Load(),
		Limited:             s.limited.Load(),
		HandshakeTimeouts:   s.handshakeTimeouts.Load(),
		BadClosed:           s.badClosed.Load(),
		RelaysAuthenticated: s.relaysAuthed.Load(),
		RelayAuthFailures:   s.relayAuthFailures.Load(),
	}
}

// ConnectionInfo is a snapshot of one WebSocket session (REST /connection/*).
type ConnectionInfo struct {
	SessionID      string          `json:"sessionId"`
	AppKey         string          `json:"appKey,omitempty"`
	ClientVersion  string          `json:"clientVersion,omitempty"`
	MediaProviders []string        `json:"mediaProviders,omitempty"`
	Custom         json.RawMessage `json:"custom,omitempty"`
	RemoteAddr     string          `json:"remoteAddress"`
	Established    bool            `json:"established"`
	Streams        int             `json:"streams"`
	CreateDate     int64           `json:"createDate"`
}

// Connections returns a snapshot of the open sessions.
func (s *Server) Connections() []ConnectionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ConnectionInfo, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, c.infoLocked())
	}
	return out
}

// Terminate closes the session with that id; its streams end as on a socket
// close. It reports whether the session existed.
func (s *Server) Terminate(sessionID string) bool {
	s.mu.Lock()
	c := s.conns[sessionID]
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.close(ws.StatusNormalClosure, "terminated")
	return true
}

// StreamInfo is a snapshot of one stream (REST /stream/*), with WCS field names.
type StreamInfo struct {
	SessionID      string          `json:"sessionId"`
	AppKey         string          `json:"appKey,omitempty"`
	MediaSessionID string          `json:"mediaSessionId"`
	Name           string          `json:"name"`
	Published      bool            `json:"published"`
	HasAudio       bool            `json:"hasAudio"`
	HasVideo       bool            `json:"hasVideo"`
	Status         string          `json:"status"`
	Info           string          `json:"info,omitempty"`
	MediaProvider  string          `json:"mediaProvider,omitempty"`
	MediaType      string          `json:"mediaType"` // "publish" or "play"
	Custom         json.RawMessage `json:"custom,omitempty"`
	CreateDate     int64           `json:"createDate"`
}

// StreamFilter selects streams; empty fields match everything (all set fields are ANDed).
type StreamFilter struct {
	MediaSessionID  string
	MediaSessionIDs []string
	Name            string
	Published       *bool
	Status          string
	SessionID       string
}

// Match reports whether si passes every set field of f (a nil filter matches everything).
func (f *StreamFilter) Match(si *StreamInfo) bool {
	if f == nil {
		return true
	}
	if f.MediaSessionID != "" && f.MediaSessionID != si.MediaSessionID {
		return false
	}
	if len(f.MediaSessionIDs) > 0 {
		found := false
		for _, id := range f.MediaSessionIDs {
			found = found || id == si.MediaSessionID
		}
		if !found {
			return false
		}
	}
	return (f.Name == "" || f.Name == si.Name) &&
		(f.Published == nil || *f.Published == si.Published) &&
		(f.Status == "" || f.Status == si.Status) &&
		(f.SessionID == "" || f.SessionID == si.SessionID)
}

// Streams returns a snapshot of the live streams matching f (nil = all).
func (s *Server) Streams(f *StreamFilter) []StreamInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StreamInfo
	for _, c := range s.conns {
		for _, st := range c.streams {
			si := st.infoLocked()
			if f == nil || f.Match(&si) {
				out = append(out, si)
			}
		}
	}
	return out
}

// TerminateStream ends the matching streams: publishers get UNPUBLISHED,
// players STOPPED, both with info (default "Stopped by rest /terminate"); the
// players of an ended publisher get FAILED "Stopped by publisher stop". It
// returns how many streams matched.
func (s *Server) TerminateStream(f StreamFilter, info string) int {
	if info == "" {
		info = InfoRESTTerminate
	}
	var cl closers
	s.mu.Lock()
	n := 0
	for _, c := range s.conns {
		for _, st := range c.streams {
			si := st.infoLocked()
			if !f.Match(&si) {
				continue
			}
			n++
			s.endLocked(st, st.stopStatus(), info, fmt.Errorf("%w: %s", ErrRESTTerminate, info), true, &cl)
		}
	}
	s.mu.Unlock()
	cl.run()
	return n
}

// SendStreamEvent relays an event to every player of the named stream as
// notifyStreamEvent (REST /stream/event/send). It returns the number of players.
func (s *Server) SendStreamEvent(name, typ string, payload json.RawMessage) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relayEventLocked(name, typ, payload)
}

// Shutdown sends every stream its terminal status ("Requested stream
// shutdown"), closes every socket (1001 going away), refuses new sessions and
// waits until the connection goroutines have ended or ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	var cl closers
	s.mu.Lock()
	s.closing = true
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	// Players first, so each gets its own STOPPED rather than the
	// "publisher stop" cascade.
	for _, publish := range []bool{false, true} {
		for _, c := range conns {
			for _, st := range c.streams {
				if st.publish == publish {
					s.endLocked(st, st.stopStatus(), InfoRequestedShutdown, ErrShutdown, true, &cl)
				}
			}
		}
	}
	s.mu.Unlock()
	cl.run()
	for _, c := range conns {
		c.close(ws.StatusGoingAway, "server shutdown")
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.streamsWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			_ = c.nc.Close()
		}
		return context.Cause(ctx)
	}
}

// closers collects media sessions to close after the lock is released.
type closers []func()

func (cl *closers) add(f func()) { *cl = append(*cl, f) }
func (cl closers) run() {
	for _, f := range cl {
		f()
	}
}
