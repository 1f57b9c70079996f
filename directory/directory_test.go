package directory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

const testTTL = time.Second

// cluster opens Directories ("servers") that share one backend: one MemoryStore, or one Redis with a
// key prefix of its own.
type cluster struct {
	t    *testing.T
	open func(t *testing.T, id string) *dir
}

func (c cluster) server(id string) *dir {
	c.t.Helper()
	return c.open(c.t, id)
}

func testOptions(id string) Options {
	return Options{
		ServerID: id,
		URI:      "ws://127.0.0.1:8080/" + id,
		TTL:      testTTL,
		Resync:   300 * time.Millisecond,
		Timeout:  200 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func openT(t *testing.T, url string, opts Options) *dir {
	t.Helper()
	d, err := Open(t.Context(), url, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d.(*dir)
}

var prefixes atomic.Int64

// backends returns the two implementations. Each is called once in its own subtest (the Redis one
// starts one redis-server there, or skips, or fails under CI=true) and returns a factory of clusters.
func backends() map[string]func(impl *testing.T) func(t *testing.T) cluster {
	return map[string]func(impl *testing.T) func(t *testing.T) cluster{
		"memory": func(*testing.T) func(t *testing.T) cluster {
			return func(t *testing.T) cluster {
				store := NewMemoryStore()
				return cluster{t: t, open: func(t *testing.T, id string) *dir {
					o := testOptions(id)
					o.Store = store
					return openT(t, "memory", o)
				}}
			}
		},
		"redis": func(impl *testing.T) func(t *testing.T) cluster {
			srv := startRedis(impl)
			return func(t *testing.T) cluster {
				prefix := fmt.Sprintf("test%d", prefixes.Add(1))
				return cluster{t: t, open: func(t *testing.T, id string) *dir {
					o := testOptions(id)
					o.Prefix = prefix
					return openT(t, srv.url(), o)
				}}
			}
		},
	}
}

// next waits for the next event on ch that matches kind and name.
func next(t *testing.T, ch <-chan Event, kind EventKind, name string, within time.Duration) Event {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed while waiting for %v %q", kind, name)
			}
			if ev.Kind == kind && ev.Entry.Name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %v event for %q within %v", kind, name, within)
		}
	}
}

func mustLookup(t *testing.T, d Directory, name string) (Entry, bool) {
	t.Helper()
	e, ok, err := d.Lookup(t.Context(), name)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", name, err)
	}
	return e, ok
}

// TestDirectory runs the same cases against both implementations.
func TestDirectory(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, c cluster)
	}{
		{"RegisterLookupListUnregister", func(t *testing.T, c cluster) {
			a, b := c.server("a"), c.server("b")
			ctx := t.Context()
			for _, n := range []string{"s2", "s1"} {
				if err := a.Register(ctx, Entry{Name: n}); err != nil {
					t.Fatalf("Register(%s): %v", n, err)
				}
			}
			e, ok := mustLookup(t, b, "s1")
			if !ok || e.ServerID != "a" || e.URI != "ws://127.0.0.1:8080/a" || e.Hop != 0 || e.PublishedAt.IsZero() {
				t.Fatalf("Lookup(s1) from b = %+v, %v", e, ok)
			}
			if _, ok := mustLookup(t, b, "nope"); ok {
				t.Fatal("Lookup(nope) found something")
			}
			es, err := b.List(ctx)
			if err != nil || len(es) != 2 || es[0].Name != "s1" || es[1].Name != "s2" {
				t.Fatalf("List = %+v, %v; want s1, s2", es, err)
			}
			if err := a.Unregister(ctx, "s1"); err != nil {
				t.Fatal(err)
			}
			if _, ok := mustLookup(t, b, "s1"); ok {
				t.Fatal("s1 still there after Unregister")
			}
			if err := a.Unregister(ctx, "never-registered"); err != nil {
				t.Fatalf("Unregister of an unknown name: %v", err)
			}
			st := a.Stats()
			if st.Registered != 1 || st.Registrations != 2 {
				t.Fatalf("Stats = %+v", st)
			}
			if b.Stats().Lookups != 3 || b.Stats().Lists != 1 {
				t.Fatalf("b Stats = %+v", b.Stats())
			}
			if err := a.Register(ctx, Entry{Name: ""}); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Register(empty name) = %v, want ErrInvalid", err)
			}
			if err := a.Register(ctx, Entry{Name: "x", ServerID: "b"}); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Register(other server id) = %v, want ErrInvalid", err)
			}
		}},
		{"ConflictBetweenServers", func(t *testing.T, c cluster) {
			a, b := c.server("a"), c.server("b")
			ctx := t.Context()
			if err := a.Register(ctx, Entry{Name: "cam"}); err != nil {
				t.Fatal(err)
			}
			err := b.Register(ctx, Entry{Name: "cam"})
			if !errors.Is(err, ErrOwnedElsewhere) {
				t.Fatalf("second Register = %v, want ErrOwnedElsewhere", err)
			}
			ce, ok := errors.AsType[*ConflictError](err)
			if !ok || ce.Owner.ServerID != "a" || ce.Owner.URI != "ws://127.0.0.1:8080/a" {
				t.Fatalf("ConflictError = %+v", ce)
			}
			if b.Stats().Conflicts != 1 || b.Stats().Registered != 1 { // kept locally, waiting for the name
				t.Fatalf("b Stats = %+v", b.Stats())
			}
			// b's Unregister must not delete a's entry.
			if err := b.Unregister(ctx, "cam"); err != nil {
				t.Fatal(err)
			}
			if e, ok := mustLookup(t, b, "cam"); !ok || e.ServerID != "a" {
				t.Fatalf("after b.Unregister: %+v, %v; want a's entry", e, ok)
			}
			// Registering again from the owner is fine (it replaces its own entry).
			if err := a.Register(ctx, Entry{Name: "cam"}); err != nil {
				t.Fatalf("re-Register by the owner: %v", err)
			}
		}},
		{"LoserTakesOverWhenOwnerLeaves", func(t *testing.T, c cluster) {
			a, b := c.server("a"), c.server("b")
			ctx := t.Context()
			if err := a.Register(ctx, Entry{Name: "cam"}); err != nil {
				t.Fatal(err)
			}
			if err := b.Register(ctx, Entry{Name: "cam"}); !errors.Is(err, ErrOwnedElsewhere) {
				t.Fatalf("second Register = %v, want ErrOwnedElsewhere", err)
			}
			if err := a.Unregister(ctx, "cam"); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				if e, ok := mustLookup(t, a, "cam"); ok && e.ServerID == "b" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the waiting server did not take the name over after the owner left")
				}
				time.Sleep(20 * time.Millisecond)
			}
		}},
		{"LowerHopDisplaces", func(t *testing.T, c cluster) {
			edge, origin := c.server("edge"), c.server("origin")
			ctx := t.Context()
			if err := edge.Register(ctx, Entry{Name: "s", Hop: 1}); err != nil {
				t.Fatal(err)
			}
			if err := origin.Register(ctx, Entry{Name: "s", Hop: 0}); err != nil {
				t.Fatalf("hop-0 Register over a hop-1 entry: %v", err)
			}
			if e, _ := mustLookup(t, edge, "s"); e.ServerID != "origin" {
				t.Fatalf("owner = %q, want origin", e.ServerID)
			}
			if err := edge.Register(ctx, Entry{Name: "s", Hop: 1}); !errors.Is(err, ErrOwnedElsewhere) {
				t.Fatalf("hop-1 Register over hop 0 = %v, want ErrOwnedElsewhere", err)
			}
		}},
		{"DisplacedEntryReturnsWhenOwnerLeaves", func(t *testing.T, c cluster) {
			edge, origin, w := c.server("edge"), c.server("origin"), c.server("watcher")
			ctx := t.Context()
			events := w.Watch(ctx, "s")
			if err := edge.Register(ctx, Entry{Name: "s", Hop: 1}); err != nil {
				t.Fatal(err)
			}
			if err := origin.Register(ctx, Entry{Name: "s"}); err != nil {
				t.Fatal(err)
			}
			next(t, events, Added, "s", 3*time.Second) // edge
			if ev := next(t, events, Added, "s", 3*time.Second); ev.Entry.ServerID != "origin" {
				t.Fatalf("event %+v, want origin's takeover", ev)
			}
			// The edge still publishes s locally: its refresher keeps trying, and once the origin
			// unregisters, the edge's entry is back.
			if err := origin.Unregister(ctx, "s"); err != nil {
				t.Fatal(err)
			}
			var ev Event
			for ev.Entry.ServerID != "edge" {
				ev = next(t, events, Added, "s", 3*time.Second)
			}
			if e, ok := mustLookup(t, w, "s"); !ok || e.ServerID != "edge" || e.Hop != 1 {
				t.Fatalf("Lookup = %+v, %v; want edge's hop-1 entry", e, ok)
			}
		}},
		{"UnregisterIsNotUndoneByRefresh", func(t *testing.T, c cluster) {
			a := c.server("a")
			ctx := t.Context()
			for i := range 20 {
				name := fmt.Sprintf("u%d", i)
				if err := a.Register(ctx, Entry{Name: name}); err != nil {
					t.Fatal(err)
				}
				if err := a.Unregister(ctx, name); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.Register(ctx, Entry{Name: "kept"}); err != nil {
				t.Fatal(err)
			}
			// Wait for two refresh rounds of "kept" (each at TTL/3), then nothing else may be there.
			waitUntilT(t, 2*testTTL, "two refresh rounds", func() bool { return a.Stats().Refreshes >= 2 })
			es, err := a.List(ctx)
			if err != nil || len(es) != 1 || es[0].Name != "kept" {
				t.Fatalf("List = %+v, %v; want only kept", es, err)
			}
		}},
		{"EventsOnAddAndRemove", func(t *testing.T, c cluster) {
			a, b := c.server("a"), c.server("b")
			ctx := t.Context()
			all := b.Watch(ctx, "")
			one := b.Watch(ctx, "ev")
			if err := a.Register(ctx, Entry{Name: "other"}); err != nil {
				t.Fatal(err)
			}
			if err := a.Register(ctx, Entry{Name: "ev"}); err != nil {
				t.Fatal(err)
			}
			if ev := next(t, all, Added, "other", 3*time.Second); ev.Entry.ServerID != "a" {
				t.Fatalf("event %+v", ev)
			}
			ev := next(t, one, Added, "ev", 3*time.Second)
			if ev.Entry.ServerID != "a" || ev.Entry.URI != "ws://127.0.0.1:8080/a" {
				t.Fatalf("event %+v", ev)
			}
			if err := a.Unregister(ctx, "ev"); err != nil {
				t.Fatal(err)
			}
			if ev := next(t, one, Removed, "ev", 3*time.Second); ev.Entry.ServerID != "a" {
				t.Fatalf("event %+v", ev)
			}
			// The named watcher never sees other streams.
			select {
			case ev := <-one:
				if ev.Entry.Name != "ev" {
					t.Fatalf("watcher of ev got %+v", ev)
				}
			default:
			}
			// Watch channels close with their context.
			wctx, cancel := context.WithCancel(ctx)
			w := b.Watch(wctx, "")
			cancel()
			for range w {
			}
		}},
		{"ExpiryAndTakeoverAfterOwnerDies", func(t *testing.T, c cluster) {
			a, b, w := c.server("a"), c.server("b"), c.server("watcher")
			ctx := t.Context()
			events := w.Watch(ctx, "")
			if err := b.Register(ctx, Entry{Name: "alive"}); err != nil {
				t.Fatal(err)
			}
			if err := a.Register(ctx, Entry{Name: "dies"}); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			a.abandon = true // the server "dies": it stops refreshing and deletes nothing
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if _, ok := mustLookup(t, b, "dies"); !ok {
				t.Fatal("entry vanished before its TTL")
			}
			next(t, events, Removed, "dies", testTTL+2*time.Second)
			if el := time.Since(start); el < testTTL*8/10 {
				t.Fatalf("removed after %v, before the TTL %v", el, testTTL)
			}
			if _, ok := mustLookup(t, b, "dies"); ok {
				t.Fatal("stale entry after the TTL")
			}
			// b registered before a died and is still there more than one TTL later: refreshed.
			if e, ok := mustLookup(t, w, "alive"); !ok || e.ServerID != "b" {
				t.Fatalf("refreshed entry missing: %+v, %v", e, ok)
			}
			if b.Stats().Refreshes == 0 {
				t.Fatalf("no refreshes: %+v", b.Stats())
			}
			// Takeover after the TTL lapsed.
			if err := b.Register(ctx, Entry{Name: "dies"}); err != nil {
				t.Fatalf("takeover: %v", err)
			}
			if ev := next(t, events, Added, "dies", 3*time.Second); ev.Entry.ServerID != "b" {
				t.Fatalf("takeover event %+v", ev)
			}
		}},
		{"CloseUnregisters", func(t *testing.T, c cluster) {
			a, b := c.server("a"), c.server("b")
			ctx := t.Context()
			if err := a.Register(ctx, Entry{Name: "bye"}); err != nil {
				t.Fatal(err)
			}
			w := a.Watch(ctx, "")
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			for range w { // closed by Close
			}
			if _, ok := mustLookup(t, b, "bye"); ok {
				t.Fatal("entry survived Close")
			}
			if err := a.Register(ctx, Entry{Name: "late"}); !errors.Is(err, ErrClosed) {
				t.Fatalf("Register after Close = %v, want ErrClosed", err)
			}
		}},
	}
	for implName, impl := range backends() {
		t.Run(implName, func(t *testing.T) {
			newCluster := impl(t)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, newCluster(t))
				})
			}
		})
	}
}

func TestOpen(t *testing.T) {
	ctx := t.Context()
	for _, url := range []string{"", "memory"} {
		d, err := Open(ctx, url, Options{ServerID: "s"})
		if err != nil {
			t.Fatalf("Open(%q): %v", url, err)
		}
		if h := d.Status(); !h.OK || h.Backend != "memory" {
			t.Fatalf("Open(%q).Status() = %+v", url, h)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(ctx, "", Options{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no ServerID: %v, want ErrInvalid", err)
	}
	if _, err := Open(ctx, "etcd://127.0.0.1:2379", Options{ServerID: "s"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown scheme: %v, want ErrInvalid", err)
	}
}
