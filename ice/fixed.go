package ice

import (
	"errors"
	"net/netip"
)

// NewFixedAgent is for benchmarks and tests only: an agent without ICE whose remote is remote from the start,
// bound to ep at once (no connectivity check authenticated it). Production code must use NewAgent.
func (s *Socket) NewFixedAgent(remote netip.AddrPort, ep Endpoint) (*Agent, error) {
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
