// Package netguard decides which IP addresses rtcrelay's outbound connections (relay agents: WebSocket, WHIP,
// WHEP) may reach, so that a REST caller cannot make the server dial its own cloud metadata service, a
// link-local device or a multicast group.
//
// The default policy refuses unspecified, link-local (169.254.0.0/16, fe80::/10), multicast, broadcast,
// "this network" (0.0.0.0/8), reserved (240.0.0.0/4) and the cloud metadata addresses (169.254.169.254,
// fd00:ec2::254, 100.100.100.200); loopback and private ranges stay allowed, so two servers on one machine and
// a LAN cluster work out of the box. IPv4-mapped IPv6 (::ffff:a.b.c.d) and NAT64 (64:ff9b::/96) addresses are
// judged by the IPv4 address they carry. Policy.Allow replaces the default rules with an explicit list of
// prefixes; Policy.Deny adds prefixes to refuse (e.g. the private ranges, for an edge on the internet).
//
// The check runs twice: on the URI's host when a relay is asked for (CheckHost: literal addresses, the
// non-standard IPv4 spellings some resolvers accept, and the addresses a name resolves to), and on the very
// address a connection is made to (Dialer, through net.Dialer.Control), so that a name that resolves
// differently at dial time (DNS rebinding) is still refused.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrForbidden is wrapped by every refusal (errors.Is).
var ErrForbidden = errors.New("forbidden relay target")

// ForbiddenError says which address was refused and why.
type ForbiddenError struct {
	Host   string     // the host as written, when the refusal came from a name or a spelling
	Addr   netip.Addr // the address judged (invalid for a refused spelling that decodes to nothing)
	Reason string
}

func (e *ForbiddenError) Error() string {
	switch {
	case e.Host != "" && e.Addr.IsValid() && e.Host != e.Addr.String():
		return fmt.Sprintf("%v: %s is %s (%s)", ErrForbidden, e.Host, e.Addr, e.Reason)
	case e.Addr.IsValid():
		return fmt.Sprintf("%v: %s (%s)", ErrForbidden, e.Addr, e.Reason)
	default:
		return fmt.Sprintf("%v: %s (%s)", ErrForbidden, e.Host, e.Reason)
	}
}

func (e *ForbiddenError) Unwrap() error { return ErrForbidden }

// Resolver looks names up (net.DefaultResolver, or one aimed at a test DNS server).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy is the set of addresses outbound connections may reach. The zero value is the default policy.
type Policy struct {
	// Allow, when non-empty, is the only set of prefixes that may be reached (it replaces the default rules,
	// e.g. to allow a link-local cluster).
	Allow []netip.Prefix
	// Deny adds prefixes to refuse, after the default rules (e.g. 10.0.0.0/8 for an edge on the internet).
	Deny []netip.Prefix
	// Resolver resolves names for CheckHost; nil means net.DefaultResolver.
	Resolver Resolver
	// LookupTimeout bounds CheckHost's lookup; default 2 s.
	LookupTimeout time.Duration
}

type rule struct {
	p      netip.Prefix
	reason string
}

// metadata are the cloud metadata services that are not already refused as link-local.
var metadata = []rule{
	{netip.MustParsePrefix("fd00:ec2::254/128"), "cloud metadata (AWS IPv6)"},
	{netip.MustParsePrefix("100.100.100.200/32"), "cloud metadata (Alibaba)"},
}

var special = []rule{
	{netip.MustParsePrefix("169.254.169.254/32"), "link-local: cloud metadata"},
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network" (0.0.0.0/8)`},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4)"},
}

var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// judged is the address a check is about: the IPv4 address an IPv4-mapped or NAT64 address carries.
func judged(a netip.Addr) netip.Addr {
	a = a.WithZone("")
	if a.Is4In6() {
		return a.Unmap()
	}
	if nat64.Contains(a) {
		b := a.As16()
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	return a
}

// Check returns nil when a may be reached, else a *ForbiddenError with the reason.
func (p *Policy) Check(a netip.Addr) error {
	if !a.IsValid() {
		return &ForbiddenError{Reason: "not an IP address"}
	}
	j := judged(a)
	refuse := func(reason string) error { return &ForbiddenError{Addr: a, Reason: reason} }
	if len(p.Allow) > 0 {
		for _, pr := range p.Allow {
			if pr.Contains(j) || pr.Contains(a) {
				return p.checkDeny(a, j)
			}
		}
		return refuse("not in the relay allow-list of networks")
	}
	for _, r := range special {
		if r.p.Contains(j) {
			return refuse(r.reason)
		}
	}
	for _, r := range metadata {
		if r.p.Contains(j) {
			return refuse(r.reason)
		}
	}
	switch {
	case j.IsUnspecified():
		return refuse("unspecified")
	case j.IsLinkLocalUnicast():
		return refuse("link-local")
	case j.IsMulticast():
		return refuse("multicast")
	}
	return p.checkDeny(a, j)
}

func (p *Policy) checkDeny(a, j netip.Addr) error {
	for _, pr := range p.Deny {
		if pr.Contains(j) || pr.Contains(a) {
			return &ForbiddenError{Addr: a, Reason: "in the relay deny-list " + pr.String()}
		}
	}
	return nil
}

// CheckHost checks a URI's host (without port; IPv6 with or without brackets): a literal address; a
// non-standard IPv4 spelling (decimal "2130706433", hex "0x7f000001", octal "0177.0.0.1", short "127.1"),
// which is refused whatever it decodes to, since resolvers disagree on it; or a name, whose addresses are
// looked up and must all be allowed. A name that does not resolve passes: the dial will fail and say so.
func (p *Policy) CheckHost(ctx context.Context, host string) error {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		if err := p.Check(a); err != nil {
			return err
		}
		return nil
	}
	if a, ok := legacyIPv4(h); ok {
		reason := "a non-standard IPv4 spelling; write the address as " + a.String()
		if err := p.Check(a); err != nil {
			var fe *ForbiddenError
			if errors.As(err, &fe) {
				reason += ", which is refused: " + fe.Reason
			}
		}
		return &ForbiddenError{Host: host, Addr: a, Reason: reason}
	}
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	timeout := p.LookupTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", h)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if err := p.Check(a); err != nil {
			var fe *ForbiddenError
			if errors.As(err, &fe) {
				fe.Host = host
			}
			return err
		}
	}
	return nil
}

// legacyIPv4 decodes the inet_aton spellings of an IPv4 address that are not dotted-decimal quads: one to
// four parts, each decimal, 0x-hex or 0-octal, the last filling the remaining bytes.
func legacyIPv4(s string) (netip.Addr, bool) {
	if s == "" || strings.Trim(s, "0123456789abcdefABCDEFxX.") != "" {
		return netip.Addr{}, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, part := range parts {
		if part == "" {
			return netip.Addr{}, false
		}
		v, err := strconv.ParseUint(part, 0, 32) // base prefix: 0x hex, 0 octal
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var out uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		out |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*(5-len(vals))) {
		return netip.Addr{}, false
	}
	out |= last
	return netip.AddrFrom4([4]byte{byte(out >> 24), byte(out >> 16), byte(out >> 8), byte(out)}), true
}

// Control is a net.Dialer.Control function: it refuses a connection to an address the policy forbids, at
// the moment of the connect, whatever name it came from.
func (p *Policy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &ForbiddenError{Host: address, Reason: "not an IP address and port"}
	}
	return p.Check(ap.Addr())
}

// Dialer returns a net.Dialer that applies the policy to every address it connects to.
// It resolves with p.Resolver when that is a *net.Resolver.
func (p *Policy) Dialer(timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, Control: p.Control}
	if r, ok := p.Resolver.(*net.Resolver); ok {
		d.Resolver = r
	}
	return d
}
