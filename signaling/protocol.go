// Package signaling implements the WCS-compatible WebSocket signaling protocol
// spoken by the Flashphoner Web SDK: the server side for browsers (Server) and
// the client side for relay agents (Client).
//
// Every frame is a text frame carrying {"message": name, "data": [...]}. Server
// messages always carry a data array, because the SDK reads data[0] before it
// looks at the message name.
//
// Choices where the WCS documentation is silent (wcs-protocol.md §9):
//   - PUBLISHING/PLAYING are sent only after media.Session.Ready (ICE+DTLS).
//   - Players of a publisher that ends (unpublish, socket close, media failure,
//     REST terminate) get FAILED "Stopped by publisher stop": the SDK demos
//     handle that info under the player's FAILED callback.
//   - unPublishStream → UNPUBLISHED "Stopped by publisher stop" (the value
//     checked live); stopStream → STOPPED "Stopped by user".
//   - REST terminate: UNPUBLISHED/STOPPED "Stopped by rest /terminate";
//     Shutdown: UNPUBLISHED/STOPPED "Requested stream shutdown".
//   - Engine refusals are FAILED without a setRemoteSDP; failures after the
//     answer (Ready error, media end) come after it.
package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rtcrelay/rtcrelay/media"
)

// Message names (both directions).
const (
	MsgConnection              = "connection"
	MsgGetUserData             = "getUserData"
	MsgPing                    = "ping"
	MsgPong                    = "pong"
	MsgPublishStream           = "publishStream"
	MsgPlayStream              = "playStream"
	MsgUnPublishStream         = "unPublishStream"
	MsgStopStream              = "stopStream"
	MsgSetRemoteSDP            = "setRemoteSDP"
	MsgNotifyStreamStatusEvent = "notifyStreamStatusEvent"
	MsgNotifyStreamEvent       = "notifyStreamEvent"
	MsgSendStreamEvent         = "sendStreamEvent"
	MsgAvailableStream         = "availableStream"
	MsgSendData                = "sendData"
	MsgDataStatusEvent         = "DataStatusEvent"
	MsgSnapshot                = "snapshot"
	MsgFail                    = "fail"
)

// Stream statuses (SDK STREAM_STATUS).
const (
	StatusPending     = "PENDING"
	StatusPublishing  = "PUBLISHING"
	StatusPlaying     = "PLAYING"
	StatusUnpublished = "UNPUBLISHED"
	StatusStopped     = "STOPPED"
	StatusFailed      = "FAILED"
)

// IsTerminal reports whether a stream status ends the stream in the SDK.
func IsTerminal(status string) bool {
	return status == StatusUnpublished || status == StatusStopped || status == StatusFailed
}

// Info strings (SDK STREAM_STATUS_INFO, exact text).
const (
	InfoICEError              = "Failed by ICE error"
	InfoICETimeout            = "Failed by ICE timeout"
	InfoDTLSError             = "Failed by DTLS error"
	InfoDTLSFingerprint       = "Failed by DTLS fingerprint error"
	InfoRTPActivity           = "Failed by RTP activity"
	InfoSessionDisconnect     = "Stopped by session disconnect"
	InfoRESTTerminate         = "Stopped by rest /terminate"
	InfoPublisherStop         = "Stopped by publisher stop"
	InfoUser                  = "Stopped by user"
	InfoFailedByError         = "Failed by error"
	InfoStreamNotFound        = "Stream not found"
	InfoNameInUse             = "Stream name is already in use"
	InfoMediaSessionIDNull    = "MediaSessionId is null"
	InfoMediaSessionIDInUse   = "MediaSessionId is already in use"
	InfoSessionNotReady       = "Session not ready"
	InfoNoCommonCodecs        = "No common codecs"
	InfoRequestedShutdown     = "Requested stream shutdown"
	InfoRestrictedAccess      = "Restricted access"
	InfoTranscodingDisabled   = "Transcoding required, but disabled"
	InfoPublishStreamNotReady = "Publish stream is not ready"
	// InfoBadName starts the info of a stream refused by the name rule (media.CheckName), followed by ": " and
	// the reason, e.g. "Invalid stream name: contains '/'". Our addition: WCS has no such text.
	InfoBadName = "Invalid stream name"
	// InfoCapacity: the server holds --max-streams streams or --max-players players (our addition).
	InfoCapacity = "Server at capacity"
	// InfoTooMany: the client's address publishes faster than --limit-publish-rate allows (our addition).
	InfoTooMany = "Too many requests"
)

// Causes that signaling itself ends streams with.
var (
	// ErrSessionDisconnect wraps media.ErrInterrupted: a publisher whose WebSocket dropped keeps its stream for
	// the publisher grace (the same client, or relay, may come back and take it over).
	ErrSessionDisconnect = fmt.Errorf("signaling: the WebSocket session ended: %w", media.ErrInterrupted)
	ErrStoppedByUser     = errors.New("signaling: stopped by the client")
	ErrShutdown          = errors.New("signaling: server shutdown")
	ErrRESTTerminate     = errors.New("signaling: terminated by REST")
)

// infoTable is the one place where errors become the Web SDK's info strings: the engine's sentinels (media) and
// signaling's own causes, first match wins.
var infoTable = []struct {
	err  error
	info string
}{
	{media.ErrNotFound, InfoStreamNotFound},
	{media.ErrNameInUse, InfoNameInUse},
	{media.ErrNoCommonCodecs, InfoNoCommonCodecs},
	{media.ErrRestricted, InfoRestrictedAccess},
	{media.ErrICETimeout, InfoICETimeout},
	{media.ErrICEFailed, InfoICEError},
	{media.ErrDTLSFingerprint, InfoDTLSFingerprint},
	{media.ErrDTLSFailed, InfoDTLSError},
	{media.ErrPublisherStopped, InfoPublisherStop},
	{media.ErrPeerClosed, InfoUser},
	{media.ErrClosed, InfoRequestedShutdown},
	{media.ErrCapacity, InfoCapacity},
	{ErrSessionDisconnect, InfoSessionDisconnect},
	{ErrStoppedByUser, InfoUser},
	{ErrShutdown, InfoRequestedShutdown},
	{ErrRESTTerminate, InfoRESTTerminate},
}

// reasoner is an error that names the info string the client sees: an application backend's reason for a
// denial (resthook.DeniedError).
type reasoner interface {
	error
	Reason() string
}

// InfoFor maps an error to the WCS info string sent with a FAILED status:
//   - nil → "";
//   - an error in the chain with a non-empty Reason() (a backend's denial reason) → that reason;
//   - an error in the chain from infoTable → its string;
//   - a *StreamError (a remote server's status, seen by a relay's client) → the remote's info;
//   - a context deadline → "Failed by ICE timeout" (Ready did not finish);
//   - anything else → "Failed by error".
func InfoFor(err error) string {
	if err == nil {
		return ""
	}
	if ne, ok := errors.AsType[*media.NameError](err); ok {
		return InfoBadName + ": " + ne.Reason
	}
	if r, ok := errors.AsType[reasoner](err); ok && r.Reason() != "" {
		return r.Reason()
	}
	for _, row := range infoTable {
		if errors.Is(err, row.err) {
			return row.info
		}
	}
	if se, ok := errors.AsType[*StreamError](err); ok && se.Info != "" {
		return se.Info
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return InfoICETimeout
	}
	return InfoFailedByError
}

// infoOf is the info string of a sentinel in infoTable ("" if it is not one).
func infoOf(sentinel error) string {
	for _, row := range infoTable {
		if errors.Is(sentinel, row.err) {
			return row.info
		}
	}
	return ""
}

// Message is one decoded frame: {"message": Name, "data": Data}.
type Message struct {
	Name string            `json:"message"`
	Data []json.RawMessage `json:"data"`
}

// Payload returns data[0], or nil when data is missing, empty or [null].
func (m *Message) Payload() json.RawMessage {
	if len(m.Data) == 0 {
		return nil
	}
	p := bytes.TrimSpace(m.Data[0])
	if len(p) == 0 || bytes.Equal(p, []byte("null")) {
		return nil
	}
	return p
}

// ErrMalformed is returned by DecodeMessage for frames that are not a WCS message.
var ErrMalformed = errors.New("signaling: malformed message")

// DecodeMessage parses one text frame. A frame without a data field is valid
// (Data is nil); a frame that is not a JSON object with a string "message"
// is ErrMalformed.
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if m.Name == "" {
		return Message{}, fmt.Errorf("%w: no message name", ErrMalformed)
	}
	return m, nil
}

// DecodePayload unmarshals data[0] into v. A missing payload leaves v as is.
func (m *Message) DecodePayload(v any) error {
	p := m.Payload()
	if p == nil {
		return nil
	}
	if err := json.Unmarshal(p, v); err != nil {
		return fmt.Errorf("%w: %s payload: %w", ErrMalformed, m.Name, err)
	}
	return nil
}

// EncodeMessage builds a frame with the given data elements. A message with no
// elements gets data [null], never a missing data field.
func EncodeMessage(name string, data ...any) ([]byte, error) {
	if len(data) == 0 {
		data = []any{nil}
	}
	b, err := json.Marshal(struct {
		Name string `json:"message"`
		Data []any  `json:"data"`
	}{name, data})
	if err != nil {
		return nil, fmt.Errorf("signaling: encode %s: %w", name, err)
	}
	return b, nil
}

// streamRequest is the part of publishStream/playStream/unPublishStream/
// stopStream/availableStream/sendStreamEvent payloads signaling reads.
type streamRequest struct {
	MediaSessionID string          `json:"mediaSessionId"`
	Name           string          `json:"name"`
	SDP            string          `json:"sdp"`
	Custom         json.RawMessage `json:"custom,omitempty"`
	Type           string          `json:"type"`
	Payload        json.RawMessage `json:"payload,omitempty"`
}

// sendDataRequest is the sendData payload.
type sendDataRequest struct {
	OperationID string          `json:"operationId"`
	Payload     json.RawMessage `json:"payload,omitempty"`
}

// parseFields decodes a payload object into its fields, for echoing. A payload
// that is not an object yields an empty map.
func parseFields(p json.RawMessage) map[string]json.RawMessage {
	fields := map[string]json.RawMessage{}
	if p != nil {
		if err := json.Unmarshal(p, &fields); err != nil {
			return map[string]json.RawMessage{}
		}
	}
	return fields
}
