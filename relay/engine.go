package relay

import (
	"context"

	"github.com/rtcrelay/rtcrelay/media"
)

// Engine is what relay agents need from the media engine (*media.Engine implements it; tests use a fake).
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
	// wrapping media.ErrNotFound when the stream is not published.
	OfferPush(ctx context.Context, name string) (media.Outbound, string, error)

	// OfferPull makes an outbound recvonly session and returns it with its SDP offer. After Accept and a
	// successful Ready the session feeds the local stream name, publishing it if it is not published yet.
	//
	// The local stream outlives the Outbound: when the Outbound is closed (remote lost) the stream stays
	// published and its players stay attached, and the next OfferPull for the same name (the reconnect)
	// takes the stream over and asks the players' senders for a keyframe. The stream ends only when
	// EndLocal is called on the last Outbound of that name. OfferPull fails with an error wrapping
	// media.ErrNameInUse when name is published by someone other than a pull relay's Outbound. An Outbound closed
	// before its Ready returned must not publish (the agent gave up on that attempt).
	OfferPull(ctx context.Context, name string) (media.Outbound, string, error)
}

var _ Engine = (*media.Engine)(nil)
