// Package media is the facade the control path uses: "answer this offer as a publisher of X", "answer this offer
// as a player of X", "make an offer to push X to another server", "make an offer to pull X from another server".
// It ties a session (ICE + DTLS + SRTP over the shared socket), SDP negotiation and the forwarder together, so that
// signaling, REST and relay agents never touch the transport packages.
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
	Logger   *slog.Logger
}

// Engine owns the stream registry and creates media sessions.
type Engine struct {
	cfg Config
	log *slog.Logger
	reg *forwarder.Registry

	mu      sync.Mutex
	streams map[string]*published // control-path view of what is published, by name
}

// published is the engine's record of one published stream.
type published struct {
	stream *forwarder.Stream
	custom []byte // the publisher's `custom` field (relay path), for loop detection of onward relays
	feed   *feed  // set when a pull relay feeds the stream: it survives reconnects
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
	return &Engine{
		cfg:     cfg,
		log:     cfg.Logger,
		reg:     forwarder.NewRegistry(cfg.Logger),
		streams: map[string]*published{},
	}
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

// trackInfos turns the negotiated receive tracks of a publish offer into the forwarder's track descriptions,
// with the SSRCs the offer declared (the first of each m-section: the primary of an RTX FID group).
func trackInfos(offer *sdp.Description, tracks []sdp.Track) []forwarder.TrackInfo {
	var out []forwarder.TrackInfo
	for _, t := range tracks {
		if t.Direction == "inactive" || t.Codec.Name == "" {
			continue
		}
		ti := forwarder.TrackInfo{Kind: t.Kind, Codec: t.Codec, Extensions: t.Extensions}
		for _, m := range offer.Media {
			if m.Mid == t.Mid && len(m.SSRCs) > 0 {
				ti.SSRC = m.SSRCs[0]
			}
		}
		out = append(out, ti)
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
}

func newWait(onClose func(error)) *wait {
	return &wait{ready: make(chan struct{}), done: make(chan struct{}), onClose: onClose}
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
	go func() { _ = sock.Serve(context.Background()) }()
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
