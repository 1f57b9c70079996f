// Package directory is the stream directory of an rtcrelay cluster: which server owns (publishes) which
// stream, and where to reach it. An edge that is asked for a stream it does not have looks the name up
// here and pulls the stream from the owner's signaling URI.
//
// One small interface, [Directory], has two implementations, picked by [Open] from a URL:
//
//   - "" or "memory": in-process. The default: a single server works as before, with no extra process.
//     Several Directory values in one process may share one [MemoryStore] (Options.Store), which is how
//     tests run an origin and an edge in one process.
//   - "redis://host:6379/0" or "rediss://…" (TLS): Redis, shared by every server of the cluster
//     (github.com/redis/go-redis/v9; the URL syntax is redis.ParseURL's, query options included).
//
// # Semantics
//
// Each published stream is one entry, keyed by the stream name, with a TTL (Options.TTL, 6 s by default).
// [Directory.Register] writes the entry and then refreshes it in the background every TTL/3 until
// [Directory.Unregister] or [Directory.Close]. A server that dies stops refreshing, so its entries vanish at
// most one TTL later. Unregister (and Close) delete an entry only while this server still owns it.
//
// A name has a single owner. Register of a name held by another server fails with a [*ConflictError]
// (errors.Is(err, ErrOwnedElsewhere)) that carries the owner's entry; nothing is overwritten. The one
// exception is a strictly lower hop count: a hop-0 origin displaces an entry registered with hop ≥ 1.
// Once the owner's TTL has lapsed, anyone may take the name.
//
// Hop rule for the server (recommended): only the origin registers, with Hop 0, when a browser publishes;
// an edge that pulls a stream and republishes it locally does NOT register it. Lookups then always lead to
// the origin and a cascade can never loop. Hop is kept in the schema so that a future edge could register
// with hop+1 as a fallback without a schema change: the lower-hop rule above guarantees such an entry
// never keeps an origin out.
//
// Redis outages: every call fails fast (dial/read/write timeouts of 500 ms by default, no retries) with an
// error that wraps [ErrUnavailable]. [Directory.Status] turns degraded with the last error; one slog line
// is written when the backend becomes unreachable and one when it is back. Local registrations are kept:
// Register during an outage returns an ErrUnavailable error but keeps the entry, and the refresher
// re-creates every missing entry (and announces it) on its first round after Redis is back, within TTL/3.
//
// Changes: [Directory.Watch] delivers Added and Removed events. The in-process store emits them as changes
// happen. Redis sends a pub/sub message on every register, takeover, re-creation and unregister; entries that
// expire (a dead owner) are noticed by a periodic resync (SCAN, every Options.Resync, TTL by default) and,
// when the Redis server has keyspace notifications enabled ("notify-keyspace-events Ex"), at once. Nothing
// depends on the Redis server's configuration.
//
// # Redis schema
//
// With the default prefix "rtcrelay" (Options.Prefix):
//
//	Key      rtcrelay:stream:<name>      a string holding the entry as JSON, with a TTL (PX, Options.TTL,
//	                                     default 6 s), refreshed by the owner every TTL/3 (default 2 s).
//	Value    {"name":"cam1","server":"origin-1","uri":"ws://10.0.0.1:8080","hop":0,
//	          "published_at":"2026-12-06T03:20:00.123Z"}
//	           name          stream name
//	           server        owner server id (Options.ServerID)
//	           uri           the owner's signaling URI (ws:// or wss://), where edges pull from
//	           hop           0 = published by a browser at the owner; n = relayed n times
//	           published_at  RFC 3339 time the stream was registered
//	Channel  rtcrelay:events             pub/sub, one JSON message per change:
//	           {"op":"add","entry":{…value…}}             register, takeover, re-creation after an outage
//	           {"op":"del","name":"cam1","server":"origin-1"}  unregister by the owner
//	Also read __keyevent@<db>__:expired (only used if the server has keyspace events enabled).
//
// Writes are Lua scripts, so check-and-set is atomic: register/refresh = GET, then SET PX only if the key is
// missing, owned by the same server id, or held with a higher hop (else return the owner); unregister =
// GET, then DEL + PUBLISH only if the owner is this server. List uses SCAN MATCH rtcrelay:stream:* (never
// KEYS) and MGET.
//
// # Wiring (for cmd/ and media/)
//
//	dir, err := directory.Open(ctx, cfg.Directory, directory.Options{ServerID: id, URI: "ws://host:8080", Logger: log})
//	defer dir.Close()
//	// on publish by a browser:
//	err := dir.Register(ctx, directory.Entry{Name: name})   // ErrOwnedElsewhere → "Stream name is already in use"
//	// on unpublish:
//	dir.Unregister(ctx, name)
//	// edge, player asks for a stream that is not local:
//	e, ok, err := dir.Lookup(ctx, name)                      // ok → pull from e.URI unless e.ServerID == id
//
// ServerID must be unique per server and should be stable across restarts (e.g. configured, or derived from
// the advertised signaling address): a restarted server then takes its old entries back at once instead of
// waiting one TTL.
//
// go-redis logs connection trouble (a line per failed dial) through its one process-wide logger: the first
// Redis Open routes that logger to its Options.Logger at Debug level (redis.SetLogger), so an outage shows
// as exactly two lines at Info and above.
package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Directory is the cluster's stream directory. All methods are safe for concurrent use.
type Directory interface {
	// Register announces that this server owns e.Name and keeps the entry alive until Unregister or
	// Close. Empty e.ServerID and e.URI are filled from Options, a zero e.PublishedAt with the current
	// time. Registering a name again (this server) replaces the entry. It fails with a *ConflictError
	// (ErrOwnedElsewhere) when another server owns the name. When the backend is unreachable it returns an
	// error wrapping ErrUnavailable but keeps the entry, which the refresher registers once the backend is
	// back (so the server may go on publishing; Unregister drops it). If ctx ends first, nothing is kept.
	Register(ctx context.Context, e Entry) error
	// Unregister stops refreshing name and deletes its entry if this server still owns it. Unknown names
	// are not an error.
	Unregister(ctx context.Context, name string) error
	// Lookup returns the live entry for name, if any.
	Lookup(ctx context.Context, name string) (Entry, bool, error)
	// List returns every live entry, sorted by name.
	List(ctx context.Context) ([]Entry, error)
	// Watch delivers changes of the named stream ("" = every stream) from the moment it returns until
	// ctx is done or the Directory is closed; then the channel is closed. The channel is buffered; when a
	// watcher falls behind, events are dropped (counted in Stats.EventsDropped), so a watcher that must
	// not miss anything re-reads with Lookup or List after a drop.
	Watch(ctx context.Context, name string) <-chan Event
	// Status reports whether the backend is reachable.
	Status() Health
	// Stats returns counters since Open.
	Stats() Stats
	// Close stops the refresher and the watchers, deletes the entries this server still owns (best
	// effort, bounded by one second) and releases the backend. It is idempotent and waits.
	Close() error
}

// Entry is one published stream.
type Entry struct {
	Name        string    `json:"name"`
	ServerID    string    `json:"server"`
	URI         string    `json:"uri"`
	Hop         int       `json:"hop"`
	PublishedAt time.Time `json:"published_at"`
}

// same reports whether two entries describe the same publication.
func (e Entry) same(o Entry) bool {
	return e.Name == o.Name && e.ServerID == o.ServerID && e.URI == o.URI && e.Hop == o.Hop &&
		e.PublishedAt.Equal(o.PublishedAt)
}

// EventKind says what happened to an entry.
type EventKind int

const (
	// Added: a stream appeared, or changed owner or publication (Entry is the new one).
	Added EventKind = iota + 1
	// Removed: a stream was unregistered or expired (Entry is the last one known; for an unregister
	// seen only through Redis pub/sub, just Name and ServerID are set).
	Removed
)

func (k EventKind) String() string {
	switch k {
	case Added:
		return "added"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one change of the directory.
type Event struct {
	Kind  EventKind
	Entry Entry
}

// Health is the backend's reachability.
type Health struct {
	Backend   string    // "memory" or "redis"
	OK        bool      // false = degraded: the last backend call failed
	Message   string    // human-readable state, e.g. "redis unreachable since 03:20:01: dial tcp …"
	LastError string    // the most recent backend error, "" if none ever
	Since     time.Time // when the current state began
	Errors    uint64    // backend errors since Open
}

// Stats are counters since Open.
type Stats struct {
	Registered      int    // entries this server keeps registered now
	Registrations   uint64 // successful Register calls
	Conflicts       uint64 // Register calls refused with ErrOwnedElsewhere
	Refreshes       uint64 // entries refreshed by the background refresher
	Reregistrations uint64 // entries the refresher had to re-create (after an outage or a lapse)
	Lookups         uint64
	Lists           uint64
	Errors          uint64 // failed backend calls (outages, timeouts)
	EventsDropped   uint64 // events not delivered to a slow watcher
}

var (
	// ErrOwnedElsewhere: another server owns the stream name (see ConflictError).
	ErrOwnedElsewhere = errors.New("directory: stream name is owned by another server")
	// ErrUnavailable: the backend (Redis) could not be reached or did not answer in time.
	ErrUnavailable = errors.New("directory: backend unavailable")
	// ErrClosed: the Directory was closed.
	ErrClosed = errors.New("directory: closed")
	// ErrInvalid: a bad URL, option or entry.
	ErrInvalid = errors.New("directory: invalid")
)

// ConflictError is returned by Register when another server owns the name.
type ConflictError struct {
	Owner Entry
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("directory: stream %q is owned by server %q (%s)", e.Owner.Name, e.Owner.ServerID, e.Owner.URI)
}

// Unwrap makes errors.Is(err, ErrOwnedElsewhere) hold.
func (e *ConflictError) Unwrap() error { return ErrOwnedElsewhere }

// MaxNameLen bounds stream names (they come from remote clients).
const MaxNameLen = 512

// Options configure a Directory. ServerID is required; the rest has defaults.
type Options struct {
	ServerID string        // this server's id, unique in the cluster (required)
	URI      string        // this server's signaling URI (ws://…), the default Entry.URI
	TTL      time.Duration // entry lifetime without refresh; default 6 s, minimum 100 ms
	Resync   time.Duration // how often watchers re-read the whole directory (Redis); default TTL
	Timeout  time.Duration // Redis dial/read/write timeout; default 500 ms
	Prefix   string        // Redis key prefix; default "rtcrelay"
	Store    *MemoryStore  // the in-process store for "memory"; nil = a private one
	Logger   *slog.Logger  // nil = slog.Default()
}

// DefaultTTL is the entry lifetime when Options.TTL is zero.
const DefaultTTL = 6 * time.Second

func (o *Options) setDefaults() {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.Resync == 0 {
		o.Resync = o.TTL
	}
	if o.Timeout == 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.Prefix == "" {
		o.Prefix = "rtcrelay"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.ServerID == "" {
		errs = append(errs, fmt.Errorf("%w: ServerID is required", ErrInvalid))
	}
	if o.TTL < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("%w: TTL %v is below 100ms", ErrInvalid, o.TTL))
	}
	if o.Resync < 0 || o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%w: negative Resync or Timeout", ErrInvalid))
	}
	if strings.ContainsAny(o.Prefix, "*?[]\\") {
		errs = append(errs, fmt.Errorf("%w: Prefix %q contains a glob character", ErrInvalid, o.Prefix))
	}
	return errors.Join(errs...)
}

// Open returns the Directory named by url: "" or "memory" for the in-process one, "redis://…" or
// "rediss://…" for Redis. For Redis it checks the connection once (PING) and fails if the server cannot
// be reached, so a wrong --directory is caught at startup; later outages are survived (see the package doc).
func Open(ctx context.Context, url string, opts Options) (Directory, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	switch {
	case url == "" || url == "memory" || url == "memory://":
		st := opts.Store
		if st == nil {
			st = NewMemoryStore()
		}
		return newDir(&memoryBackend{store: st}, opts), nil
	case strings.HasPrefix(url, "redis://") || strings.HasPrefix(url, "rediss://"):
		b, err := newRedisBackend(ctx, url, opts)
		if err != nil {
			return nil, err
		}
		return newDir(b, opts), nil
	}
	return nil, fmt.Errorf("%w: directory URL %q: want \"memory\", redis:// or rediss://", ErrInvalid, redactURL(url))
}

// redactURL hides a password in a URL for error messages.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return u
	}
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		return scheme + "://" + user + ":xxxxx@" + host
	}
	return u
}
