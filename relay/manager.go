// Package relay runs relay agents: a push publishes a local stream to another server, a pull plays a stream
// of another server and publishes it here. An agent is an ordinary client of the remote's WCS WebSocket
// protocol (wcs-protocol.md §7.2) with an outbound media session from the Engine.
//
// Status and retry policy:
//   - NEW: created, the first attempt has not started yet (remoteMediaSessionId null).
//   - PENDING: connecting and negotiating (a new remoteMediaSessionId per attempt).
//   - PROCESSED_REMOTE: the remote reported PUBLISHING/PLAYING and ICE+DTLS are up; media flows.
//   - FAILED: the last attempt failed; info says why (connection refused, handshake, the remote's FAILED
//     info such as "Stream not found", ICE/DTLS deadline, relay loop, local stream ended).
//
// Every failed or lost attempt is retried with backoff (RetryInitial, doubling, capped at RetryMax). While
// retrying after a failure the status stays FAILED (with the latest info) until an attempt succeeds, so a
// push to a closed port shows FAILED after the first refused dial. An agent that was established at least
// once retries until terminated (or, for a push, until its local stream ends); when it loses its remote it
// shows PENDING until the next attempt succeeds or fails. An agent that was never established gives up after
// RetryFailed. An agent that stopped (gave up, or its pushed stream ended) stays listed as FAILED for
// FailedTTL and is then removed. Each new attempt after the first counts in reconnects. An agent whose connect
// the target policy refuses (Config.Targets) stops at once, FAILED with the reason.
package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rtcrelay/rtcrelay/media"
	"github.com/rtcrelay/rtcrelay/netguard"
	"github.com/rtcrelay/rtcrelay/signaling"
)

// Config configures a Manager. The zero value of every duration picks its default.
type Config struct {
	Engine   Engine
	Dial     DialFunc
	ServerID string // this server's ID in relay paths (loop detection)

	AllowHosts []string       // relay hosts allowed in uris ("host" or "host:port"); empty = any
	AgentTLS   bool           // wcs_agent_ssl: allow wss:// uris
	RootCAs    *x509.CertPool // trust roots for wss:// (nil = system roots)

	AttemptTimeout time.Duration // one attempt: dial + handshake + answer + ICE/DTLS + PUBLISHING (default 10 s)
	NoMediaTimeout time.Duration // established, nothing received from the remote for this long → reconnect (default 10 s; <0 disables)
	RetryInitial   time.Duration // first retry delay (default 250 ms)
	RetryMax       time.Duration // backoff cap (default 500 ms: a relay link that comes back is used within half a second)
	RetryFailed    time.Duration // how long a never-established agent keeps retrying (default 30 s; <0 = no retry)
	FailedTTL      time.Duration // how long a stopped FAILED agent stays listed (default 60 s)
	StopWait       time.Duration // terminate: how long to wait for the remote's terminal status (default 1 s)

	// Probe, when set, asks the server at uri for its server ID (getUserData "serverId"). A push of a stream
	// that arrived here through relays probes its target first, so that a loop (A → B → A) is refused at once
	// with ErrLoop (409) rather than failing later at the remote.
	Probe ProbeFunc

	// Targets, when set, is the IP policy of relay targets: Push and Pull refuse a uri whose host it forbids
	// (ErrBadRequest). Give the same policy to the dialers (WCSDialer, WHIPDialer), which check the address
	// actually connected to; an agent whose connect is refused fails at once with the reason.
	Targets *netguard.Policy

	Logger *slog.Logger
}

// ProbeFunc returns the server ID of the server at uri ("" when it does not tell).
type ProbeFunc func(ctx context.Context, uri string, tlsConfig *tls.Config) (string, error)

// probeTimeout bounds the synchronous loop probe of a push; an unreachable remote is not a loop.
const probeTimeout = 2 * time.Second

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.AttemptTimeout, 10*time.Second)
	def(&c.NoMediaTimeout, 10*time.Second)
	def(&c.RetryInitial, 250*time.Millisecond)
	def(&c.RetryMax, 500*time.Millisecond)
	def(&c.RetryFailed, 30*time.Second)
	def(&c.FailedTTL, 60*time.Second)
	def(&c.StopWait, time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Spec is what /pull/push and /pull/pull ask for.
type Spec struct {
	URI              string `json:"uri"`
	LocalStreamName  string `json:"localStreamName"`
	RemoteStreamName string `json:"remoteStreamName"`
	// AppKey is the appKey the agent presents in its connection message (the remote's REST hooks pick their
	// app by it); default "defaultApp".
	AppKey string `json:"appKey,omitempty"`
}

// Direction of an agent.
type Direction string

// Directions.
const (
	DirectionPush Direction = "push"
	DirectionPull Direction = "pull"
)

// Statuses of an agent.
const (
	StatusNew             = "NEW"
	StatusPending         = "PENDING"
	StatusProcessedRemote = "PROCESSED_REMOTE"
	StatusFailed          = "FAILED"
)

// AgentInfo is the agent object of /pull/find and /pull/find_all.
type AgentInfo struct {
	LocalMediaSessionID  string    `json:"localMediaSessionId"`
	RemoteMediaSessionID *string   `json:"remoteMediaSessionId"` // null until the first attempt
	LocalStreamName      string    `json:"localStreamName"`
	RemoteStreamName     string    `json:"remoteStreamName"`
	URI                  string    `json:"uri"`
	Status               string    `json:"status"`
	Direction            Direction `json:"direction"`
	Info                 string    `json:"info"`
	Reconnects           uint64    `json:"reconnects"`
	Packets              uint64    `json:"packets"`
	Bytes                uint64    `json:"bytes"`
	Bitrate              float64   `json:"bitrate"`
	RTTMs                float64   `json:"rttMs"`
	PacketsLost          uint64    `json:"packetsLost"`      // push: lost as the remote reports it
	Since                time.Time `json:"since"`            // when the status last changed (RFC 3339)
	Origin               string    `json:"origin,omitempty"` // "directory": an on-demand edge pull; absent: REST
}

// Filter selects agents; empty fields match anything, set fields are ANDed. URI is compared normalized.
type Filter struct {
	LocalMediaSessionID  string    `json:"localMediaSessionId"`
	RemoteMediaSessionID string    `json:"remoteMediaSessionId"`
	LocalStreamName      string    `json:"localStreamName"`
	RemoteStreamName     string    `json:"remoteStreamName"`
	URI                  string    `json:"uri"`
	Status               string    `json:"status"`
	Direction            Direction `json:"direction"`
}

// Manager owns all relay agents. Its control path (create, find, terminate) is guarded by one mutex.
type Manager struct {
	cfg Config
	tls *tls.Config
	log *slog.Logger

	mu     sync.Mutex
	agents map[string]*agent // by localMediaSessionId
	order  []string          // creation order for stable listings
	closed bool
	wg     sync.WaitGroup
}

// NewManager returns a Manager; cfg.Engine and cfg.Dial are required.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Engine == nil || cfg.Dial == nil {
		return nil, fmt.Errorf("relay: Config.Engine and Config.Dial are required")
	}
	cfg.defaults()
	m := &Manager{
		cfg:    cfg,
		log:    cfg.Logger,
		agents: map[string]*agent{},
		tls:    &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
	}
	return m, nil
}

// Push creates an agent that publishes local stream spec.LocalStreamName at spec.URI as
// spec.RemoteStreamName. It returns once the agent exists; the agent connects asynchronously.
func (m *Manager) Push(ctx context.Context, spec Spec) (AgentInfo, error) {
	if err := m.checkTarget(ctx, spec.URI); err != nil {
		return AgentInfo{}, err
	}
	return m.start(spec, DirectionPush, nil)
}

// checkTarget refuses a uri whose host the target policy forbids (a literal address, a non-standard IPv4
// spelling, or a name that resolves to a forbidden address) with ErrBadRequest and the reason. The agents'
// dialer checks again at connect time.
func (m *Manager) checkTarget(ctx context.Context, uri string) error {
	if m.cfg.Targets == nil {
		return nil
	}
	u, err := url.Parse(uri)
	if err != nil || u.Hostname() == "" {
		return nil // checkURI says what is wrong with it
	}
	if err := m.cfg.Targets.CheckHost(ctx, u.Hostname()); err != nil {
		return fmt.Errorf("%w: uri %q: %w", ErrBadRequest, uri, err)
	}
	return nil
}

// Pull creates an agent that plays spec.RemoteStreamName at spec.URI and publishes it here as
// spec.LocalStreamName.
func (m *Manager) Pull(ctx context.Context, spec Spec) (AgentInfo, error) {
	if err := m.checkTarget(ctx, spec.URI); err != nil {
		return AgentInfo{}, err
	}
	return m.start(spec, DirectionPull, nil)
}

// origin says who started an agent and how it finds its remote.
type origin struct {
	name    string                                    // "directory" for on-demand edge pulls; "" for REST
	resolve func(ctx context.Context) (string, error) // looks the remote's uri up again before each attempt
}

func (m *Manager) start(spec Spec, dir Direction, org *origin) (AgentInfo, error) {
	if spec.LocalStreamName == "" || spec.RemoteStreamName == "" {
		return AgentInfo{}, fmt.Errorf("%w: localStreamName and remoteStreamName are required", ErrBadRequest)
	}
	if err := media.CheckName(spec.LocalStreamName); err != nil {
		return AgentInfo{}, fmt.Errorf("%w: localStreamName: %w", ErrBadRequest, err)
	}
	if err := media.CheckName(spec.RemoteStreamName); err != nil {
		return AgentInfo{}, fmt.Errorf("%w: remoteStreamName: %w", ErrBadRequest, err)
	}
	norm, err := checkURI(spec.URI, m.cfg.AgentTLS, m.cfg.AllowHosts)
	if err != nil {
		return AgentInfo{}, err
	}
	var path []string
	switch dir {
	case DirectionPush:
		if !m.cfg.Engine.HasStream(spec.LocalStreamName) {
			return AgentInfo{}, fmt.Errorf("%w: stream %q is not published here", ErrNotFound, spec.LocalStreamName)
		}
		path = m.cfg.Engine.StreamPath(spec.LocalStreamName)
		if m.cfg.ServerID != "" && slices.Contains(path, m.cfg.ServerID) {
			return AgentInfo{}, fmt.Errorf("%w: stream %q already passed through this server (%v)", ErrLoop, spec.LocalStreamName, path)
		}
		if len(path) > 0 && m.cfg.Probe != nil {
			if err := m.probeLoop(spec.URI, path); err != nil {
				return AgentInfo{}, err
			}
		}
		path = append(slices.Clone(path), m.cfg.ServerID)
	case DirectionPull:
		path = []string{m.cfg.ServerID}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return AgentInfo{}, ErrClosed
	}
	for _, id := range m.order {
		o := m.agents[id]
		o.mu.Lock() // a resolving agent's uri changes under its lock
		same := o.dir == dir && o.norm == norm && o.spec.LocalStreamName == spec.LocalStreamName &&
			o.spec.RemoteStreamName == spec.RemoteStreamName
		o.mu.Unlock()
		localClash := dir == DirectionPull && o.dir == DirectionPull && o.spec.LocalStreamName == spec.LocalStreamName
		if !same && !localClash {
			continue
		}
		if o.stopped() { // a lingering FAILED agent does not block a new one: replace it
			m.removeLocked(id)
			continue
		}
		if same {
			return AgentInfo{}, fmt.Errorf("%w: agent %s already relays %q to %s", ErrConflict, id, spec.LocalStreamName, spec.URI)
		}
		return AgentInfo{}, fmt.Errorf("%w: pull agent %s already publishes %q here", ErrConflict, id, spec.LocalStreamName)
	}
	if dir == DirectionPull && m.cfg.Engine.HasStream(spec.LocalStreamName) {
		return AgentInfo{}, fmt.Errorf("%w: stream %q is already published here", ErrConflict, spec.LocalStreamName)
	}
	a := newAgent(m, spec, dir, norm, signaling.PathCustom(path))
	if org != nil {
		a.origin, a.resolve = org.name, org.resolve
	}
	m.agents[a.localID] = a
	m.order = append(m.order, a.localID)
	ai := a.info() // NEW, before the goroutine can move it on
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		a.run()
	}()
	m.log.Info("relay agent created", "agent", a.localID, "direction", dir, "uri", spec.URI,
		"local", spec.LocalStreamName, "remote", spec.RemoteStreamName)
	return ai, nil
}

// probeLoop refuses a push whose target server is already on the stream's relay path.
func (m *Manager) probeLoop(uri string, path []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var tlsConf *tls.Config
	if l := strings.ToLower(uri); strings.HasPrefix(l, "wss:") || strings.HasPrefix(l, "https:") {
		tlsConf = m.tls.Clone()
	}
	id, err := m.cfg.Probe(ctx, uri, tlsConf)
	if err != nil {
		m.log.Debug("loop probe failed; the agent will find out", "uri", uri, "err", err)
		return nil
	}
	if id != "" && slices.Contains(path, id) {
		return fmt.Errorf("%w: the stream already passed through the server at %s (%s, path %v)", ErrLoop, uri, id, path)
	}
	return nil
}

// FindAll lists every agent in creation order.
func (m *Manager) FindAll() []AgentInfo { return m.Find(Filter{}) }

// Find lists the agents matching f (never nil).
func (m *Manager) Find(f Filter) []AgentInfo {
	out := []AgentInfo{}
	for _, a := range m.match(f) {
		out = append(out, a.info())
	}
	return out
}

func (m *Manager) match(f Filter) []*agent {
	normURI := ""
	if f.URI != "" {
		n, err := checkURI(f.URI, true, nil)
		if err != nil {
			normURI = "\x00invalid" // matches nothing
		} else {
			normURI = n
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*agent
	for _, id := range m.order {
		a := m.agents[id]
		if a.matches(f, normURI) {
			out = append(out, a)
		}
	}
	return out
}

// Terminate stops and removes the agents matching f: each sends unPublishStream/stopStream, waits briefly for
// the remote's terminal status and closes. It returns how many were stopped, or ErrNotFound for none.
func (m *Manager) Terminate(f Filter) (int, error) {
	found := m.match(f)
	if len(found) == 0 {
		return 0, fmt.Errorf("%w: no relay agent matches", ErrNotFound)
	}
	m.mu.Lock()
	for _, a := range found {
		m.removeLocked(a.localID)
	}
	m.mu.Unlock()
	for _, a := range found {
		a.cancel(ErrTerminated)
	}
	for _, a := range found {
		<-a.done
	}
	return len(found), nil
}

// Close terminates every agent and waits for their goroutines.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	all := make([]*agent, 0, len(m.agents))
	for _, id := range m.order {
		all = append(all, m.agents[id])
	}
	m.agents = map[string]*agent{}
	m.order = nil
	m.mu.Unlock()
	for _, a := range all {
		a.cancel(ErrClosed)
	}
	m.wg.Wait()
	return nil
}

func (m *Manager) removeLocked(id string) {
	if _, ok := m.agents[id]; !ok {
		return
	}
	delete(m.agents, id)
	m.order = slices.DeleteFunc(m.order, func(s string) bool { return s == id })
}

// expire removes a stopped agent after FailedTTL unless it was already removed or replaced.
func (m *Manager) expire(a *agent) {
	time.AfterFunc(m.cfg.FailedTTL, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.agents[a.localID] == a {
			m.removeLocked(a.localID)
		}
	})
}
