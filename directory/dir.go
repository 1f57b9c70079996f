package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// claimStatus is what a backend did with one entry.
type claimStatus int

const (
	claimRefused   claimStatus = iota // another server owns the name; claimResult.owner says who
	claimRefreshed                    // it was ours already: TTL renewed, value replaced
	claimCreated                      // the name was free (or held with a higher hop): now ours
)

type claimResult struct {
	status claimStatus
	owner  Entry // for claimRefused
}

// backend is what an implementation provides; dir adds local registrations, the refresher, health,
// stats and watcher fan-out on top. Errors that mean "cannot reach the backend" wrap ErrUnavailable.
type backend interface {
	kind() string
	// claim registers or refreshes es atomically per entry. announce publishes a change even when
	// the entry was ours already (a new Register); a created entry is always announced.
	claim(ctx context.Context, es []Entry, ttl time.Duration, announce bool) ([]claimResult, error)
	// release deletes the names that server still owns and announces the removals.
	release(ctx context.Context, names []string, server string) error
	get(ctx context.Context, name string) (Entry, bool, error)
	list(ctx context.Context) ([]Entry, error)
	ping(ctx context.Context) error
	// watch feeds changes to emit until ctx is done. It calls ready once the feed is live (or failed
	// its first attempt) and report after each backend call (nil = success).
	watch(ctx context.Context, emit func(Event), report func(error), ready func())
	close() error
}

// watchBuffer is each watcher's channel capacity.
const watchBuffer = 64

type watcher struct {
	name string
	ch   chan Event
	stop func() bool // the context.AfterFunc registration
}

// dir implements Directory over a backend.
type dir struct {
	b    backend
	opts Options
	log  *slog.Logger

	ctx    context.Context // the Directory's lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// opMu serializes the write paths (Register, Unregister, refresh rounds, Close), so a refresh
	// round can never re-create an entry that Unregister has just deleted.
	opMu       sync.Mutex
	conflicted map[string]bool // names the refresher found owned elsewhere (logged once); under opMu

	mu         sync.Mutex // guards the fields below
	local      map[string]Entry
	closed     bool
	watchers   map[*watcher]struct{}
	watchReady chan struct{} // nil until the first Watch starts the backend feed

	closeOnce sync.Once
	closeErr  error
	abandon   bool // tests: Close without deleting entries, as if the server died

	health health

	registrations, conflicts, refreshes, reregistrations atomic.Uint64
	lookups, lists, dropped                              atomic.Uint64
}

var _ Directory = (*dir)(nil)

func newDir(b backend, opts Options) *dir {
	ctx, cancel := context.WithCancel(context.Background())
	d := &dir{
		b:          b,
		opts:       opts,
		log:        opts.Logger.With("component", "directory", "backend", b.kind()),
		ctx:        ctx,
		cancel:     cancel,
		conflicted: map[string]bool{},
		local:      map[string]Entry{},
		watchers:   map[*watcher]struct{}{},
	}
	d.health.init(b.kind(), d.log)
	d.wg.Add(1)
	go d.refreshLoop()
	return d
}

// report feeds a backend call's outcome to the health state. Errors caused by the caller's own
// context, and errors that are not about reachability, do not make the backend degraded.
func (d *dir) report(ctx context.Context, err error) {
	switch {
	case err == nil:
		d.health.up()
	case ctx.Err() != nil:
	case errors.Is(err, ErrUnavailable):
		d.health.down(err)
	}
}

func (d *dir) fill(e *Entry) error {
	if e.Name == "" || len(e.Name) > MaxNameLen {
		return fmt.Errorf("%w: stream name must have 1 to %d bytes", ErrInvalid, MaxNameLen)
	}
	if e.ServerID == "" {
		e.ServerID = d.opts.ServerID
	}
	if e.ServerID != d.opts.ServerID {
		return fmt.Errorf("%w: entry server %q is not this server %q", ErrInvalid, e.ServerID, d.opts.ServerID)
	}
	if e.URI == "" {
		e.URI = d.opts.URI
	}
	if e.Hop < 0 {
		return fmt.Errorf("%w: negative hop", ErrInvalid)
	}
	if e.PublishedAt.IsZero() {
		e.PublishedAt = time.Now()
	}
	e.PublishedAt = e.PublishedAt.UTC().Round(0) // what a JSON round trip keeps
	return nil
}

func (d *dir) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

func (d *dir) Register(ctx context.Context, e Entry) error {
	if err := d.fill(&e); err != nil {
		return err
	}
	d.opMu.Lock()
	defer d.opMu.Unlock()
	if d.isClosed() {
		return ErrClosed
	}
	res, err := d.b.claim(ctx, []Entry{e}, d.opts.TTL, true)
	d.report(ctx, err)
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, ErrUnavailable) {
			d.setLocal(e)
			return fmt.Errorf("directory: register %q (kept locally, retried in the background): %w", e.Name, err)
		}
		return fmt.Errorf("directory: register %q: %w", e.Name, err)
	}
	if res[0].status == claimRefused {
		// Kept and retried by the refresher: when the owner's entry goes (unpublished, or its server died and
		// the TTL lapsed) this server takes the name over — an origin failover needs no other step.
		d.conflicts.Add(1)
		d.conflicted[e.Name] = true
		d.setLocal(e)
		return &ConflictError{Owner: res[0].owner}
	}
	d.registrations.Add(1)
	delete(d.conflicted, e.Name)
	d.setLocal(e)
	return nil
}

func (d *dir) setLocal(e Entry) {
	d.mu.Lock()
	d.local[e.Name] = e
	d.mu.Unlock()
}

func (d *dir) Unregister(ctx context.Context, name string) error {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	if d.isClosed() {
		return ErrClosed
	}
	d.mu.Lock()
	delete(d.local, name)
	d.mu.Unlock()
	delete(d.conflicted, name)
	err := d.b.release(ctx, []string{name}, d.opts.ServerID)
	d.report(ctx, err)
	if err != nil {
		return fmt.Errorf("directory: unregister %q: %w", name, err)
	}
	return nil
}

func (d *dir) Lookup(ctx context.Context, name string) (Entry, bool, error) {
	if d.isClosed() {
		return Entry{}, false, ErrClosed
	}
	d.lookups.Add(1)
	e, ok, err := d.b.get(ctx, name)
	d.report(ctx, err)
	if err != nil {
		return Entry{}, false, fmt.Errorf("directory: lookup %q: %w", name, err)
	}
	return e, ok, nil
}

func (d *dir) List(ctx context.Context) ([]Entry, error) {
	if d.isClosed() {
		return nil, ErrClosed
	}
	d.lists.Add(1)
	es, err := d.b.list(ctx)
	d.report(ctx, err)
	if err != nil {
		return nil, fmt.Errorf("directory: list: %w", err)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].Name < es[j].Name })
	return es, nil
}

func (d *dir) Watch(ctx context.Context, name string) <-chan Event {
	w := &watcher{name: name, ch: make(chan Event, watchBuffer)}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		close(w.ch)
		return w.ch
	}
	d.watchers[w] = struct{}{}
	if d.watchReady == nil {
		ready := make(chan struct{})
		d.watchReady = ready
		var once sync.Once
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			markReady := func() { once.Do(func() { close(ready) }) }
			defer markReady()
			d.b.watch(d.ctx, d.emit, func(err error) { d.report(d.ctx, err) }, markReady)
		}()
	}
	ready := d.watchReady
	w.stop = context.AfterFunc(ctx, func() { d.dropWatcher(w) })
	d.mu.Unlock()
	select {
	case <-ready:
	case <-ctx.Done():
	case <-d.ctx.Done():
	}
	return w.ch
}

func (d *dir) dropWatcher(w *watcher) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.watchers[w]; ok {
		delete(d.watchers, w)
		close(w.ch)
	}
}

// emit fans ev out to the matching watchers without ever blocking.
func (d *dir) emit(ev Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for w := range d.watchers {
		if w.name != "" && w.name != ev.Entry.Name {
			continue
		}
		select {
		case w.ch <- ev:
		default:
			d.dropped.Add(1)
		}
	}
}

func (d *dir) refreshLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.opts.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			d.refresh()
		}
	}
}

// refresh renews every local registration in one backend round trip and re-creates those that vanished.
func (d *dir) refresh() {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	es := make([]Entry, 0, len(d.local))
	for _, e := range d.local {
		es = append(es, e)
	}
	d.mu.Unlock()

	ctx, cancel := context.WithTimeout(d.ctx, d.opts.TTL/3)
	defer cancel()
	if len(es) == 0 {
		// Nothing to refresh: probe, so that Status follows the backend on a server that publishes nothing
		// (an edge) and recovers by itself.
		d.report(ctx, d.b.ping(ctx))
		return
	}
	res, err := d.b.claim(ctx, es, d.opts.TTL, false)
	d.report(ctx, err)
	if err != nil {
		return
	}
	created := 0
	for i, r := range res {
		name := es[i].Name
		switch r.status {
		case claimRefreshed:
			d.refreshes.Add(1)
			delete(d.conflicted, name)
		case claimCreated:
			d.reregistrations.Add(1)
			delete(d.conflicted, name)
			created++
		case claimRefused:
			if !d.conflicted[name] {
				d.conflicted[name] = true
				d.log.Warn("directory: a locally published stream is now owned by another server; retrying",
					"stream", name, "owner", r.owner.ServerID, "owner_uri", r.owner.URI)
			}
		}
	}
	if created > 0 {
		d.log.Debug("directory: re-created entries", "count", created)
	}
}

func (d *dir) Status() Health { return d.health.snapshot() }

func (d *dir) Stats() Stats {
	d.mu.Lock()
	n := len(d.local)
	d.mu.Unlock()
	return Stats{
		Registered:      n,
		Registrations:   d.registrations.Load(),
		Conflicts:       d.conflicts.Load(),
		Refreshes:       d.refreshes.Load(),
		Reregistrations: d.reregistrations.Load(),
		Lookups:         d.lookups.Load(),
		Lists:           d.lists.Load(),
		Errors:          d.health.errorCount(),
		EventsDropped:   d.dropped.Load(),
	}
}

func (d *dir) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()

		d.opMu.Lock()
		d.mu.Lock()
		names := make([]string, 0, len(d.local))
		for name := range d.local {
			names = append(names, name)
		}
		d.local = map[string]Entry{}
		d.mu.Unlock()
		if len(names) > 0 && !d.abandon {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := d.b.release(ctx, names, d.opts.ServerID); err != nil {
				d.log.Warn("directory: entries left to expire", "count", len(names), "err", err)
			}
			cancel()
		}
		d.opMu.Unlock()

		d.cancel()
		d.wg.Wait()
		d.mu.Lock()
		for w := range d.watchers {
			delete(d.watchers, w)
			if w.stop != nil {
				w.stop()
			}
			close(w.ch)
		}
		d.mu.Unlock()
		d.closeErr = d.b.close()
	})
	return d.closeErr
}

// health is the backend's reachability, with one log line per transition.
type health struct {
	log *slog.Logger

	mu      sync.Mutex
	backend string
	isOK    bool
	since   time.Time
	lastErr string
	errors  uint64
}

func (h *health) init(backend string, log *slog.Logger) {
	h.backend, h.log, h.isOK, h.since = backend, log, true, time.Now()
}

func (h *health) up() {
	h.mu.Lock()
	if h.isOK {
		h.mu.Unlock()
		return
	}
	down := time.Since(h.since)
	h.isOK, h.since = true, time.Now()
	h.mu.Unlock()
	h.log.Info("directory: backend reachable again", "down_for", down.Round(time.Millisecond))
}

func (h *health) down(err error) {
	h.mu.Lock()
	h.errors++
	h.lastErr = err.Error()
	if !h.isOK {
		h.mu.Unlock()
		return
	}
	h.isOK, h.since = false, time.Now()
	h.mu.Unlock()
	h.log.Warn("directory: backend unreachable; keeping local registrations and retrying", "err", err)
}

func (h *health) errorCount() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.errors
}

func (h *health) snapshot() Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Health{Backend: h.backend, OK: h.isOK, LastError: h.lastErr, Since: h.since, Errors: h.errors}
	if h.isOK {
		s.Message = h.backend + " ok"
	} else {
		s.Message = fmt.Sprintf("%s unreachable since %s: %s", h.backend, h.since.UTC().Format(time.TimeOnly), h.lastErr)
	}
	return s
}
