package signaling

import (
	"context"

	"github.com/rtcrelay/rtcrelay/media"
)

// Engine is the media side as signaling sees it; *media.Engine implements it (tests use fakes).
//
// Publish and Play answer the browser's offer. They return quickly (no waiting for ICE): the answer is sent as
// setRemoteSDP, then signaling waits on Session.Ready for PUBLISHING/PLAYING. Their errors, and the errors a
// session ends with, wrap media's sentinels (media.ErrNotFound, media.ErrICETimeout, ...), which InfoFor turns
// into the Web SDK's info strings.
type Engine interface {
	Publish(ctx context.Context, req media.PublishRequest) (media.Session, string, error)
	Play(ctx context.Context, req media.PlayRequest) (media.Session, string, error)
	Available(name string) bool
}

var _ Engine = (*media.Engine)(nil)
