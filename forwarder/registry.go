package forwarder

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const shardCount = 16 // a power of two

// Registry maps stream names to published streams. It is sharded by name: each shard is a mutex and a map,
// used only on the control path.
type Registry struct {
	log        *slog.Logger
	epoch      time.Time
	shards     [shardCount]shard
	maxWriters atomic.Int32 // 0: DefaultMaxWriters()
}

type shard struct {
	mu sync.Mutex
	m  map[string]*Stream
}

// NewRegistry returns an empty registry; log may be nil.
func NewRegistry(log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Registry{log: log.With("component", "forwarder"), epoch: time.Now()}
	for i := range r.shards {
		r.shards[i].m = make(map[string]*Stream)
	}
	return r
}

// SetMaxWriters bounds the writer goroutines of every stream (a stream runs about √players of them; the bound is
// read when a player is added); n ≤ 0 restores DefaultMaxWriters(). Each writer owns a send batch (SocketConfig.SendBatchBytes).
func (r *Registry) SetMaxWriters(n int) {
	r.maxWriters.Store(int32(max(n, 0)))
}

func (r *Registry) writerCap() int {
	if n := r.maxWriters.Load(); n > 0 {
		return int(n)
	}
	return DefaultMaxWriters()
}

func (r *Registry) shard(name string) *shard {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return &r.shards[h&(shardCount-1)]
}

// Publish registers a new stream of the given tracks, fed through Stream.HandleRTP/HandleRTCP, whose RTCP
// to the publisher goes to upstream. ErrNameInUse if the name is taken.
func (r *Registry) Publish(name string, tracks []TrackInfo, upstream Upstream) (*Stream, error) {
	switch {
	case len(tracks) == 0:
		return nil, ErrNoTracks
	case len(tracks) > maxTracks:
		return nil, fmt.Errorf("%w: %d > %d", ErrTooManyTracks, len(tracks), maxTracks)
	case upstream == nil:
		return nil, fmt.Errorf("forwarder: publish %q: nil upstream", name)
	}
	sh := r.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrNameInUse, name)
	}
	st := newStream(r, name, tracks, upstream)
	sh.m[name] = st
	st.log.Info("stream published", "tracks", len(tracks))
	return st, nil
}

// Lookup finds a published stream.
func (r *Registry) Lookup(name string) (*Stream, bool) {
	sh := r.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st, ok := sh.m[name]
	return st, ok
}

// Remove closes the stream of that name (its players end with ErrPublisherStopped); ErrNotFound if none.
func (r *Registry) Remove(name string) error {
	st, ok := r.Lookup(name)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	st.Close()
	return nil
}

// remove drops st from its shard if it is still the stream of its name.
func (r *Registry) remove(st *Stream) {
	sh := r.shard(st.name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[st.name] == st {
		delete(sh.m, st.name)
	}
}

// StreamInfo describes a published stream for listings (REST).
type StreamInfo struct {
	Name    string
	Tracks  []TrackInfo
	Players int
	Stats   StreamStats
}

// Streams lists the published streams, sorted by name.
func (r *Registry) Streams() []StreamInfo {
	var all []*Stream
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for _, st := range sh.m {
			all = append(all, st)
		}
		sh.mu.Unlock()
	}
	out := make([]StreamInfo, 0, len(all))
	for _, st := range all {
		s := st.Stats()
		out = append(out, StreamInfo{Name: st.name, Tracks: st.Tracks(), Players: s.Players, Stats: s})
	}
	slices.SortFunc(out, func(a, b StreamInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Close closes every stream.
func (r *Registry) Close() {
	for _, si := range r.Streams() {
		if st, ok := r.Lookup(si.Name); ok {
			st.Close()
		}
	}
}
