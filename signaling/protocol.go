// Package signaling implements the WCS-compatible WebSocket signaling protocol
// spoken by the Flashphoner Web SDK: the server side for browsers (Server) and
// the client side for relay agents (Client).
//
// Every frame is a text frame carrying {"message": name, "data": [...]}. Server
// messages always carry a data array, because the SDK reads data[0] before it
// looks at the message name.
//
// Choices where the WCS documentation is silent (wcs-protocol.md §9):
//   - PUBLISHING/PLAYING are sent only after MediaSession.Ready (ICE+DTLS).
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
)

// InfoError is an error that carries its own WCS info string. The media side
// returns such errors (ICE/DTLS stage failures, RTP activity) so that
// signaling reports the exact SDK string.
type InfoError interface {
	error
	WCSInfo() string
}

// wcsError is a sentinel whose text is a WCS info string.
type wcsError struct{ info string }

func (e *wcsError) Error() string   { return "signaling: " + e.info }
func (e *wcsError) WCSInfo() string { return e.info }

// Sentinel errors the engine returns (wrap them with %w) and signaling maps to
// their info strings.
var (
	ErrStreamNotFound    error = &wcsError{InfoStreamNotFound}
	ErrNameInUse         error = &wcsError{InfoNameInUse}
	ErrNoCommonCodecs    error = &wcsError{InfoNoCommonCodecs}
	ErrICETimeout        error = &wcsError{InfoICETimeout}
	ErrICEFailed         error = &wcsError{InfoICEError}
	ErrDTLSFailed        error = &wcsError{InfoDTLSError}
	ErrDTLSFingerprint   error = &wcsError{InfoDTLSFingerprint}
	ErrRTPActivity       error = &wcsError{InfoRTPActivity}
	ErrPublisherStopped  error = &wcsError{InfoPublisherStop}
	ErrSessionDisconnect error = &wcsError{InfoSessionDisconnect}
	ErrStoppedByUser     error = &wcsError{InfoUser}
	ErrShutdown          error = &wcsError{InfoRequestedShutdown}
)

// InfoFor maps an error to the WCS info string sent with a FAILED status. It is
// the one place where errors become info strings:
//   - nil → "";
//   - any error in the chain implementing WCSInfo() (our sentinels, a
//     *StreamError, media stage errors) → its string;
//   - a context deadline → "Failed by ICE timeout" (Ready did not finish);
//   - anything else → "Failed by error".
func InfoFor(err error) string {
	if err == nil {
		return ""
	}
	if ie, ok := errors.AsType[InfoError](err); ok {
		if s := ie.WCSInfo(); s != "" {
			return s
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return InfoICETimeout
	}
	return InfoFailedByError
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
