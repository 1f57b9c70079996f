// Package vnettest builds the virtual network of the deterministic network tests: hosts on one pion/transport
// vnet router, with a fixed one-way delay and packet loss injected by a chunk filter (every k-th datagram, a
// seeded random fraction, or a cut link). Run it inside a testing/synctest bubble: vnet's router goroutine and
// its timers then run on the bubble's fake clock, so a test of seconds of network time takes milliseconds, and
// synctest fails the test if any goroutine is left blocked when it ends.
//
// The ICE, DTLS, session and relay tests build their sockets with ice.SocketConfig{Net: wan.Net(ip)}: the
// socket reads with ReadFrom and writes each datagram with WriteTo (no sendmmsg, no GSO) and nothing touches the
// host's network.
package vnettest

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/transport/v5/vnet"
)

// Config shapes the WAN.
type Config struct {
	// Delay is the one-way delay of every datagram (vnet MinDelay). There is no jitter: vnet's jitter draws
	// from the global RNG, which would make runs differ.
	Delay time.Duration
	// DropEvery drops every k-th datagram crossing the router (0: none).
	DropEvery int
	// Loss drops this fraction of datagrams, drawn from an RNG seeded with Seed.
	Loss float64
	Seed uint64
}

// WAN is one vnet router with hosts on it.
type WAN struct {
	router *vnet.Router
	nets   map[string]*vnet.Net

	mu   sync.Mutex // guards rng and seen
	rng  *rand.Rand
	seen int

	cut             atomic.Bool
	parted          atomic.Pointer[[2]string] // two hosts that cannot reach each other (Partition)
	passed, dropped atomic.Uint64
	dropEvery       int
	loss            float64
	lossOn          atomic.Bool
	only            atomic.Pointer[func([]byte) bool]
}

// New starts a router on 10.0.0.0/24 with one host per IP (e.g. "10.0.0.1"); t's cleanup stops it.
func New(t testing.TB, cfg Config, ips ...string) *WAN {
	t.Helper()
	r, err := vnet.NewRouter(&vnet.RouterConfig{
		CIDR: "10.0.0.0/24", MinDelay: cfg.Delay,
		LoggerFactory: logging.NewDefaultLoggerFactory(),
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &WAN{
		router: r, nets: make(map[string]*vnet.Net),
		rng:       rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		dropEvery: cfg.DropEvery, loss: cfg.Loss,
	}
	w.lossOn.Store(true)
	for _, ip := range ips {
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.AddNet(n); err != nil {
			t.Fatal(err)
		}
		w.nets[ip] = n
	}
	r.AddChunkFilter(w.filter)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	return w
}

// Net is the host with that IP.
func (w *WAN) Net(ip string) *vnet.Net { return w.nets[ip] }

// Cut drops every datagram while on.
func (w *WAN) Cut(on bool) { w.cut.Store(on) }

// Partition cuts the link between hosts a and b (both directions) while on; their other links stay up. Only
// one pair is partitioned at a time.
func (w *WAN) Partition(a, b string, on bool) {
	if !on {
		w.parted.Store(nil)
		return
	}
	w.parted.Store(&[2]string{a, b})
}

// SetLoss turns the configured DropEvery and Loss on or off (on at start).
func (w *WAN) SetLoss(on bool) { w.lossOn.Store(on) }

// Only restricts the loss, and the Passed and Dropped counts, to the datagrams whose payload f matches (nil:
// all) and restarts the DropEvery count, e.g. to count exactly the RTP lost while keepalives cross.
func (w *WAN) Only(f func(payload []byte) bool) {
	w.mu.Lock()
	w.seen = 0 // DropEvery counts the matching datagrams from here
	w.mu.Unlock()
	if f == nil {
		w.only.Store(nil)
		return
	}
	w.only.Store(&f)
}

// Passed and Dropped count the datagrams the filter let through and dropped.
func (w *WAN) Passed() uint64  { return w.passed.Load() }
func (w *WAN) Dropped() uint64 { return w.dropped.Load() }

func (w *WAN) filter(c vnet.Chunk) bool {
	ok := !w.cut.Load()
	if p := w.parted.Load(); p != nil && ok {
		src, dst := hostOf(c.SourceAddr()), hostOf(c.DestinationAddr())
		if (src == p[0] && dst == p[1]) || (src == p[1] && dst == p[0]) {
			ok = false
		}
	}
	if f := w.only.Load(); f != nil && !(*f)(c.UserData()) {
		return ok
	}
	if ok && w.lossOn.Load() && (w.dropEvery > 0 || w.loss > 0) {
		w.mu.Lock()
		w.seen++
		if w.dropEvery > 0 && w.seen%w.dropEvery == 0 {
			ok = false
		}
		if w.loss > 0 && w.rng.Float64() < w.loss {
			ok = false
		}
		w.mu.Unlock()
	}
	if ok {
		w.passed.Add(1)
	} else {
		w.dropped.Add(1)
	}
	return ok
}

func hostOf(a net.Addr) string {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.IP.String()
	}
	h, _, _ := net.SplitHostPort(a.String())
	return h
}
