// Package limits keeps per-client-address budgets: a token bucket for the rate of an action (new connections,
// publishes) and a count of what a client holds at once (open connections). Keys are IP addresses; addresses
// in the exempt prefixes (by default none here; the server exempts loopback) are never limited. The table
// forgets idle addresses, so its size is bounded by the clients active in the last minute, and by MaxKeys.
package limits

import (
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// ErrLimited is wrapped by every refusal (errors.Is).
var ErrLimited = errors.New("limit reached")

// Rate is a token bucket: Burst actions at once, then PerSecond. Zero PerSecond means no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Config configures a Limiter.
type Config struct {
	Rate    Rate           // per address
	Max     int            // at most this many held at once per address (Acquire/Release); 0: no limit
	Exempt  []netip.Prefix // never limited
	MaxKeys int            // addresses tracked at most (default 65536); beyond it new addresses are refused
	Now     func() time.Time
}

type entry struct {
	tokens float64
	last   time.Time
	held   int
}

// Limiter is one budget (e.g. WebSocket connections) over all client addresses. It is safe for concurrent use.
type Limiter struct {
	cfg Config

	mu      sync.Mutex
	keys    map[netip.Addr]*entry
	swept   time.Time
	refused uint64
}

// idleAfter is how long an address with nothing held and a full bucket stays in the table.
const idleAfter = time.Minute

// New returns a Limiter.
func New(cfg Config) *Limiter {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 65536
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rate.PerSecond > 0 && cfg.Rate.Burst <= 0 {
		cfg.Rate.Burst = 1
	}
	return &Limiter{cfg: cfg, keys: map[netip.Addr]*entry{}}
}

func (l *Limiter) exempt(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range l.cfg.Exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// entryLocked returns a's entry, refilled to now; nil when the table is full.
func (l *Limiter) entryLocked(a netip.Addr, now time.Time) *entry {
	if now.Sub(l.swept) > idleAfter {
		l.sweepLocked(now)
	}
	e := l.keys[a]
	if e == nil {
		if len(l.keys) >= l.cfg.MaxKeys {
			return nil
		}
		e = &entry{tokens: float64(l.cfg.Rate.Burst), last: now}
		l.keys[a] = e
		return e
	}
	if r := l.cfg.Rate; r.PerSecond > 0 {
		e.tokens = min(float64(r.Burst), e.tokens+now.Sub(e.last).Seconds()*r.PerSecond)
	}
	e.last = now
	return e
}

func (l *Limiter) sweepLocked(now time.Time) {
	l.swept = now
	for a, e := range l.keys {
		if e.held == 0 && now.Sub(e.last) > idleAfter {
			delete(l.keys, a)
		}
	}
}

// Allow spends one action of a's rate; a *Error when a is over it.
func (l *Limiter) Allow(a netip.Addr) error {
	return l.take(a, false)
}

// Acquire spends one action of a's rate and holds one of a's Max; Release gives the hold back.
func (l *Limiter) Acquire(a netip.Addr) error {
	return l.take(a, true)
}

func (l *Limiter) take(a netip.Addr, hold bool) error {
	if !a.IsValid() || l.exempt(a) {
		return nil
	}
	a = a.Unmap()
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked(a, now)
	switch {
	case e == nil:
		l.refused++
		return &Error{Addr: a, Reason: "too many clients"}
	case hold && l.cfg.Max > 0 && e.held >= l.cfg.Max:
		l.refused++
		return &Error{Addr: a, Reason: "too many at once", Limit: l.cfg.Max}
	case l.cfg.Rate.PerSecond > 0 && e.tokens < 1:
		l.refused++
		wait := time.Duration((1 - e.tokens) / l.cfg.Rate.PerSecond * float64(time.Second))
		return &Error{Addr: a, Reason: "too fast", RetryAfter: wait}
	}
	if l.cfg.Rate.PerSecond > 0 {
		e.tokens--
	}
	if hold {
		e.held++
	}
	return nil
}

// Release gives back one hold of a taken by Acquire.
func (l *Limiter) Release(a netip.Addr) {
	if !a.IsValid() || l.exempt(a) {
		return
	}
	a = a.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.keys[a]; e != nil && e.held > 0 {
		e.held--
	}
}

// Refused counts the refusals so far.
func (l *Limiter) Refused() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refused
}

// Error is a refusal: which address, why, and when a retry may succeed (rate limits).
type Error struct {
	Addr       netip.Addr
	Reason     string
	Limit      int
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := ErrLimited.Error() + ": " + e.Addr.String() + ": " + e.Reason
	if e.Limit > 0 {
		s += " (" + strconv.Itoa(e.Limit) + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return ErrLimited }
