package relay

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtcrelay/rtcrelay/media"
)

// LookupFunc finds the server that publishes stream name in the cluster's directory: its WCS WebSocket URI and
// how many relay hops the stream took to get there (0: a browser publishes it there). ok is false when no other
// server publishes it.
type LookupFunc func(ctx context.Context, name string) (uri string, hops int, ok bool, err error)

// EdgeConfig configures on-demand edge pulls.
type EdgeConfig struct {
	Lookup       LookupFunc
	IdleTimeout  time.Duration // a pull with no players ends after this (default 30 s)
	MaxHops      int           // a stream is pulled only while its relay path is shorter than this (default 4)
	ReadyTimeout time.Duration // how long the first player waits for the pull's media (default 10 s)
	// LostTimeout is how long a pull that lost its origin (and finds no new one in the directory) keeps its
	// players waiting before the stream ends for them (default 15 s).
	LostTimeout time.Duration
}

// ErrNotInDirectory is returned by Acquire for a name that no server publishes (or when the directory cannot be
// asked). It wraps media.ErrNotFound: the player gets "Stream not found".
var ErrNotInDirectory = fmt.Errorf("relay: stream not in the directory: %w", media.ErrNotFound)

// EdgeStats are the edge's counters.
type EdgeStats struct {
	PullsStarted, PullsEnded uint64
	Active                   int
}

// Edge starts a pull from the stream's owner when a player asks for a stream that is not published here but is
// in the directory: several players of one name share one pull, which ends IdleTimeout after its last player.
// Edge pulls are ordinary pull agents (listed by find_all with origin "directory") that look the origin up again
// before every reconnect, so they follow a stream that moved to another origin.
type Edge struct {
	m   *Manager
	cfg EdgeConfig
	log *slog.Logger

	mu    sync.Mutex
	pulls map[string]*edgePull

	started, ended atomic.Uint64
}

type edgePull struct {
	name    string
	agent   string // local media session id of the pull agent
	refs    int
	idle    *time.Timer
	ready   chan struct{} // closed once the first attempt succeeded or failed
	err     error         // why it failed (set before ready closes)
	stopped bool
	done    chan struct{} // closed by stop
}

// NewEdge makes on-demand pulls on m.
func NewEdge(m *Manager, cfg EdgeConfig) *Edge {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.MaxHops <= 0 {
		cfg.MaxHops = 4
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	if cfg.LostTimeout <= 0 {
		cfg.LostTimeout = 15 * time.Second
	}
	return &Edge{m: m, cfg: cfg, log: m.log.With("component", "edge"), pulls: map[string]*edgePull{}}
}

// Acquire makes sure stream name can be played here for a player whose relay path is path: it returns at once
// for a local stream, joins the running edge pull of the name, or starts one from the owner found in the
// directory and waits until its media flows (or ctx ends). release must be called once when the player ends.
// A name that no server publishes gives ErrNotInDirectory (the player then gets "Stream not found").
func (e *Edge) Acquire(ctx context.Context, name string, path []string) (release func(), err error) {
	e.mu.Lock()
	p := e.pulls[name]
	if p == nil && e.m.cfg.Engine.HasStream(name) {
		e.mu.Unlock()
		return func() {}, nil
	}
	if p == nil {
		e.mu.Unlock()
		if len(path)+1 >= e.cfg.MaxHops {
			return nil, fmt.Errorf("%w: %q: the relay path %v reached the hop limit %d", media.ErrRestricted, name, path, e.cfg.MaxHops)
		}
		uri, hops, ok, err := e.cfg.Lookup(ctx, name)
		switch {
		case err != nil:
			return nil, fmt.Errorf("%w: %q: directory: %w", ErrNotInDirectory, name, err)
		case !ok:
			return nil, fmt.Errorf("%w: %q", ErrNotInDirectory, name)
		case hops+1 >= e.cfg.MaxHops:
			return nil, fmt.Errorf("%w: %q is %d hops away, the limit is %d", media.ErrRestricted, name, hops, e.cfg.MaxHops)
		}
		e.mu.Lock()
		if p = e.pulls[name]; p == nil {
			if e.m.cfg.Engine.HasStream(name) { // published here meanwhile
				e.mu.Unlock()
				return func() {}, nil
			}
			p, err = e.startLocked(name, uri)
			if err != nil {
				e.mu.Unlock()
				return nil, err
			}
		}
	}
	p.refs++
	if p.idle != nil {
		p.idle.Stop()
		p.idle = nil
	}
	e.mu.Unlock()

	var once sync.Once
	release = func() { once.Do(func() { e.release(p) }) }
	select {
	case <-p.ready:
	case <-ctx.Done():
		release()
		return nil, context.Cause(ctx)
	}
	if p.err != nil {
		release()
		return nil, p.err
	}
	return release, nil
}

// startLocked starts the pull agent of name from uri (under e.mu).
func (e *Edge) startLocked(name, uri string) (*edgePull, error) {
	resolve := func(ctx context.Context) (string, error) {
		u, _, ok, err := e.cfg.Lookup(ctx, name)
		switch {
		case err != nil:
			return "", fmt.Errorf("directory: %w", err)
		case !ok:
			return "", fmt.Errorf("%w: %q", ErrNotInDirectory, name)
		}
		return u, nil
	}
	ai, err := e.m.start(Spec{URI: uri, LocalStreamName: name, RemoteStreamName: name}, DirectionPull,
		&origin{name: "directory", resolve: resolve})
	if err != nil {
		return nil, fmt.Errorf("edge pull %q from %s: %w", name, uri, err)
	}
	p := &edgePull{name: name, agent: ai.LocalMediaSessionID, ready: make(chan struct{}), done: make(chan struct{})}
	e.pulls[name] = p
	e.started.Add(1)
	e.log.Info("edge pull started", "stream", name, "origin", uri, "agent", p.agent)
	go e.watch(p)
	return p, nil
}

// watch follows one edge pull: ready when media flows, the end when the agent stopped or lost its origin for
// longer than LostTimeout.
func (e *Edge) watch(p *edgePull) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.ReadyTimeout)
	_, err := e.m.Wait(ctx, p.agent, func(ai AgentInfo) bool { return ai.Status == StatusProcessedRemote })
	cancel()
	if err != nil {
		p.err = fmt.Errorf("%w: edge pull of %q: %w", media.ErrNotFound, p.name, err)
		close(p.ready)
		e.stop(p, "no media from the origin")
		return
	}
	close(p.ready)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lostSince time.Time
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
		e.mu.Lock()
		gone := e.pulls[p.name] != p
		e.mu.Unlock()
		if gone {
			return
		}
		ai := e.m.Find(Filter{LocalMediaSessionID: p.agent})
		if len(ai) == 0 || ai[0].Status == StatusFailed && e.agentDone(p.agent) {
			e.stop(p, "the pull agent stopped")
			return
		}
		if ai[0].Status == StatusProcessedRemote {
			lostSince = time.Time{}
			continue
		}
		if lostSince.IsZero() {
			lostSince = time.Now()
		} else if time.Since(lostSince) > e.cfg.LostTimeout {
			e.stop(p, "the origin is gone and no other server publishes the stream")
			return
		}
	}
}

func (e *Edge) agentDone(id string) bool {
	e.m.mu.Lock()
	a := e.m.agents[id]
	e.m.mu.Unlock()
	return a == nil || a.stopped()
}

func (e *Edge) release(p *edgePull) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p.refs--
	if p.refs > 0 || p.stopped || e.pulls[p.name] != p {
		return
	}
	p.idle = time.AfterFunc(e.cfg.IdleTimeout, func() {
		e.mu.Lock()
		idle := p.refs == 0 && e.pulls[p.name] == p
		e.mu.Unlock()
		if idle {
			e.stop(p, "no players")
		}
	})
}

// stop ends an edge pull (its local stream ends with it).
func (e *Edge) stop(p *edgePull, why string) {
	e.mu.Lock()
	if p.stopped {
		e.mu.Unlock()
		return
	}
	p.stopped = true
	close(p.done)
	if e.pulls[p.name] == p {
		delete(e.pulls, p.name)
	}
	if p.idle != nil {
		p.idle.Stop()
	}
	e.mu.Unlock()
	e.ended.Add(1)
	e.log.Info("edge pull ended", "stream", p.name, "agent", p.agent, "why", why)
	_, _ = e.m.Terminate(Filter{LocalMediaSessionID: p.agent})
}

// Stats reads the counters.
func (e *Edge) Stats() EdgeStats {
	e.mu.Lock()
	n := len(e.pulls)
	e.mu.Unlock()
	return EdgeStats{PullsStarted: e.started.Load(), PullsEnded: e.ended.Load(), Active: n}
}

// Close ends every edge pull (their local streams end) and stops their watchers.
func (e *Edge) Close() {
	e.mu.Lock()
	pulls := make([]*edgePull, 0, len(e.pulls))
	for _, p := range e.pulls {
		pulls = append(pulls, p)
	}
	e.mu.Unlock()
	for _, p := range pulls {
		e.stop(p, "server shutdown")
	}
}
