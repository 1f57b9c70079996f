package relay

import (
	"context"
	"time"
)

// Engine is what relay agents need from the media engine (media.Engine implements it; tests use a fake).
//
// A push agent is a player of a local stream whose transport is an outbound session; a pull agent is the
// publisher of a local stream fed by an outbound session that plays the remote stream. Every method must be
// safe for concurrent use.
type Engine interface {
	// HasStream reports whether a stream called name is published here now.
	HasStream(name string) bool

	// StreamDone returns a channel closed when the local stream name ends (its publisher left). For a name
	// that is not published it returns an already closed channel.
	StreamDone(name string) <-chan struct{}

	// StreamPath returns the relay path (server IDs, oldest first) that the local stream name was published
	// with, from the rtcrelayPath of its publishStream custom field; nil for ordinary publishers. A push agent
	// sends StreamPath(name) + [own server ID] to the remote.
	StreamPath(name string) []string

	// OfferPush makes an outbound sendonly session that is a player of local stream name and returns it with
	// its SDP offer (full ICE, controlling, a=setup:actpass, candidates inline). It fails with an error
	// wrapping ErrNotFound when the stream is not published.
	OfferPush(ctx context.Context, name string) (Outbound, string, error)

	// OfferPull makes an outbound recvonly session and returns it with its SDP offer. After Accept and a
	// successful Ready the session feeds the local stream name, publishing it if it is not published yet.
	//
	// The local stream outlives the Outbound: when the Outbound is closed (remote lost) the stream stays
	// published and its players stay attached, and the next OfferPull for the same name (the reconnect)
	// takes the stream over and asks the players' senders for a keyframe. The stream ends only when
	// EndLocal is called on the last Outbound of that name. OfferPull fails with an error wrapping
	// ErrConflict when name is published by someone other than a pull relay's Outbound. An Outbound closed
	// before its Ready returned must not publish (the agent gave up on that attempt).
	OfferPull(ctx context.Context, name string) (Outbound, string, error)
}

// Outbound is one outbound media session of a relay agent (one attempt: a reconnect makes a new one).
type Outbound interface {
	// Accept applies the remote's SDP answer (DTLS role from its a=setup) and starts ICE+DTLS.
	Accept(answerSDP string) error
	// Ready waits until ICE and DTLS are up (or ctx ends, or the session fails).
	Ready(ctx context.Context) error
	// Done is closed when the session ends; Err then says why.
	Done() <-chan struct{}
	Err() error
	// Close ends the session (idempotent). For a pull it does NOT end the local stream.
	Close(cause error)
	// EndLocal ends the local stream fed by a pull session (its players get a terminal status). No-op for a
	// push, and for a pull whose stream was already taken over by a newer Outbound.
	EndLocal()
	// Stats is a snapshot of the session's counters (safe to call at any time, also after Close).
	Stats() OutboundStats
}

// OutboundStats are the counters a relay agent reports.
type OutboundStats struct {
	Packets uint64  // RTP packets relayed (sent for a push, received for a pull)
	Bytes   uint64  // RTP payload+header bytes of those packets
	Bitrate float64 // bits per second over the last few seconds
	RTTMs   float64 // round trip time from RTCP (0 = unknown)
	// LastPacket is when the last packet (RTP or RTCP) arrived FROM the remote; zero if none yet. The
	// agent's no-media watchdog uses it: a pull receives RTP, a push receives at least RTCP receiver reports.
	LastPacket time.Time
}
