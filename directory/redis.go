package directory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// claimScript registers or refreshes one entry. KEYS[1] = entry key; ARGV = value, server id, hop,
// ttl ms, channel, add message, announce ("1"/"0"). Returns {status, current value}: 0 = owned by
// another server (value = the owner's entry), 1 = ours already, 2 = created or taken over.
const claimScript = `
local cur = redis.call('GET', KEYS[1])
local status = 2
if cur then
  local ok, e = pcall(cjson.decode, cur)
  if ok and type(e) == 'table' then
    if e.server == ARGV[2] then
      status = 1
    elseif (tonumber(e.hop) or 0) <= tonumber(ARGV[3]) then
      return {0, cur}
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
if status == 2 or ARGV[7] == '1' then
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
return {status, cur or ''}
`

// releaseScript deletes one entry if ARGV[1] owns it and announces it on channel ARGV[2] with
// message ARGV[3]. Returns 1 if deleted.
const releaseScript = `
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local ok, e = pcall(cjson.decode, cur)
if ok and type(e) == 'table' and e.server == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
`

// message is the pub/sub payload on the events channel.
type message struct {
	Op     string `json:"op"` // "add" or "del"
	Entry  *Entry `json:"entry,omitempty"`
	Name   string `json:"name,omitempty"`
	Server string `json:"server,omitempty"`
}

// redisLogOnce installs redisLogger as go-redis's logger. go-redis has one process-wide logger (it
// would print a line per failed dial to stderr during an outage); the first Redis Open routes it to
// slog at Debug level, so an outage logs only this package's one line down and one line up.
var redisLogOnce sync.Once

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis", "msg", fmt.Sprintf(format, v...))
}

type redisBackend struct {
	c         *redis.Client
	keyPrefix string // "<prefix>:stream:"
	channel   string // "<prefix>:events"
	expired   string // "__keyevent@<db>__:expired"
	resync    time.Duration
	timeout   time.Duration
}

func newRedisBackend(ctx context.Context, url string, opts Options) (*redisBackend, error) {
	ro, err := redis.ParseURL(url)
	if err != nil {
		// ParseURL's errors may quote the URL; do not repeat a password.
		return nil, fmt.Errorf("%w: directory URL %q: bad Redis URL", ErrInvalid, redactURL(url))
	}
	if ro.DialTimeout == 0 {
		ro.DialTimeout = opts.Timeout
	}
	if ro.ReadTimeout == 0 {
		ro.ReadTimeout = opts.Timeout
	}
	if ro.WriteTimeout == 0 {
		ro.WriteTimeout = opts.Timeout
	}
	if ro.PoolTimeout == 0 {
		ro.PoolTimeout = opts.Timeout
	}
	if ro.MaxRetries == 0 {
		ro.MaxRetries = -1 // fail fast: the refresher is the retry
	}
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{log: opts.Logger.With("component", "go-redis")}) })
	ro.DialerRetries = 1
	ro.DisableIdentity = true // no CLIENT SETINFO (Redis < 7.2 does not know it)
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	b := &redisBackend{
		c:         redis.NewClient(ro),
		keyPrefix: opts.Prefix + ":stream:",
		channel:   opts.Prefix + ":events",
		expired:   "__keyevent@" + strconv.Itoa(ro.DB) + "__:expired",
		resync:    opts.Resync,
		timeout:   opts.Timeout,
	}
	if err := b.ping(ctx); err != nil {
		_ = b.c.Close()
		return nil, fmt.Errorf("directory: open %s: %w", redactURL(url), err)
	}
	return b, nil
}

func (*redisBackend) kind() string { return "redis" }

func unavailable(err error) error { return fmt.Errorf("%w: %w", ErrUnavailable, err) }

func (b *redisBackend) ping(ctx context.Context) error {
	if err := b.c.Ping(ctx).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

func (b *redisBackend) claim(ctx context.Context, es []Entry, ttl time.Duration, announce bool) ([]claimResult, error) {
	ann := "0"
	if announce {
		ann = "1"
	}
	pipe := b.c.Pipeline()
	cmds := make([]*redis.Cmd, len(es))
	for i := range es {
		value, err := json.Marshal(es[i])
		if err != nil {
			return nil, fmt.Errorf("encode entry: %w", err)
		}
		msg, err := json.Marshal(message{Op: "add", Entry: &es[i]})
		if err != nil {
			return nil, fmt.Errorf("encode message: %w", err)
		}
		cmds[i] = pipe.Eval(ctx, claimScript, []string{b.keyPrefix + es[i].Name},
			value, es[i].ServerID, es[i].Hop, ttl.Milliseconds(), b.channel, msg, ann)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, unavailable(err)
	}
	res := make([]claimResult, len(es))
	for i, cmd := range cmds {
		v, err := cmd.Slice()
		if err != nil || len(v) != 2 {
			return nil, fmt.Errorf("claim script reply %v: %w", v, err)
		}
		status, _ := v[0].(int64)
		res[i].status = claimStatus(status)
		if res[i].status == claimRefused {
			cur, _ := v[1].(string)
			if err := json.Unmarshal([]byte(cur), &res[i].owner); err != nil {
				return nil, fmt.Errorf("decode owner of %q: %w", es[i].Name, err)
			}
		}
	}
	return res, nil
}

func (b *redisBackend) release(ctx context.Context, names []string, server string) error {
	pipe := b.c.Pipeline()
	for _, name := range names {
		msg, err := json.Marshal(message{Op: "del", Name: name, Server: server})
		if err != nil {
			return fmt.Errorf("encode message: %w", err)
		}
		pipe.Eval(ctx, releaseScript, []string{b.keyPrefix + name}, server, b.channel, msg)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable(err)
	}
	return nil
}

func (b *redisBackend) get(ctx context.Context, name string) (Entry, bool, error) {
	v, err := b.c.Get(ctx, b.keyPrefix+name).Result()
	if errors.Is(err, redis.Nil) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, unavailable(err)
	}
	var e Entry
	if err := json.Unmarshal([]byte(v), &e); err != nil {
		return Entry{}, false, fmt.Errorf("decode entry %q: %w", name, err)
	}
	return e, true, nil
}

// list reads every entry with SCAN (never KEYS) and MGET.
func (b *redisBackend) list(ctx context.Context) ([]Entry, error) {
	seen := map[string]bool{}
	var keys []string
	var cursor uint64
	for {
		batch, next, err := b.c.Scan(ctx, cursor, b.keyPrefix+"*", 256).Result()
		if err != nil {
			return nil, unavailable(err)
		}
		for _, k := range batch {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	es := make([]Entry, 0, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), 256)
		vals, err := b.c.MGet(ctx, keys[:n]...).Result()
		if err != nil {
			return nil, unavailable(err)
		}
		for _, v := range vals {
			s, ok := v.(string) // nil: expired since SCAN
			var e Entry
			if ok && json.Unmarshal([]byte(s), &e) == nil {
				es = append(es, e)
			}
		}
		keys = keys[n:]
	}
	return es, nil
}

// watch follows the events channel (and expiry keyspace events, if the server emits them) and resyncs
// the whole directory every b.resync, so entries that expired silently are reported too.
func (b *redisBackend) watch(ctx context.Context, emit func(Event), report func(error), ready func()) {
	ps := b.c.Subscribe(ctx, b.channel, b.expired)
	// ReceiveTimeout does not return on ctx; closing the PubSub makes it return at once.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer func() {
		stop()
		_ = ps.Close()
	}()
	known := map[string]Entry{}
	// The first reply confirms the subscription: every change published from now on reaches us.
	_, err := ps.ReceiveTimeout(ctx, b.timeout)
	if err != nil {
		report(unavailable(err))
	}
	b.resyncKnown(ctx, known, nil, report)
	ready()

	next := time.Now().Add(b.resync)
	for ctx.Err() == nil {
		wait := time.Until(next)
		if wait <= 0 {
			b.resyncKnown(ctx, known, emit, report)
			next = time.Now().Add(b.resync)
			continue
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				continue
			}
			report(unavailable(err))
			// Messages may have been lost: resync after a short pause (the next Receive reconnects).
			next = time.Now().Add(250 * time.Millisecond)
			t := time.NewTimer(250 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if m, ok := msg.(*redis.Message); ok {
			b.handle(m, known, emit)
		}
	}
}

func (b *redisBackend) handle(m *redis.Message, known map[string]Entry, emit func(Event)) {
	if m.Channel == b.expired {
		name, ok := strings.CutPrefix(m.Payload, b.keyPrefix)
		if e, had := known[name]; ok && had {
			delete(known, name)
			emit(Event{Kind: Removed, Entry: e})
		}
		return
	}
	var msg message
	if err := json.Unmarshal([]byte(m.Payload), &msg); err != nil {
		return
	}
	switch msg.Op {
	case "add":
		if msg.Entry == nil {
			return
		}
		e := *msg.Entry
		if k, had := known[e.Name]; !had || !k.same(e) {
			known[e.Name] = e
			emit(Event{Kind: Added, Entry: e})
		}
	case "del":
		if k, had := known[msg.Name]; had && k.ServerID == msg.Server {
			delete(known, msg.Name)
			emit(Event{Kind: Removed, Entry: k})
		}
	}
}

// resyncKnown replaces known with the current directory and emits the differences (emit nil: none).
func (b *redisBackend) resyncKnown(ctx context.Context, known map[string]Entry, emit func(Event), report func(error)) {
	lctx, cancel := context.WithTimeout(ctx, b.resync)
	defer cancel()
	es, err := b.list(lctx)
	if err != nil {
		if ctx.Err() == nil {
			report(err)
		}
		return
	}
	report(nil)
	now := make(map[string]Entry, len(es))
	for _, e := range es {
		now[e.Name] = e
	}
	for name, k := range known {
		if _, ok := now[name]; !ok {
			delete(known, name)
			if emit != nil {
				emit(Event{Kind: Removed, Entry: k})
			}
		}
	}
	for name, e := range now {
		if k, had := known[name]; !had || !k.same(e) {
			known[name] = e
			if emit != nil {
				emit(Event{Kind: Added, Entry: e})
			}
		}
	}
}

func (b *redisBackend) close() error {
	if err := b.c.Close(); err != nil {
		return fmt.Errorf("directory: close redis client: %w", err)
	}
	return nil
}
