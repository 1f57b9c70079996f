package relay

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/rtcrelay/rtcrelay/media"
	"github.com/rtcrelay/rtcrelay/netguard"
	"github.com/rtcrelay/rtcrelay/relayauth"
)

var (
	errLocalEnded = errors.New("local stream stopped")
	errConnClosed = errors.New("remote connection closed")
	errTimeout    = errors.New("attempt timed out")
)

// RemoteStatusError is a terminal status the remote sent for our stream (FAILED, STOPPED, UNPUBLISHED).
type RemoteStatusError struct {
	Status, Reason string
}

func (e *RemoteStatusError) Error() string {
	if e.Reason == "" {
		return "remote " + e.Status
	}
	return e.Reason
}

// Info is the remote's info text.
func (e *RemoteStatusError) Info() string { return e.Reason }

// Is makes a remote's relay authentication refusal match relayauth.ErrAuth.
func (e *RemoteStatusError) Is(target error) bool {
	return target == relayauth.ErrAuth && relayauth.IsInfo(e.Reason)
}

type agent struct {
	m       *Manager
	spec    Spec
	dir     Direction
	norm    string
	custom  json.RawMessage
	localID string
	log     *slog.Logger
	origin  string                                    // AgentInfo.Origin
	resolve func(ctx context.Context) (string, error) // nil: spec.URI is fixed

	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu          sync.Mutex
	status      string
	infoText    string
	remoteID    string // "" = null
	since       time.Time
	failing     bool // an attempt failed since the agent was last established
	reconnects  uint64
	out         media.Outbound // the current or last outbound session, for stats
	changed     chan struct{}
	established bool // ever
}

func newAgent(m *Manager, spec Spec, dir Direction, norm string, custom json.RawMessage) *agent {
	ctx, cancel := context.WithCancelCause(context.Background())
	id := newUUID()
	return &agent{
		m: m, spec: spec, dir: dir, norm: norm, custom: custom, localID: id,
		log:     m.log.With("agent", id, "direction", string(dir), "uri", spec.URI, "remote", spec.RemoteStreamName),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		status:  StatusNew,
		since:   time.Now(),
		changed: make(chan struct{}),
	}
}

func (a *agent) info() AgentInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	ai := AgentInfo{
		LocalMediaSessionID: a.localID,
		LocalStreamName:     a.spec.LocalStreamName,
		RemoteStreamName:    a.spec.RemoteStreamName,
		URI:                 a.spec.URI,
		Status:              a.status,
		Direction:           a.dir,
		Info:                a.infoText,
		Reconnects:          a.reconnects,
		Since:               a.since,
		Origin:              a.origin,
	}
	if a.remoteID != "" {
		r := a.remoteID
		ai.RemoteMediaSessionID = &r
	}
	if a.out != nil {
		st := a.out.Stats()
		ai.Packets, ai.Bytes, ai.Bitrate, ai.RTTMs, ai.PacketsLost = st.Packets, st.Bytes, st.Bitrate, st.RTTMs, st.Lost
	}
	return ai
}

func (a *agent) matches(f Filter, normURI string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	eq := func(want, have string) bool { return want == "" || want == have }
	return eq(f.LocalMediaSessionID, a.localID) && eq(f.RemoteMediaSessionID, a.remoteID) &&
		eq(f.LocalStreamName, a.spec.LocalStreamName) && eq(f.RemoteStreamName, a.spec.RemoteStreamName) &&
		eq(normURI, a.norm) && (f.Status == "" || strings.EqualFold(f.Status, a.status)) &&
		(f.Direction == "" || strings.EqualFold(string(f.Direction), string(a.dir)))
}

func (a *agent) stopped() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// setLocked changes status/info; call it inside update.
func (a *agent) setLocked(status, info string) {
	if status != a.status {
		a.since = time.Now()
	}
	a.status, a.infoText = status, info
}

// update runs fn under a.mu and wakes Wait callers.
func (a *agent) update(fn func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn()
	close(a.changed)
	a.changed = make(chan struct{})
}

// run is the agent's goroutine: attempts with backoff until terminated, given up, or (push) the local
// stream ended.
func (a *agent) run() {
	defer close(a.done)
	cfg := &a.m.cfg
	var localDone <-chan struct{}
	if a.dir == DirectionPush {
		localDone = cfg.Engine.StreamDone(a.spec.LocalStreamName)
	}
	start := time.Now()
	delay := cfg.RetryInitial
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			a.update(func() { a.reconnects++ })
		}
		established, err := a.attempt(localDone)
		if a.ctx.Err() != nil {
			a.finish()
			a.log.Info("relay agent stopped", "cause", context.Cause(a.ctx))
			return
		}
		if established {
			delay = cfg.RetryInitial
			a.update(func() { a.established = true; a.failing = false; a.setLocked(StatusPending, remoteInfo(err)) })
			a.log.Warn("relay lost its remote, reconnecting", "err", err)
		} else {
			a.update(func() { a.failing = true; a.setLocked(StatusFailed, remoteInfo(err)) })
			a.log.Warn("relay attempt failed", "err", err)
		}
		if isClosed(localDone) {
			a.update(func() { a.setLocked(StatusFailed, errLocalEnded.Error()) })
			a.stop()
			return
		}
		if errors.Is(err, netguard.ErrForbidden) {
			a.log.Warn("relay agent gives up: its target is forbidden", "err", err)
			a.stop()
			return
		}
		if errors.Is(err, relayauth.ErrAuth) {
			a.log.Warn("relay agent gives up: the remote refused its relay authentication", "err", err)
			a.stop()
			return
		}
		a.mu.Lock()
		ever := a.established
		a.mu.Unlock()
		if !ever && (cfg.RetryFailed < 0 || time.Since(start)+delay > cfg.RetryFailed) {
			a.log.Info("relay agent gives up", "after", time.Since(start))
			a.stop()
			return
		}
		t := time.NewTimer(delay)
		select {
		case <-a.ctx.Done():
			t.Stop()
			a.finish()
			return
		case <-localDone:
			t.Stop()
			a.update(func() { a.setLocked(StatusFailed, errLocalEnded.Error()) })
			a.stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, cfg.RetryMax)
	}
}

// stop ends a failed agent that stays listed for FailedTTL.
func (a *agent) stop() {
	a.finish()
	a.m.expire(a)
}

// finish releases what outlives attempts: a pull's local stream.
func (a *agent) finish() {
	a.mu.Lock()
	out := a.out
	a.mu.Unlock()
	if a.dir == DirectionPull && out != nil {
		out.EndLocal()
	}
}

// attempt makes one connection. established reports whether the relay reached PROCESSED_REMOTE; err says
// why the attempt ended (nil only when never: it always ends with a reason).
func (a *agent) attempt(localDone <-chan struct{}) (established bool, err error) {
	cfg := &a.m.cfg
	remoteID := newUUID()
	a.update(func() {
		a.remoteID = remoteID
		if !a.failing {
			a.setLocked(StatusPending, a.infoText)
		}
	})
	sctx, scancel := context.WithTimeoutCause(a.ctx, cfg.AttemptTimeout, errTimeout)
	defer scancel()

	if a.resolve != nil {
		uri, err := a.resolve(sctx)
		if err != nil {
			return false, fmt.Errorf("look up the stream's origin: %w", err)
		}
		norm, err := checkURI(uri, cfg.AgentTLS, cfg.AllowHosts)
		if err != nil {
			return false, fmt.Errorf("origin %s: %w", uri, err)
		}
		a.update(func() {
			if a.spec.URI != uri {
				a.log.Info("relay follows its stream to another origin", "from", a.spec.URI, "to", uri)
			}
			a.spec.URI, a.norm = uri, norm
		})
	}
	a.mu.Lock()
	uri := a.spec.URI
	a.mu.Unlock()
	var tlsConf *tls.Config
	if l := strings.ToLower(uri); strings.HasPrefix(l, "wss:") || strings.HasPrefix(l, "https:") {
		tlsConf = a.m.tls.Clone()
	}
	conn, err := cfg.Dial(ContextWithAppKey(sctx, a.spec.AppKey), uri, tlsConf)
	if err != nil {
		return false, fmt.Errorf("connect: %w", ctxCause(sctx, err))
	}
	defer conn.Close()

	var out media.Outbound
	var offer string
	if a.dir == DirectionPush {
		out, offer, err = cfg.Engine.OfferPush(sctx, a.spec.LocalStreamName)
	} else {
		out, offer, err = cfg.Engine.OfferPull(sctx, a.spec.LocalStreamName)
	}
	if err != nil {
		return false, fmt.Errorf("local offer: %w", err)
	}
	a.update(func() { a.out = out })
	var cause error
	defer func() { out.Close(cause) }()

	var answer string
	var statuses <-chan StreamStatus
	if a.dir == DirectionPush {
		answer, statuses, err = conn.Publish(sctx, a.spec.RemoteStreamName, remoteID, offer, a.custom)
	} else {
		answer, statuses, err = conn.Play(sctx, a.spec.RemoteStreamName, remoteID, offer, a.custom)
	}
	if err != nil {
		cause = err
		return false, ctxCause(sctx, err)
	}
	// From here the remote knows our stream: tell it when we stop on purpose.
	defer func() {
		if a.ctx.Err() != nil || isClosed(localDone) {
			a.stopRemote(conn, remoteID, statuses)
		}
	}()
	if err := out.Accept(answer); err != nil {
		cause = err
		return false, fmt.Errorf("remote answer: %w", err)
	}
	want := "PUBLISHING"
	if a.dir == DirectionPull {
		want = "PLAYING"
	}
	readyc := make(chan error, 1)
	go func() { readyc <- out.Ready(sctx) }()
	ready, remoteOK := false, false
	for !ready || !remoteOK {
		select {
		case err := <-readyc:
			if err != nil {
				cause = err
				return false, ctxCause(sctx, err)
			}
			ready, readyc = true, nil
		case st, ok := <-statuses:
			if !ok {
				cause = errConnClosed
				return false, errConnClosed
			}
			if st.Status == want {
				remoteOK = true
			} else if terminal(st.Status) {
				cause = &RemoteStatusError{Status: st.Status, Reason: st.Info}
				return false, cause
			}
		case <-conn.Done():
			cause = errConnClosed
			return false, errConnClosed
		case <-localDone:
			cause = errLocalEnded
			return false, errLocalEnded
		case <-sctx.Done():
			cause = context.Cause(sctx)
			if errors.Is(cause, errTimeout) {
				cause = fmt.Errorf("%w waiting for ICE/DTLS and %s (ready=%v, remote=%v)", errTimeout, want, ready, remoteOK)
			}
			return false, cause
		}
	}

	established = true
	since := time.Now()
	a.update(func() { a.failing = false; a.established = true; a.setLocked(StatusProcessedRemote, "") })
	a.log.Info("relay established", "remoteMediaSessionId", remoteID)

	var tick <-chan time.Time
	if cfg.NoMediaTimeout > 0 {
		t := time.NewTicker(max(cfg.NoMediaTimeout/4, 10*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-a.ctx.Done():
			cause = context.Cause(a.ctx)
			return true, cause
		case <-localDone:
			cause = errLocalEnded
			return true, cause
		case <-out.Done():
			cause = fmt.Errorf("media session ended: %w", out.Err())
			return true, cause
		case <-conn.Done():
			cause = errConnClosed
			return true, cause
		case st, ok := <-statuses:
			if !ok {
				cause = errConnClosed
				return true, cause
			}
			if terminal(st.Status) {
				cause = &RemoteStatusError{Status: st.Status, Reason: st.Info}
				return true, cause
			}
		case now := <-tick:
			last := out.Stats().LastPacket
			if last.Before(since) {
				last = since
			}
			if now.Sub(last) > cfg.NoMediaTimeout {
				cause = fmt.Errorf("no media from the remote for %v", now.Sub(last).Round(time.Millisecond))
				return true, cause
			}
		}
	}
}

// stopRemote sends unPublishStream/stopStream and waits up to StopWait for the remote's terminal status.
func (a *agent) stopRemote(conn Conn, remoteID string, statuses <-chan StreamStatus) {
	ctx, cancel := context.WithTimeout(context.Background(), a.m.cfg.StopWait)
	defer cancel()
	if err := conn.Stop(ctx, remoteID, a.dir == DirectionPush); err != nil {
		a.log.Debug("relay stop message", "err", err)
		return
	}
	for {
		select {
		case st, ok := <-statuses:
			if !ok || terminal(st.Status) {
				return
			}
		case <-conn.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

func terminal(status string) bool {
	switch status {
	case "FAILED", "STOPPED", "UNPUBLISHED":
		return true
	}
	return false
}

func isClosed(c <-chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// ctxCause prefers the cause of an ended attempt context (e.g. the attempt deadline) over err.
func ctxCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if c := context.Cause(ctx); c != nil && !errors.Is(err, c) {
			return fmt.Errorf("%w (%w)", err, c)
		}
	}
	return err
}

// newUUID returns a random (version 4) UUID string.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// Wait blocks until the agent localMediaSessionID satisfies cond (checked at once and after every status
// change), the agent is removed, or ctx ends. It returns the last info seen.
func (m *Manager) Wait(ctx context.Context, localMediaSessionID string, cond func(AgentInfo) bool) (AgentInfo, error) {
	m.mu.Lock()
	a := m.agents[localMediaSessionID]
	m.mu.Unlock()
	if a == nil {
		return AgentInfo{}, fmt.Errorf("%w: agent %s", ErrNotFound, localMediaSessionID)
	}
	for {
		a.mu.Lock()
		ch := a.changed
		a.mu.Unlock()
		ai := a.info()
		if cond(ai) {
			return ai, nil
		}
		select {
		case <-ch:
		case <-a.done:
			ai = a.info()
			if cond(ai) {
				return ai, nil
			}
			return ai, fmt.Errorf("agent %s stopped in %s: %s", localMediaSessionID, ai.Status, ai.Info)
		case <-ctx.Done():
			return ai, context.Cause(ctx)
		}
	}
}
