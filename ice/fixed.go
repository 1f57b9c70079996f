package ice

import (
	"errors"
	"net/netip"
	"syscall"

	"github.com/rtcrelay/rtcrelay/internal/hooks"
	"github.com/rtcrelay/rtcrelay/packet"
)

// The benchmark- and test-only entry points (internal/benchhooks): unexported, because they bind a remote
// address without authentication or reach around Serve.
func init() {
	hooks.FixedAgent = func(sock any, remote netip.AddrPort, ep any) (any, error) {
		return sock.(*Socket).newFixedAgent(remote, ep.(Endpoint))
	}
	hooks.SyscallConn = func(sock any) (syscall.RawConn, error) {
		s := sock.(*Socket)
		if s.conn == nil {
			return nil, errors.New("ice: the socket is not a *net.UDPConn")
		}
		return s.conn.SyscallConn()
	}
	hooks.Dispatch = func(sock any, p *packet.Buffer, from netip.AddrPort) {
		sock.(*Socket).dispatch(p, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
}

// newFixedAgent is for benchmarks and tests only: an agent without ICE whose remote is remote from the start,
// bound to ep at once (no connectivity check authenticated it). Production code uses NewAgent.
func (s *Socket) newFixedAgent(remote netip.AddrPort, ep Endpoint) (*Agent, error) {
	if !remote.IsValid() {
		return nil, errors.New("ice: invalid remote")
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	a := &Agent{s: s, ep: ep, connected: make(chan struct{}), done: make(chan struct{})}
	a.conn = newAgentConn(a)
	a.ufrag, a.pwd = randomString(8), randomString(24)
	a.log = s.log.With("ufrag", a.ufrag)
	a.bind(remote)
	a.remote.Store(&remote)
	a.connOnce.Do(func() { close(a.connected) })
	return a, nil
}
