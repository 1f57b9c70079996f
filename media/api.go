package media

import (
	"context"
	"time"
)

// PublishRequest asks the engine to answer a publisher's offer.
type PublishRequest struct {
	Name           string   // stream name
	MediaSessionID string   // the client's id of this media session (for logs)
	SDP            string   // the offer
	Path           []string // relay path (server IDs, oldest first) the stream came through; nil for browsers
}

// PlayRequest asks the engine to answer a player's offer.
type PlayRequest struct {
	Name           string
	MediaSessionID string
	SDP            string
	Path           []string // relay path of the requesting relay agent; nil for browsers
}

// Session is one media session the engine answered or offered: ICE + DTLS + SRTP with a publisher, a player or
// a remote server.
type Session interface {
	// Ready blocks until ICE and DTLS are up (nil), the session failed, or ctx ended. Failures wrap one of the
	// package's sentinel errors (ErrICETimeout, ErrDTLSFailed, ...).
	Ready(ctx context.Context) error
	// Done is closed when the session ended; Err then says why.
	Done() <-chan struct{}
	// Err says why the session ended: a player whose publisher left gets an error wrapping ErrPublisherStopped.
	Err() error
	// Close ends the session with cause (idempotent).
	Close(cause error)
}

// Outbound is one outbound relay session (one attempt of a relay agent: a reconnect makes a new one).
type Outbound interface {
	Session
	// Accept applies the remote's SDP answer (DTLS role from its a=setup) and starts ICE+DTLS.
	Accept(answerSDP string) error
	// EndLocal ends the local stream fed by a pull session (its players get a terminal status). No-op for a
	// push, and for a pull whose stream was already taken over by a newer Outbound.
	EndLocal()
	// Stats is a snapshot of the session's counters (safe to call at any time, also after Close).
	Stats() OutboundStats
}

// OutboundStats are the counters of an outbound relay session.
type OutboundStats struct {
	Packets uint64  // RTP packets relayed (sent for a push, received for a pull)
	Bytes   uint64  // RTP payload+header bytes of those packets
	Bitrate float64 // bits per second over the last few seconds
	RTTMs   float64 // round trip time from RTCP (0 = unknown)
	Lost    uint64  // push: packets the remote reports lost (its receiver reports); pull: 0
	// LastPacket is when the last packet (RTP or RTCP) arrived FROM the remote; zero if none yet. A pull
	// receives RTP, a push receives at least RTCP receiver reports.
	LastPacket time.Time
}
