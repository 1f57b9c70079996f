// Package media is the media engine below the protocols: "answer this offer as a publisher of X", "answer this
// offer as a player of X", "make an offer to push X to another server", "make an offer to pull X from another
// server". It ties a session (ICE + DTLS + SRTP over the shared socket), SDP negotiation and the forwarder
// together, so that signaling, REST and relay agents never touch the transport packages.
//
// media knows no protocol: requests carry plain fields (a relay path is a []string), failures wrap the
// package's sentinel errors, and the protocols above (signaling for WCS) map those to their own words.
package media

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
)

// Config configures an Engine. Socket and Certificate are required.
type Config struct {
	Socket      *ice.Socket
	Certificate *dtls.Certificate
	ICETimeout  time.Duration
	DTLSTimeout time.Duration
	// Outbound configures the socket of each outbound relay session. Like a browser's peer connection, every
	// outbound session gets a UDP socket of its own (port 0), so that two relays between the same pair of
	// servers never share a 5-tuple; nil Addr port means an ephemeral port on Outbound.Addr's address.
	Outbound ice.SocketConfig
	// ServerID names this server in relay paths; a publish whose path already holds it is refused (a loop).
	ServerID string
	// PublisherGrace is how long a stream stays published after its publisher was Interrupted (transport
	// lost, WebSocket gone), waiting for a takeover; 0 ends it at once.
	PublisherGrace time.Duration
	// OnStream, when set, is told when a stream is published here and when it ended (not for takeovers within
	// the grace). It may run under the engine's lock: it must neither block nor call the engine (the
	// cluster directory just queues the change).
	OnStream func(StreamEvent)
	// MaxStreams and MaxPlayers bound what the server holds (0: no bound): a publish of a new stream beyond
	// MaxStreams, or a play beyond MaxPlayers players, fails with ErrCapacity.
	MaxStreams, MaxPlayers int
	Logger                 *slog.Logger
}

// Engine owns the stream registry and creates media sessions.
type Engine struct {
	cfg Config
	log *slog.Logger
	reg *forwarder.Registry

	ctx    context.Context // ends at Close: every session's handshake and goroutines hang off it
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // every goroutine the engine started

	takeovers atomic.Uint64 // publishes that took a stream over within its grace
	players   atomic.Int64  // player sessions handed out and not closed (MaxPlayers)
	feeds     feedCounters  // RTX, probes and unknown packets from publishers, all feeds

	mu      sync.Mutex
	streams map[string]*published // control-path view of what is published, by name
	live    map[*wait]struct{}    // sessions handed out and not yet closed
	closed  bool
}

// published is the engine's record of one published stream.
type published struct {
	stream *forwarder.Stream
	path   []string    // the publisher's relay path, for loop detection of onward relays
	feed   *feed       // the publisher side: it survives reconnects and takeovers
	pulled bool        // fed by a pull relay (no WebSocket publisher)
	grace  *time.Timer // running while the stream waits for its publisher to come back
	since  time.Time
}

// New makes an Engine.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ICETimeout <= 0 {
		cfg.ICETimeout = 10 * time.Second
	}
	if cfg.DTLSTimeout <= 0 {
		cfg.DTLSTimeout = 10 * time.Second
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	e := &Engine{
		cfg:     cfg,
		log:     cfg.Logger,
		reg:     forwarder.NewRegistry(cfg.Logger),
		ctx:     ctx,
		cancel:  cancel,
		streams: map[string]*published{},
		live:    map[*wait]struct{}{},
	}
	e.feeds.log = cfg.Logger
	return e
}

// Close ends every session the engine handed out (cause ErrClosed), refuses new ones and waits until all the
// engine's goroutines returned or ctx ends. The sockets in Config belong to the caller.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	live := make([]*wait, 0, len(e.live))
	for w := range e.live {
		live = append(live, w)
	}
	streams := make([]*forwarder.Stream, 0, len(e.streams))
	for _, p := range e.streams {
		streams = append(streams, p.stream)
		if p.grace != nil {
			p.grace.Stop()
			p.grace = nil
		}
	}
	e.mu.Unlock()
	e.cancel(ErrClosed)
	for _, w := range live {
		w.Close(ErrClosed)
	}
	for _, st := range streams { // pulled streams outlive their sessions
		st.Close()
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("media: close: %w", context.Cause(ctx))
	}
}

// admit refuses new sessions once the engine is closed or the caller gave up.
func (e *Engine) admit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	return nil
}

// newWait makes the Ready/Done/Err/Close handle of a session and tracks it until it closes.
func (e *Engine) newWait(onClose func(error)) *wait {
	w := &wait{ready: make(chan struct{}), done: make(chan struct{})}
	w.causeOf = func(cause error) error {
		if e.ctx.Err() != nil && !errors.Is(cause, ErrClosed) { // whatever ends a session now, Close did
			return fmt.Errorf("%w: %w", ErrClosed, cause)
		}
		return cause
	}
	w.onClose = func(cause error) {
		onClose(cause)
		e.mu.Lock()
		delete(e.live, w)
		e.mu.Unlock()
	}
	e.mu.Lock()
	closed := e.closed
	if !closed {
		e.live[w] = struct{}{}
	}
	e.mu.Unlock()
	if closed {
		w.Close(ErrClosed)
	}
	return w
}

// StreamEvent says that a stream was published here or ended.
type StreamEvent struct {
	Name      string
	Published bool     // false: it ended
	Pulled    bool     // fed by a pull relay (an edge's copy), not by a publisher here
	Path      []string // the relay path it came through (nil: a browser publishes it here)
}

func (e *Engine) notify(ev StreamEvent) {
	if e.cfg.OnStream != nil {
		e.cfg.OnStream(ev)
	}
}

// Stats are the engine's counters.
type Stats struct {
	Takeovers uint64 // publishes that took a stream over within its publisher grace
	InGrace   int    // streams waiting for their publisher now
	// From publishers, all streams: RTX (RFC 4588) retransmissions decoded and forwarded, padding-only RTX
	// packets (bandwidth probes) dropped, and packets of no known track (payload type, SSRC) dropped.
	RTXReceived, PaddingReceived, UnknownDropped uint64
	// RTX packets that carried a packet already received (Chrome probes with copies of recent packets) or
	// too old to matter, dropped: forwarding them would count twice in the layers' rates and cost the players.
	RTXRedundant uint64
}

// Stats reads the counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Stats{Takeovers: e.takeovers.Load(), RTXReceived: e.feeds.rtx.Load(), PaddingReceived: e.feeds.padding.Load(),
		UnknownDropped: e.feeds.unknown.Load(), RTXRedundant: e.feeds.redundant.Load()}
	for _, p := range e.streams {
		if p.grace != nil {
			st.InGrace++
		}
	}
	return st
}

// Registry is the stream registry (for REST listings and benchmarks).
func (e *Engine) Registry() *forwarder.Registry { return e.reg }

func (e *Engine) sessionConfig(log *slog.Logger) session.Config {
	return e.sessionConfigOn(e.cfg.Socket, log)
}

func (e *Engine) sessionConfigOn(sock *ice.Socket, log *slog.Logger) session.Config {
	return session.Config{
		Socket:      sock,
		Certificate: e.cfg.Certificate,
		ICETimeout:  e.cfg.ICETimeout,
		DTLSTimeout: e.cfg.DTLSTimeout,
		Logger:      log,
	}
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pubTrack is one track of a publisher: the forwarder's description and the publisher's RTX.
type pubTrack struct {
	info  forwarder.TrackInfo
	rtxPT uint32 // the RTX payload type, noPT for none
}

// trackInfos turns the negotiated receive tracks of a publish offer into the forwarder's track descriptions,
// with the SSRCs the offer declared (the first of each m-section: the primary of an RTX FID group), and the RTX
// payload type negotiated for each.
func trackInfos(offer *sdp.Description, tracks []sdp.Track) []pubTrack {
	var out []pubTrack
	for _, t := range tracks {
		if t.Direction == "inactive" || t.Codec.Name == "" {
			continue
		}
		pt := pubTrack{info: forwarder.TrackInfo{Kind: t.Kind, Codec: t.Codec, Extensions: t.Extensions}, rtxPT: noPT}
		if t.RTX != nil && t.Kind == sdp.KindVideo {
			pt.rtxPT = uint32(t.RTX.PayloadType)
		}
		if t.Kind == sdp.KindVideo && len(t.RIDs) > 0 {
			// Simulcast: one track per encoding, each told by its RID (the offer declares no SSRCs).
			for _, rid := range t.RIDs {
				l := pt
				l.info.RID = rid
				out = append(out, l)
			}
			continue
		}
		for _, m := range offer.Media {
			if m.Mid == t.Mid && len(m.SSRCs) > 0 {
				pt.info.SSRC = m.SSRCs[0]
			}
		}
		out = append(out, pt)
	}
	return out
}

// wait is the shared Ready/Done/Err/Close machinery of the sessions this engine hands out.
type wait struct {
	ready     chan struct{}
	readyErr  error
	done      chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex
	err       error
	onClose   func(cause error)
	causeOf   func(cause error) error // may rewrite the cause (nil: keep it)
}

func (w *wait) setReady(err error) {
	w.readyErr = err
	close(w.ready)
}

// Ready blocks until the transport is up (nil) or failed (a *session.StageError or another cause).
func (w *wait) Ready(ctx context.Context) error {
	select {
	case <-w.ready:
		return w.readyErr
	case <-w.done:
		select {
		case <-w.ready:
			return w.readyErr
		default:
		}
		return w.Err()
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Done is closed when the session ended.
func (w *wait) Done() <-chan struct{} { return w.done }

// Err says why the session ended.
func (w *wait) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the session with cause; it is idempotent.
func (w *wait) Close(cause error) {
	w.closeOnce.Do(func() {
		if cause == nil {
			cause = errors.New("closed")
		}
		if w.causeOf != nil {
			cause = w.causeOf(cause)
		}
		w.mu.Lock()
		w.err = cause
		w.mu.Unlock()
		w.onClose(cause)
		close(w.done)
	})
}

// outboundSession makes an offering session on a socket of its own; closing the session's wait closes it.
func (e *Engine) outboundSession(log *slog.Logger) (*session.Session, *ice.Socket, error) {
	sc := e.cfg.Outbound
	if !sc.Addr.IsValid() {
		sc.Addr = netip.AddrPortFrom(e.cfg.Socket.LocalAddr().Addr(), 0)
	}
	if sc.Logger == nil {
		sc.Logger = log
	}
	sock, err := ice.Listen(sc)
	if err != nil {
		return nil, nil, fmt.Errorf("outbound socket: %w", err)
	}
	e.wg.Go(func() { _ = sock.Serve(e.ctx) })
	s, err := session.NewOfferer(e.sessionConfigOn(sock, log))
	if err != nil {
		_ = sock.Close()
		return nil, nil, err
	}
	return s, sock, nil
}

func randomSSRC() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
