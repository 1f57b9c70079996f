package limits

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(Config{Rate: Rate{PerSecond: 2, Burst: 3}, Max: 2, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		MaxKeys: 3, Now: func() time.Time { return now }})
	a := netip.MustParseAddr("10.0.0.1")
	for i := range 3 {
		if err := l.Allow(a); err != nil {
			t.Fatalf("burst %d: %v", i, err)
		}
	}
	var le *Error
	if err := l.Allow(a); !errors.Is(err, ErrLimited) || !errors.As(err, &le) || le.Reason != "too fast" || le.RetryAfter != 500*time.Millisecond {
		t.Fatalf("over the burst: %v", err)
	}
	now = now.Add(time.Second) // two tokens back
	for range 2 {
		if err := l.Acquire(a); err != nil {
			t.Fatalf("refill: %v", err)
		}
	}
	now = now.Add(10 * time.Second)
	if err := l.Acquire(a); !errors.As(err, &le) || le.Reason != "too many at once" {
		t.Fatalf("over Max: %v", err)
	}
	l.Release(a)
	if err := l.Acquire(a); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if err := l.Acquire(netip.MustParseAddr("::ffff:10.0.0.1")); err == nil {
		t.Fatal("an IPv4-mapped address is the same client")
	}
	for range 100 {
		if err := l.Acquire(netip.MustParseAddr("127.0.0.1")); err != nil {
			t.Fatalf("exempt: %v", err)
		}
	}
	_ = l.Allow(netip.MustParseAddr("10.0.0.2"))
	_ = l.Allow(netip.MustParseAddr("10.0.0.3"))
	if err := l.Allow(netip.MustParseAddr("10.0.0.4")); !errors.As(err, &le) || le.Reason != "too many clients" {
		t.Fatalf("a full table: %v", err)
	}
	now = now.Add(2 * time.Minute) // idle addresses are forgotten; 10.0.0.1 still holds two
	if err := l.Allow(netip.MustParseAddr("10.0.0.4")); err != nil {
		t.Fatalf("after the sweep: %v", err)
	}
	if l.Refused() != 4 {
		t.Fatalf("refused %d", l.Refused())
	}
}
