package signaling

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/rtcrelay/rtcrelay/media"
)

// fakeEngine plays the media side: the SDP strings drive its behaviour.
//   - offer containing "nocodec" → media.ErrNoCommonCodecs
//   - "ice-timeout" → Ready returns an error wrapping media.ErrICETimeout
//   - "hold" → Ready blocks until its context ends
//   - "rtp-fail" → the session ends with media.ErrICEFailed (consent lost) right after Ready
type fakeEngine struct {
	mu        sync.Mutex
	published map[string]*fakeSession
	all       []*fakeSession
}

func newFakeEngine() *fakeEngine { return &fakeEngine{published: map[string]*fakeSession{}} }

type fakeSession struct {
	e       *fakeEngine
	name    string
	publish bool
	sdp     string
	path    []string // the request's relay path
	once    sync.Once
	done    chan struct{}
	err     error
	players map[*fakeSession]struct{} // guarded by e.mu
}

func (e *fakeEngine) newSession(name, sdp string, publish bool) *fakeSession {
	s := &fakeSession{e: e, name: name, publish: publish, sdp: sdp, done: make(chan struct{}), players: map[*fakeSession]struct{}{}}
	e.all = append(e.all, s)
	return s
}

func (e *fakeEngine) Publish(_ context.Context, req media.PublishRequest) (media.Session, string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if strings.Contains(req.SDP, "nocodec") {
		return nil, "", media.ErrNoCommonCodecs
	}
	if e.published[req.Name] != nil {
		return nil, "", media.ErrNameInUse
	}
	s := e.newSession(req.Name, req.SDP, true)
	s.path = req.Path
	e.published[req.Name] = s
	return s, "answer-to:" + req.SDP, nil
}

func (e *fakeEngine) Play(_ context.Context, req media.PlayRequest) (media.Session, string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pub := e.published[req.Name]
	if pub == nil {
		return nil, "", media.ErrNotFound
	}
	if strings.Contains(req.SDP, "nocodec") {
		return nil, "", media.ErrNoCommonCodecs
	}
	s := e.newSession(req.Name, req.SDP, false)
	s.path = req.Path
	pub.players[s] = struct{}{}
	return s, "answer-to:" + req.SDP, nil
}

func (e *fakeEngine) Available(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.published[name] != nil
}

// session returns the index-th session made (nil if there is none yet).
func (e *fakeEngine) session(index int) *fakeSession {
	e.mu.Lock()
	defer e.mu.Unlock()
	if index >= len(e.all) {
		return nil
	}
	return e.all[index]
}

// open counts sessions not closed.
func (e *fakeEngine) open() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, s := range e.all {
		select {
		case <-s.done:
		default:
			n++
		}
	}
	return n
}

func (s *fakeSession) Ready(ctx context.Context) error {
	switch {
	case strings.Contains(s.sdp, "ice-timeout"):
		return fmt.Errorf("fake: no pair in time: %w", media.ErrICETimeout)
	case strings.Contains(s.sdp, "hold"):
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return s.err
		}
	case strings.Contains(s.sdp, "rtp-fail"):
		go s.Close(fmt.Errorf("fake: consent lost: %w", media.ErrICEFailed))
	}
	return nil
}

func (s *fakeSession) Done() <-chan struct{} { return s.done }
func (s *fakeSession) Err() error            { <-s.done; return s.err }

func (s *fakeSession) Close(cause error) {
	s.once.Do(func() {
		s.e.mu.Lock()
		s.err = cause
		close(s.done)
		var players []*fakeSession
		if s.publish {
			if s.e.published[s.name] == s {
				delete(s.e.published, s.name)
			}
			for p := range s.players {
				players = append(players, p)
			}
		}
		s.e.mu.Unlock()
		for _, p := range players {
			p.Close(media.ErrPublisherStopped)
		}
	})
}
