// Package dnstest is a real DNS server for tests: it answers A and AAAA queries from a table on a loopback UDP
// port, and the *net.Resolver it returns asks it (the Go resolver, no system configuration involved).
package dnstest

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Serve answers A/AAAA queries from table on a loopback UDP port; a name with several entries answers them
// in turn (a rebinding name).
func Serve(t testing.TB, table map[string][]string) *net.Resolver {
	t.Helper()
	pc, err := (&net.ListenConfig{}).ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var n [2]atomic.Int64 // per query type (A, AAAA)
	go func() {
		buf := make([]byte, 1500)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var msg dnsmessage.Message
			if err := msg.Unpack(buf[:k]); err != nil || len(msg.Questions) != 1 {
				continue
			}
			q := msg.Questions[0]
			resp := dnsmessage.Message{Header: dnsmessage.Header{ID: msg.ID, Response: true, Authoritative: true}, Questions: msg.Questions}
			entries := table[strings.TrimSuffix(q.Name.String(), ".")]
			if len(entries) == 0 {
				resp.RCode = dnsmessage.RCodeNameError
			} else {
				i := 0
				if q.Type == dnsmessage.TypeAAAA {
					i = 1
				}
				a := netip.MustParseAddr(entries[int(n[i].Add(1)-1)%len(entries)])
				h := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}
				switch {
				case q.Type == dnsmessage.TypeA && a.Is4():
					h.Type = dnsmessage.TypeA
					resp.Answers = append(resp.Answers, dnsmessage.Resource{Header: h, Body: &dnsmessage.AResource{A: a.As4()}})
				case q.Type == dnsmessage.TypeAAAA && !a.Is4():
					h.Type = dnsmessage.TypeAAAA
					resp.Answers = append(resp.Answers, dnsmessage.Resource{Header: h, Body: &dnsmessage.AAAAResource{AAAA: a.As16()}})
				}
			}
			out, err := resp.Pack()
			if err == nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp4", addr)
	}}
}
