package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"

	"github.com/rtcrelay/rtcrelay/signaling"
)

// Conn is one client connection of the WCS WebSocket protocol to a remote server, past the
// connection → getUserData handshake. An adapter over signaling.Client implements it (see DialFunc); pings
// are answered by the implementation.
type Conn interface {
	// Publish sends publishStream {name, mediaSessionId, published:true, sdp: offer, custom} and waits for
	// setRemoteSDP. It returns the answer and a channel of the stream's later status events
	// (notifyStreamStatusEvent for mediaSessionID), closed when the connection ends. A FAILED status before
	// the answer is returned as an error whose text (or Info method) is the remote's info.
	Publish(ctx context.Context, name, mediaSessionID, offerSDP string, custom json.RawMessage) (string, <-chan StreamStatus, error)
	// Play is Publish for playStream (published:false, recvonly offer).
	Play(ctx context.Context, name, mediaSessionID, offerSDP string, custom json.RawMessage) (string, <-chan StreamStatus, error)
	// Stop sends unPublishStream (published) or stopStream and returns once it was written.
	Stop(ctx context.Context, mediaSessionID string, published bool) error
	// Close closes the WebSocket (idempotent).
	Close() error
	// Done is closed when the connection ended (closed by either side or a missed-ping watchdog).
	Done() <-chan struct{}
}

// StreamStatus is one notifyStreamStatusEvent from the remote.
type StreamStatus struct {
	Status string // PUBLISHING, PLAYING, FAILED, STOPPED, UNPUBLISHED, ...
	Info   string
}

// DialFunc opens a Conn to a ws:// or wss:// URI (as sent by the REST client) and completes the handshake.
// tlsConfig is non-nil for wss:// and carries the configured trust roots.
type DialFunc func(ctx context.Context, uri string, tlsConfig *tls.Config) (Conn, error)

// remoteInfo returns the remote's info text of an error from Publish/Play (a *signaling.StreamError or a
// *RemoteStatusError in the chain), else the error text.
func remoteInfo(err error) string {
	if se, ok := errors.AsType[*signaling.StreamError](err); ok && se.Info != "" {
		return se.Info
	}
	if ce, ok := errors.AsType[*signaling.ConnectionError](err); ok && ce.Info != "" {
		return ce.Info
	}
	if re, ok := errors.AsType[*RemoteStatusError](err); ok && re.Reason != "" {
		return re.Reason
	}
	return err.Error()
}
