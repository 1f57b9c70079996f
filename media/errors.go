package media

import (
	"errors"
	"fmt"

	"github.com/rtcrelay/rtcrelay/dtls"
	"github.com/rtcrelay/rtcrelay/forwarder"
	"github.com/rtcrelay/rtcrelay/sdp"
	"github.com/rtcrelay/rtcrelay/session"
)

// The engine's failures wrap exactly one of these sentinels (and keep the cause below it). The protocols map
// them to their own words: signaling has the one table from these to the WCS info strings.
var (
	ErrNotFound         = errors.New("media: stream not found")
	ErrNameInUse        = errors.New("media: stream name already in use")
	ErrNoCommonCodecs   = errors.New("media: no common codecs")
	ErrRestricted       = errors.New("media: relay loop: the stream already passed through this server")
	ErrPublisherStopped = errors.New("media: publisher stopped")
	ErrPeerClosed       = errors.New("media: the peer closed its connection")
	ErrICETimeout       = errors.New("media: ICE timeout")
	ErrICEFailed        = errors.New("media: ICE failed")
	ErrDTLSFailed       = errors.New("media: DTLS failed")
	ErrDTLSFingerprint  = errors.New("media: DTLS fingerprint mismatch")
	ErrClosed           = errors.New("media: engine closed")
	ErrCapacity         = errors.New("media: server at capacity")
	// ErrInterrupted is a cause for closing a publisher's session that keeps its stream for the publisher grace
	// (the protocol lost its client, not the client's wish); wrap it.
	ErrInterrupted = errors.New("media: publisher interrupted")
)

// Interrupted reports whether a publisher whose session ended with err may come back: its transport failed or
// the protocol above lost it (ErrInterrupted), as opposed to a stop, a DTLS close, a refusal or shutdown.
func Interrupted(err error) bool {
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrPeerClosed) {
		return false
	}
	return errors.Is(err, ErrInterrupted) || errors.Is(err, ErrICEFailed) || errors.Is(err, ErrICETimeout) ||
		errors.Is(err, ErrDTLSFailed)
}

var stageErr = map[session.Stage]error{
	session.StageICETimeout:      ErrICETimeout,
	session.StageICEError:        ErrICEFailed,
	session.StageDTLSError:       ErrDTLSFailed,
	session.StageDTLSFingerprint: ErrDTLSFingerprint,
}

// classify wraps the errors of the packages below in the engine's sentinels, keeping the cause.
func classify(err error) error {
	if err == nil {
		return nil
	}
	wrap := func(sentinel error) error {
		if errors.Is(err, sentinel) {
			return err
		}
		return fmt.Errorf("%w: %w", sentinel, err)
	}
	var se *session.StageError
	switch {
	case errors.As(err, &se) && stageErr[se.Stage] != nil:
		return wrap(stageErr[se.Stage])
	case errors.Is(err, forwarder.ErrNameInUse):
		return wrap(ErrNameInUse)
	case errors.Is(err, forwarder.ErrNotFound), errors.Is(err, forwarder.ErrStreamClosed):
		return wrap(ErrNotFound)
	case errors.Is(err, sdp.ErrNoCommonCodec), errors.Is(err, forwarder.ErrNoTracks):
		return wrap(ErrNoCommonCodecs)
	case errors.Is(err, dtls.ErrPeerClosed):
		return wrap(ErrPeerClosed)
	case errors.Is(err, forwarder.ErrPublisherStopped):
		return wrap(ErrPublisherStopped)
	}
	return err
}
