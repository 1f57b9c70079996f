package signaling

import (
	"context"
	"encoding/json"
)

// Engine is the media side as signaling sees it. media.Engine implements it.
//
// Publish and Play answer the browser's offer. They return quickly (no
// waiting for ICE): the answer is sent as setRemoteSDP, then signaling waits
// on MediaSession.Ready for PUBLISHING/PLAYING. Errors map to info strings
// with InfoFor: return (or wrap) ErrStreamNotFound, ErrNameInUse,
// ErrNoCommonCodecs, or any error implementing WCSInfo().
type Engine interface {
	Publish(ctx context.Context, req PublishRequest) (MediaSession, string, error)
	Play(ctx context.Context, req PlayRequest) (MediaSession, string, error)
	Available(name string) bool
}

// SessionInfo identifies the WebSocket session a request came from.
type SessionInfo struct {
	SessionID  string          // "/clientIP:port/serverIP:port"
	RemoteAddr string          // client address as seen by the server
	AppKey     string          // connection appKey
	Custom     json.RawMessage // connection custom object, if any
}

// PublishRequest is a publishStream the engine must answer.
type PublishRequest struct {
	Name, MediaSessionID, SDP string
	Custom                    json.RawMessage // publishStream custom, if any
	Session                   SessionInfo
}

// PlayRequest is a playStream the engine must answer.
type PlayRequest struct {
	Name, MediaSessionID, SDP string
	Custom                    json.RawMessage // playStream custom, if any
	Session                   SessionInfo
}

// MediaSession is one WebRTC association created by the engine.
type MediaSession interface {
	// Ready blocks until ICE and DTLS are up. An error ends the stream with
	// FAILED and InfoFor(err). ctx is cancelled when the stream ends or the
	// server's ReadyTimeout passes (reported as "Failed by ICE timeout").
	Ready(ctx context.Context) error
	// Done is closed when the media side ended the session (publisher
	// stopped, ICE/RTP failure, Close).
	Done() <-chan struct{}
	// Err tells why the session ended; for a player whose publisher went
	// away it should wrap ErrPublisherStopped.
	Err() error
	// Close ends the session; idempotent.
	Close(cause error)
}
