package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rtcrelay/rtcrelay/internal/dnstest"
)

func TestCheck(t *testing.T) {
	var def Policy
	for _, tc := range []struct {
		addr   string
		reason string // "" = allowed
	}{
		{"127.0.0.1", ""}, {"::1", ""}, {"10.1.2.3", ""}, {"192.168.1.10", ""}, {"172.16.0.1", ""}, {"fd12::1", ""},
		{"203.0.113.7", ""}, {"2001:db8::1", ""},
		{"169.254.169.254", "cloud metadata"}, {"169.254.1.1", "link-local"}, {"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"}, {"fd00:ec2::254", "cloud metadata"}, {"100.100.100.200", "cloud metadata"},
		{"224.0.0.1", "multicast"}, {"239.1.1.1", "multicast"}, {"ff02::1", "multicast"}, {"0.0.0.0", "this network"},
		{"::", "unspecified"}, {"255.255.255.255", "broadcast"}, {"240.0.0.1", "reserved"},
		{"::ffff:169.254.169.254", "cloud metadata"}, {"::ffff:127.0.0.1", ""}, {"64:ff9b::a9fe:a9fe", "cloud metadata"},
		{"::ffff:224.0.0.1", "multicast"},
	} {
		err := def.Check(netip.MustParseAddr(tc.addr))
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.addr, err)
		case tc.reason != "" && (err == nil || !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tc.reason)):
			t.Errorf("%s: %v, want refused for %q", tc.addr, err, tc.reason)
		}
	}

	lan := Policy{Allow: []netip.Prefix{netip.MustParsePrefix("169.254.10.0/24")}}
	if err := lan.Check(netip.MustParseAddr("169.254.10.5")); err != nil {
		t.Errorf("allow-list: %v", err)
	}
	if err := lan.Check(netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Error("allow-list let an address outside it through")
	}
	edge := Policy{Deny: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if err := edge.Check(netip.MustParseAddr("10.9.9.9")); err == nil || !strings.Contains(err.Error(), "deny-list") {
		t.Errorf("deny-list: %v", err)
	}
	if err := edge.Check(netip.MustParseAddr("::ffff:10.9.9.9")); err == nil {
		t.Error("deny-list: an IPv4-mapped address slipped through")
	}
}

func TestCheckHostSpellings(t *testing.T) {
	var p Policy
	for _, h := range []string{"2130706433", "0x7f000001", "0177.0.0.1", "127.1", "2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.43518"} {
		err := p.CheckHost(context.Background(), h)
		if err == nil || !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "non-standard IPv4") {
			t.Errorf("%s: %v, want refused as a non-standard spelling", h, err)
		}
		if strings.HasPrefix(h, "2852") || strings.Contains(h, "a9fe") || strings.HasPrefix(h, "0251") || strings.HasPrefix(h, "169") {
			if !strings.Contains(err.Error(), "169.254.169.254") || !strings.Contains(err.Error(), "metadata") {
				t.Errorf("%s: %v, want the decoded metadata address named", h, err)
			}
		}
	}
	for _, h := range []string{"127.0.0.1", "[::1]", "::1"} {
		if err := p.CheckHost(context.Background(), h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if err := p.CheckHost(context.Background(), "[fe80::1]"); err == nil {
		t.Error("[fe80::1] allowed")
	}
}

// TestCheckHostNames resolves names through a real DNS server on loopback.
func TestCheckHostNames(t *testing.T) {
	r := dnstest.Serve(t, map[string][]string{
		"meta.test": {"169.254.169.254"}, "mapped.test": {"::ffff:169.254.169.254"}, "mcast.test": {"239.0.0.1"},
		"ok.test": {"127.0.0.1"},
	})
	p := Policy{Resolver: r}
	for name, reason := range map[string]string{"meta.test": "metadata", "mapped.test": "metadata", "mcast.test": "multicast"} {
		err := p.CheckHost(context.Background(), name)
		if err == nil || !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: %v, want refused for %s", name, err, reason)
		}
	}
	if err := p.CheckHost(context.Background(), "ok.test"); err != nil {
		t.Errorf("ok.test: %v", err)
	}
	if err := p.CheckHost(context.Background(), "missing.test"); err != nil {
		t.Errorf("an unresolvable name is left to the dial: %v", err)
	}
}

// TestDialer: the connect-time check refuses what a name resolves to at dial time (a rebinding name that
// answered 127.0.0.1 to the REST-time check), and lets allowed addresses through.
func TestDialer(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	r := dnstest.Serve(t, map[string][]string{"rebind.test": {"127.0.0.1", "169.254.169.254"}})
	p := Policy{Resolver: r}
	if err := p.CheckHost(context.Background(), "rebind.test"); err != nil {
		t.Fatalf("first answer: %v", err)
	}
	d := p.Dialer(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := d.DialContext(ctx, "tcp4", "rebind.test:"+port); err == nil || !errors.Is(err, ErrForbidden) {
		t.Fatalf("dial after rebinding: %v, want refused", err)
	}
	c, err := d.DialContext(ctx, "tcp4", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("loopback dial: %v", err)
	}
	c.Close()
	if _, err := d.DialContext(ctx, "tcp4", "[::ffff:169.254.169.254]:80"); err == nil || !errors.Is(err, ErrForbidden) {
		t.Fatalf("mapped metadata dial: %v", err)
	}
}

func FuzzCheckHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "0x7f.1", "[::1]", "2130706433", "a.b", "0.0.0.0", "1.2.3.4.5", ""} {
		f.Add(s)
	}
	p := Policy{Resolver: failResolver{}}
	f.Fuzz(func(t *testing.T, host string) {
		err := p.CheckHost(context.Background(), host)
		if err != nil && !errors.Is(err, ErrForbidden) {
			t.Fatalf("%q: %v does not wrap ErrForbidden", host, err)
		}
	})
}

type failResolver struct{}

func (failResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return nil, errors.New("no DNS in the fuzzer")
}
