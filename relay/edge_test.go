package relay

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rtcrelay/rtcrelay/media"
)

// TestEdgeSharedPullAndIdle: two players of a stream in the directory share one pull agent (origin "directory"),
// which ends IdleTimeout after the last player left; an unknown name is ErrNotInDirectory (media.ErrNotFound).
func TestEdgeSharedPullAndIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, r := newFakeEngine(), newFakeRemote()
		m := newTestManager(t, e, r, nil)
		var lookups atomic.Int32
		edge := NewEdge(m, EdgeConfig{IdleTimeout: 3 * time.Second, Lookup: func(_ context.Context, name string) (string, int, bool, error) {
			lookups.Add(1)
			if name != "s" {
				return "", 0, false, nil
			}
			return "ws://origin", 0, true, nil
		}})
		ctx := t.Context()
		rel1, err := edge.Acquire(ctx, "s", nil)
		if err != nil {
			t.Fatalf("first Acquire: %v", err)
		}
		rel2, err := edge.Acquire(ctx, "s", nil)
		if err != nil {
			t.Fatalf("second Acquire: %v", err)
		}
		all := m.FindAll()
		if len(all) != 1 || all[0].Origin != "directory" || all[0].Direction != DirectionPull || all[0].URI != "ws://origin" ||
			all[0].Status != StatusProcessedRemote {
			t.Fatalf("agents %+v, want one directory pull from ws://origin", all)
		}
		if st := edge.Stats(); st.PullsStarted != 1 || st.Active != 1 {
			t.Fatalf("stats %+v", st)
		}
		if _, err := edge.Acquire(ctx, "nope", nil); !errors.Is(err, ErrNotInDirectory) || !errors.Is(err, media.ErrNotFound) {
			t.Fatalf("Acquire of an unknown name: %v", err)
		}
		rel1()
		rel1() // idempotent
		time.Sleep(10 * time.Second)
		if len(m.FindAll()) != 1 {
			t.Fatal("the pull ended while a player remained")
		}
		rel2()
		time.Sleep(2 * time.Second)
		if len(m.FindAll()) != 1 {
			t.Fatal("the pull ended before its idle timeout")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if all := m.FindAll(); len(all) != 0 {
			t.Fatalf("after the idle timeout: %+v", all)
		}
		if st := edge.Stats(); st.PullsEnded != 1 || st.Active != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestEdgeHopLimit: a stream already MaxHops-1 hops from its publisher, or a requester whose path is that long, is
// refused with media.ErrRestricted ("Restricted access").
func TestEdgeHopLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, r := newFakeEngine(), newFakeRemote()
		m := newTestManager(t, e, r, nil)
		edge := NewEdge(m, EdgeConfig{MaxHops: 3, Lookup: func(context.Context, string) (string, int, bool, error) {
			return "ws://origin", 2, true, nil
		}})
		if _, err := edge.Acquire(t.Context(), "s", nil); !errors.Is(err, media.ErrRestricted) {
			t.Fatalf("a stream 2 hops away with MaxHops 3: %v, want ErrRestricted", err)
		}
		if _, err := edge.Acquire(t.Context(), "s", []string{"X", "Y"}); !errors.Is(err, media.ErrRestricted) {
			t.Fatalf("a requester 2 hops down: %v, want ErrRestricted", err)
		}
		if len(m.FindAll()) != 0 {
			t.Fatal("a refused Acquire started a pull")
		}
	})
}

// TestEdgeFollowsOrigin: the edge pull looks its origin up before every attempt: when the stream moves, a reconnect
// goes to the new origin.
func TestEdgeFollowsOrigin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, r := newFakeEngine(), newFakeRemote()
		m := newTestManager(t, e, r, nil)
		var origin atomic.Value
		origin.Store("ws://a")
		edge := NewEdge(m, EdgeConfig{Lookup: func(context.Context, string) (string, int, bool, error) {
			return origin.Load().(string), 0, true, nil
		}})
		rel, err := edge.Acquire(t.Context(), "s", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer edge.Close()
		defer rel()
		c := <-r.dials
		origin.Store("ws://c")
		c.Close() // the link to a drops
		ai := waitStatus(t, m, m.FindAll()[0].LocalMediaSessionID, StatusProcessedRemote)
		for ai.URI != "ws://c" {
			time.Sleep(100 * time.Millisecond)
			ai = m.FindAll()[0]
		}
		if ai.Reconnects == 0 {
			t.Fatalf("agent %+v: want a reconnect", ai)
		}
	})
}
