package media

import (
	"errors"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/relay"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
	"github.com/rtcrelay/rtcrelay/signaling"
)

// ErrRestricted refuses a publish whose relay path already went through this server (a relay loop).
var ErrRestricted = &infoError{msg: "media: relay loop: the stream already passed through this server", info: "Restricted access"}

// infoError is an error that carries the Web SDK's info string for it.
type infoError struct {
	msg, info string
	err       error
}

func (e *infoError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}
func (e *infoError) Unwrap() error   { return e.err }
func (e *infoError) WCSInfo() string { return e.info }

var stageInfo = map[session.Stage]string{
	session.StageICETimeout:      "Failed by ICE timeout",
	session.StageICEError:        "Failed by ICE error",
	session.StageDTLSError:       "Failed by DTLS error",
	session.StageDTLSFingerprint: "Failed by DTLS fingerprint error",
}

// classify turns the errors of the packages below into the ones signaling and relay branch on, keeping the cause.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var se *session.StageError
	switch {
	case errors.As(err, &se):
		return &infoError{msg: "media", info: stageInfo[se.Stage], err: err}
	case errors.Is(err, forwarder.ErrNameInUse):
		return errors.Join(signaling.ErrNameInUse, relay.ErrConflict, err)
	case errors.Is(err, forwarder.ErrNotFound), errors.Is(err, forwarder.ErrStreamClosed):
		return errors.Join(signaling.ErrStreamNotFound, relay.ErrNotFound, err)
	case errors.Is(err, sdp.ErrNoCommonCodec), errors.Is(err, forwarder.ErrNoTracks):
		return errors.Join(signaling.ErrNoCommonCodecs, err)
	case errors.Is(err, dtls.ErrPeerClosed):
		return &infoError{msg: "media: the peer closed its connection", info: "Stopped by user", err: err}
	case errors.Is(err, forwarder.ErrPublisherStopped):
		return errors.Join(signaling.ErrPublisherStopped, err)
	}
	return err
}
