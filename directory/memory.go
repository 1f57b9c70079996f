package directory

import (
	"context"
	"sync"
	"time"
)

// MemoryStore is the in-process directory: a map of entries with the same TTL semantics as Redis (each
// entry expires unless its owner refreshes it). Directories opened with the same Options.Store see each
// other's entries, like servers sharing one Redis. The zero value is not usable; call NewMemoryStore.
type MemoryStore struct {
	mu      sync.Mutex
	entries map[string]*memEntry
	subs    map[*memSub]struct{}
}

type memEntry struct {
	e       Entry
	expires time.Time
	timer   *time.Timer // fires at expires (or later), then checks and removes
}

type memSub struct{ emit func(Event) }

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{entries: map[string]*memEntry{}, subs: map[*memSub]struct{}{}}
}

// publish runs under s.mu.
func (s *MemoryStore) publish(ev Event) {
	for sub := range s.subs {
		sub.emit(ev)
	}
}

func (s *MemoryStore) expire(name string, me *memEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries[name] != me || time.Now().Before(me.expires) {
		return // replaced, removed or refreshed meanwhile
	}
	delete(s.entries, name)
	s.publish(Event{Kind: Removed, Entry: me.e})
}

func (s *MemoryStore) live(name string, now time.Time) (*memEntry, bool) {
	me, ok := s.entries[name]
	if !ok || !now.Before(me.expires) {
		return nil, false
	}
	return me, true
}

// memoryBackend is one server's handle on a MemoryStore.
type memoryBackend struct {
	store *MemoryStore
}

func (*memoryBackend) kind() string { return "memory" }

func (m *memoryBackend) claim(_ context.Context, es []Entry, ttl time.Duration, announce bool) ([]claimResult, error) {
	s := m.store
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	res := make([]claimResult, len(es))
	for i, e := range es {
		cur, ok := s.live(e.Name, now)
		if ok && cur.e.ServerID != e.ServerID && cur.e.Hop <= e.Hop {
			res[i] = claimResult{status: claimRefused, owner: cur.e}
			continue
		}
		status := claimCreated
		if ok && cur.e.ServerID == e.ServerID {
			status = claimRefreshed
		}
		me := s.entries[e.Name]
		if me == nil {
			me = &memEntry{}
			s.entries[e.Name] = me
			name := e.Name
			me.timer = time.AfterFunc(ttl, func() { s.expire(name, me) })
		} else {
			me.timer.Reset(ttl)
		}
		prev := me.e
		me.e, me.expires = e, now.Add(ttl)
		if status == claimCreated || (announce && !prev.same(e)) {
			s.publish(Event{Kind: Added, Entry: e})
		}
		res[i].status = status
	}
	return res, nil
}

func (m *memoryBackend) release(_ context.Context, names []string, server string) error {
	s := m.store
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, name := range names {
		me, ok := s.live(name, now)
		if !ok || me.e.ServerID != server {
			continue
		}
		me.timer.Stop()
		delete(s.entries, name)
		s.publish(Event{Kind: Removed, Entry: me.e})
	}
	return nil
}

func (m *memoryBackend) get(_ context.Context, name string) (Entry, bool, error) {
	s := m.store
	s.mu.Lock()
	defer s.mu.Unlock()
	me, ok := s.live(name, time.Now())
	if !ok {
		return Entry{}, false, nil
	}
	return me.e, true, nil
}

func (m *memoryBackend) list(context.Context) ([]Entry, error) {
	s := m.store
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	es := make([]Entry, 0, len(s.entries))
	for name := range s.entries {
		if me, ok := s.live(name, now); ok {
			es = append(es, me.e)
		}
	}
	return es, nil
}

func (*memoryBackend) ping(context.Context) error { return nil }

func (m *memoryBackend) watch(ctx context.Context, emit func(Event), report func(error), ready func()) {
	s := m.store
	sub := &memSub{emit: emit}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	report(nil)
	ready()
	<-ctx.Done()
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
}

func (*memoryBackend) close() error { return nil }
