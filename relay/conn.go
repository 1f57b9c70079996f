package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"slices"
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

// remoteInfo returns the remote's info text of an error from Publish/Play: the Info() or WCSInfo() string
// of the first error in the chain that has one (signaling.StreamError), else the error text.
func remoteInfo(err error) string {
	var ie interface{ Info() string }
	if errors.As(err, &ie) && ie.Info() != "" {
		return ie.Info()
	}
	var we interface{ WCSInfo() string }
	if errors.As(err, &we) && we.WCSInfo() != "" {
		return we.WCSInfo()
	}
	return err.Error()
}

// customPath is the JSON shape of the relay path inside the custom field of publishStream/playStream.
type customPath struct {
	Path []string `json:"rtcrelayPath"`
}

// ParsePath returns the rtcrelayPath list of a publishStream/playStream custom field (nil if absent or not
// a JSON object with that string array).
func ParsePath(custom json.RawMessage) []string {
	if len(custom) == 0 {
		return nil
	}
	var cp customPath
	if err := json.Unmarshal(custom, &cp); err != nil {
		return nil
	}
	return cp.Path
}

// PathContains reports whether serverID is in the rtcrelayPath of custom. The signaling server refuses a
// publishStream/playStream whose path contains its own ID (a relay loop) with FAILED.
func PathContains(custom json.RawMessage, serverID string) bool {
	return serverID != "" && slices.Contains(ParsePath(custom), serverID)
}

// AppendPath returns custom with serverID appended to its rtcrelayPath, keeping every other field of a
// JSON object custom. A custom that is not a JSON object is replaced.
func AppendPath(custom json.RawMessage, serverID string) json.RawMessage {
	obj := map[string]json.RawMessage{}
	if len(custom) > 0 {
		if err := json.Unmarshal(custom, &obj); err != nil || obj == nil {
			obj = map[string]json.RawMessage{}
		}
	}
	path := append(ParsePath(custom), serverID)
	b, _ := json.Marshal(path) // a []string always marshals
	obj["rtcrelayPath"] = b
	out, _ := json.Marshal(obj) // map of RawMessage from valid JSON always marshals
	return out
}

// pathCustom builds the custom field for a path.
func pathCustom(path []string) json.RawMessage {
	b, _ := json.Marshal(customPath{Path: path})
	return b
}
