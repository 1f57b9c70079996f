package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/rtcrelay/rtcrelay/media"
)

// fakeEngine is an in-memory Engine.
type fakeEngine struct {
	mu       sync.Mutex
	streams  map[string]chan struct{} // published name → done
	paths    map[string][]string
	outs     []*fakeOut
	offerErr error
	noReady  bool
}

func newFakeEngine(names ...string) *fakeEngine {
	e := &fakeEngine{streams: map[string]chan struct{}{}, paths: map[string][]string{}}
	for _, n := range names {
		e.publish(n)
	}
	return e
}

func (e *fakeEngine) publish(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.streams[name] = make(chan struct{})
}

func (e *fakeEngine) unpublish(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.streams[name]; ok {
		close(c)
		delete(e.streams, name)
	}
}

func (e *fakeEngine) HasStream(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.streams[name]
	return ok
}

func (e *fakeEngine) StreamDone(name string) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.streams[name]; ok {
		return c
	}
	c := make(chan struct{})
	close(c)
	return c
}

func (e *fakeEngine) StreamPath(name string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.paths[name]
}

func (e *fakeEngine) offer(name string, pull bool) (media.Outbound, string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.offerErr != nil {
		return nil, "", e.offerErr
	}
	o := &fakeOut{e: e, name: name, pull: pull, done: make(chan struct{}), ready: make(chan error, 1)}
	if !e.noReady {
		o.ready <- nil // ICE+DTLS succeed at once
	}
	e.outs = append(e.outs, o)
	return o, "offer-" + name, nil
}

func (e *fakeEngine) OfferPush(_ context.Context, name string) (media.Outbound, string, error) {
	if !e.HasStream(name) {
		return nil, "", ErrNotFound
	}
	return e.offer(name, false)
}

func (e *fakeEngine) OfferPull(_ context.Context, name string) (media.Outbound, string, error) {
	return e.offer(name, true)
}

func (e *fakeEngine) lastOut() *fakeOut {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.outs) == 0 {
		return nil
	}
	return e.outs[len(e.outs)-1]
}

type fakeOut struct {
	e      *fakeEngine
	name   string
	pull   bool
	ready  chan error
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	answer string
	err    error
	last   time.Time
	ended  bool
	closed bool
}

func (o *fakeOut) Accept(answer string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.answer = answer
	if answer == "bad" {
		return errors.New("bad answer")
	}
	return nil
}

func (o *fakeOut) Ready(ctx context.Context) error {
	select {
	case err := <-o.ready:
		o.mu.Lock()
		defer o.mu.Unlock()
		if err == nil && o.pull && !o.closed {
			o.e.mu.Lock()
			if _, ok := o.e.streams[o.name]; !ok {
				o.e.streams[o.name] = make(chan struct{})
			}
			o.e.mu.Unlock()
		}
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-o.done:
		return errors.New("closed")
	}
}

func (o *fakeOut) Done() <-chan struct{} { return o.done }
func (o *fakeOut) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

func (o *fakeOut) Close(cause error) {
	o.once.Do(func() {
		o.mu.Lock()
		o.err = cause
		o.closed = true
		o.mu.Unlock()
		close(o.done)
	})
}

func (o *fakeOut) EndLocal() {
	o.mu.Lock()
	o.ended = true
	o.mu.Unlock()
	if o.pull {
		o.e.unpublish(o.name)
	}
}

func (o *fakeOut) touch(t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last = t
}

func (o *fakeOut) Stats() media.OutboundStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return media.OutboundStats{Packets: 10, Bytes: 1000, Bitrate: 8000, RTTMs: 3, LastPacket: o.last}
}

// fakeRemote plays the remote server: every Dial makes a fakeConn.
type fakeRemote struct {
	mu      sync.Mutex
	conns   []*fakeConn
	dialErr error
	// reply decides the answer to publish/play; nil → answer "answer" and status PUBLISHING/PLAYING.
	reply func(c *fakeConn, name string) (string, *StreamStatus, error)
	dials chan *fakeConn
}

func newFakeRemote() *fakeRemote { return &fakeRemote{dials: make(chan *fakeConn, 100)} }

func (r *fakeRemote) dial(ctx context.Context, uri string, _ *tls.Config) (Conn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dialErr != nil {
		return nil, r.dialErr
	}
	c := &fakeConn{r: r, uri: uri, done: make(chan struct{}), status: make(chan StreamStatus, 8)}
	r.conns = append(r.conns, c)
	r.dials <- c
	return c, nil
}

type fakeConn struct {
	r      *fakeRemote
	uri    string
	done   chan struct{}
	once   sync.Once
	status chan StreamStatus
	mu     sync.Mutex
	msgs   []string // "publish name id custom", "stop id published"
}

func (c *fakeConn) record(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, s)
}

func (c *fakeConn) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

func (c *fakeConn) start(kind, name, id string, custom json.RawMessage) (string, <-chan StreamStatus, error) {
	c.record(kind + " " + name + " " + id + " " + string(custom))
	c.r.mu.Lock()
	reply := c.r.reply
	c.r.mu.Unlock()
	if reply != nil {
		ans, st, err := reply(c, name)
		if err != nil {
			return "", nil, err
		}
		if st != nil {
			c.status <- *st
		}
		return ans, c.status, nil
	}
	if kind == "publish" {
		c.status <- StreamStatus{Status: "PUBLISHING"}
	} else {
		c.status <- StreamStatus{Status: "PLAYING"}
	}
	return "answer", c.status, nil
}

func (c *fakeConn) Publish(_ context.Context, name, id, _ string, custom json.RawMessage) (string, <-chan StreamStatus, error) {
	return c.start("publish", name, id, custom)
}

func (c *fakeConn) Play(_ context.Context, name, id, _ string, custom json.RawMessage) (string, <-chan StreamStatus, error) {
	return c.start("play", name, id, custom)
}

func (c *fakeConn) Stop(_ context.Context, id string, published bool) error {
	if published {
		c.record("unPublishStream " + id)
		c.status <- StreamStatus{Status: "UNPUBLISHED", Info: "Stopped by publisher stop"}
	} else {
		c.record("stopStream " + id)
		c.status <- StreamStatus{Status: "STOPPED", Info: "Stopped by user"}
	}
	return nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *fakeConn) Done() <-chan struct{} { return c.done }
