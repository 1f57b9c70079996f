package directory

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordHandler keeps every log message at Info and above, to count the lines an outage produces.
type recordHandler struct {
	mu   *sync.Mutex
	msgs *[]string
}

func newRecorder() (*slog.Logger, func() []string) {
	h := recordHandler{mu: &sync.Mutex{}, msgs: &[]string{}}
	return slog.New(h), func() []string {
		h.mu.Lock()
		defer h.mu.Unlock()
		return append([]string(nil), *h.msgs...)
	}
}

func (recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.msgs = append(*h.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

func count(msgs []string, sub string) int {
	n := 0
	for _, m := range msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

// waitUntil waits for cond, checked every 20 ms; only for state with no event to wait on (Status).
func waitUntilT(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		<-tick.C
	}
}

// TestRedisOutage kills redis-server under registered streams, then restarts it on the same port
// (empty: --save ""), and checks fail-fast calls, degraded Status, one log line each way, and that the
// entries come back by themselves.
func TestRedisOutage(t *testing.T) {
	srv := startRedis(t)
	ctx := t.Context()
	logger, logs := newRecorder()
	oa := testOptions("a")
	oa.Logger = logger
	a := openT(t, srv.url(), oa)
	w := openT(t, srv.url(), testOptions("watcher"))
	events := w.Watch(ctx, "")
	for _, n := range []string{"o1", "o2"} {
		if err := a.Register(ctx, Entry{Name: n}); err != nil {
			t.Fatal(err)
		}
	}

	srv.kill()

	start := time.Now()
	_, _, err := a.Lookup(ctx, "o1")
	if el := time.Since(start); err == nil || el > time.Second {
		t.Fatalf("Lookup during the outage: err %v after %v; want an error within 1s", err, el)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Lookup error %v does not wrap ErrUnavailable", err)
	}
	for name, call := range map[string]func() error{
		"List":       func() error { _, err := a.List(ctx); return err },
		"Unregister": func() error { return a.Unregister(ctx, "not-there") },
		"Register":   func() error { return a.Register(ctx, Entry{Name: "o3"}) },
	} {
		start := time.Now()
		err := call()
		if el := time.Since(start); !errors.Is(err, ErrUnavailable) || el > time.Second {
			t.Fatalf("%s during the outage: %v after %v; want ErrUnavailable within 1s", name, err, el)
		}
	}
	h := a.Status()
	if h.OK || !strings.Contains(h.Message, "redis unreachable since") || h.LastError == "" || h.Errors == 0 {
		t.Fatalf("Status during the outage = %+v", h)
	}
	if st := a.Stats(); st.Registered != 3 || st.Errors == 0 {
		t.Fatalf("Stats during the outage = %+v; want o1, o2 and o3 kept locally", st)
	}
	// Let a few refresh rounds fail (TTL/3 each), then bring Redis back, empty.
	waitUntilT(t, 3*time.Second, "failing refresh rounds", func() bool { return a.Stats().Errors >= 6 })
	srv.start()

	// The refresher re-creates the three in any order; the watcher hears of each.
	back := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for len(back) < 3 {
		select {
		case ev := <-events:
			if ev.Kind == Added && ev.Entry.ServerID == "a" {
				back[ev.Entry.Name] = true
			}
		case <-timeout:
			t.Fatalf("re-registered within 5s: %v; want o1, o2, o3", back)
		}
	}
	waitUntilT(t, 3*time.Second, "Status ok again", func() bool { return a.Status().OK })
	for _, n := range []string{"o1", "o2", "o3"} {
		if e, ok := mustLookup(t, w, n); !ok || e.ServerID != "a" {
			t.Fatalf("after recovery Lookup(%s) = %+v, %v", n, e, ok)
		}
	}
	if st := a.Stats(); st.Reregistrations < 3 {
		t.Fatalf("Stats after recovery = %+v; want ≥ 3 re-registrations", st)
	}
	msgs := logs()
	if down, up := count(msgs, "backend unreachable"), count(msgs, "backend reachable again"); down != 1 || up != 1 {
		t.Fatalf("log lines: %d down, %d up, want 1 each; all: %q", down, up, msgs)
	}
	if len(msgs) != 2 {
		t.Fatalf("want exactly the down and up lines, got %q", msgs)
	}
}

// TestRedisOpenUnreachable: a wrong URL is caught at Open, fast.
func TestRedisOpenUnreachable(t *testing.T) {
	srv := startRedis(t)
	srv.kill()
	start := time.Now()
	_, err := Open(t.Context(), srv.url(), Options{ServerID: "s", Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("Open of a dead Redis = %v after %v; want ErrUnavailable within 1s", err, time.Since(start))
	}
	if _, err := Open(t.Context(), "redis://:secret@127.0.0.1:1/notadb", Options{ServerID: "s"}); !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad URL: %v; want ErrInvalid without the password", err)
	}
}

// TestRedisKeyspaceExpiry: with keyspace events enabled on the server, expiry is seen without waiting
// for a resync.
func TestRedisKeyspaceExpiry(t *testing.T) {
	srv := startRedis(t)
	ctx := t.Context()
	o := testOptions("w")
	o.Resync = time.Minute // no resync within the test: only the keyspace event can report the expiry
	w := openT(t, srv.url(), o)
	if err := w.b.(*redisBackend).c.ConfigSet(ctx, "notify-keyspace-events", "Ex").Err(); err != nil {
		t.Fatal(err)
	}
	events := w.Watch(ctx, "k")
	a := openT(t, srv.url(), testOptions("a"))
	if err := a.Register(ctx, Entry{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	next(t, events, Added, "k", 2*time.Second)
	a.abandon = true
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	next(t, events, Removed, "k", testTTL+2*time.Second)
}

// TestRedisSchema pins the key, value and channel names the package doc promises.
func TestRedisSchema(t *testing.T) {
	srv := startRedis(t)
	ctx := t.Context()
	o := testOptions("origin-1")
	o.Prefix = "" // the default, "rtcrelay"
	a := openT(t, srv.url(), o)
	c := a.b.(*redisBackend).c
	sub := c.Subscribe(ctx, "rtcrelay:events")
	defer func() { _ = sub.Close() }()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Register(ctx, Entry{Name: "cam1"}); err != nil {
		t.Fatal(err)
	}
	v, err := c.Get(ctx, "rtcrelay:stream:cam1").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"name":"cam1"`, `"server":"origin-1"`, `"uri":"ws://127.0.0.1:8080/origin-1"`, `"hop":0`, `"published_at":"`} {
		if !strings.Contains(v, want) {
			t.Fatalf("value %s lacks %s", v, want)
		}
	}
	if ttl := c.PTTL(ctx, "rtcrelay:stream:cam1").Val(); ttl <= 0 || ttl > testTTL {
		t.Fatalf("PTTL = %v, want (0, %v]", ttl, testTTL)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || !strings.HasPrefix(msg.Payload, `{"op":"add","entry":{"name":"cam1"`) {
		t.Fatalf("add message %+v, %v", msg, err)
	}
	if err := a.Unregister(ctx, "cam1"); err != nil {
		t.Fatal(err)
	}
	msg, err = sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != `{"op":"del","name":"cam1","server":"origin-1"}` {
		t.Fatalf("del message %+v, %v", msg, err)
	}
}
