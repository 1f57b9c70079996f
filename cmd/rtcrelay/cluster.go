package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/rtcrelay/rtcrelay/directory"
	"github.com/rtcrelay/rtcrelay/media"
	"github.com/rtcrelay/rtcrelay/relay"
)

// registrar keeps the directory in step with the streams published here: the media engine reports them
// (media.Config.OnStream, which must not block), a goroutine of the registrar registers and unregisters.
// Streams that an edge pull feeds are not registered: lookups always lead to a server with a publisher.
type registrar struct {
	dir directory.Directory
	log *slog.Logger

	mu     sync.Mutex
	queue  []media.StreamEvent
	wake   chan struct{}
	done   chan struct{}
	closed bool
}

func newRegistrar(dir directory.Directory, log *slog.Logger) *registrar {
	r := &registrar{dir: dir, log: log, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go r.run()
	return r
}

// onStream is media.Config.OnStream: it only queues.
func (r *registrar) onStream(ev media.StreamEvent) {
	if ev.Pulled {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.queue = append(r.queue, ev)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *registrar) run() {
	defer close(r.done)
	for range r.wake {
		for {
			r.mu.Lock()
			if len(r.queue) == 0 {
				closed := r.closed
				r.mu.Unlock()
				if closed {
					return
				}
				break
			}
			ev := r.queue[0]
			r.queue = r.queue[1:]
			r.mu.Unlock()
			r.apply(ev)
		}
	}
}

func (r *registrar) apply(ev media.StreamEvent) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !ev.Published {
		if err := r.dir.Unregister(ctx, ev.Name); err != nil {
			r.log.Debug("directory unregister", "stream", ev.Name, "err", err)
		}
		return
	}
	err := r.dir.Register(ctx, directory.Entry{Name: ev.Name, Hop: len(ev.Path)})
	var ce *directory.ConflictError
	switch {
	case err == nil:
	case errors.As(err, &ce) && len(ev.Path) == 0:
		r.log.Warn("stream name published here is owned by another server in the directory: edges pull that one",
			"stream", ev.Name, "owner", ce.Owner.ServerID, "owner_uri", ce.Owner.URI)
	case errors.As(err, &ce):
		r.log.Debug("relayed stream not registered: its origin is in the directory", "stream", ev.Name, "owner", ce.Owner.ServerID)
	case errors.Is(err, directory.ErrUnavailable):
		r.log.Debug("directory unavailable: the stream is registered when it is back", "stream", ev.Name, "err", err)
	default:
		r.log.Warn("directory register", "stream", ev.Name, "err", err)
	}
}

// close stops the registrar after the queued changes.
func (r *registrar) close() {
	r.mu.Lock()
	r.closed = true
	close(r.wake)
	r.mu.Unlock()
	<-r.done
}

// directoryLookup is the edge's view of the directory: another server that publishes name.
func directoryLookup(dir directory.Directory, self string) relay.LookupFunc {
	return func(ctx context.Context, name string) (string, int, bool, error) {
		e, ok, err := dir.Lookup(ctx, name)
		if err != nil || !ok || e.ServerID == self {
			return "", 0, false, err
		}
		return e.URI, e.Hop, true, nil
	}
}

// directoryHealth is the directory's part of /healthz.
func directoryHealth(dir directory.Directory) map[string]any {
	h, st := dir.Status(), dir.Stats()
	status := "ok"
	if !h.OK {
		status = "degraded"
	}
	return map[string]any{"kind": h.Backend, "status": status, "message": h.Message, "error": h.LastError,
		"since": h.Since, "errors": h.Errors, "registered": st.Registered, "lookups": st.Lookups, "conflicts": st.Conflicts}
}
