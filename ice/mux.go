package ice

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5/deadline"

	pionice "github.com/pion/ice/v4"
	"github.com/rtcrelay/rtcrelay/packet"
)

// udpMux is the pionice.UDPMux every agent of a Socket gets: GetConn hands out the agent's STUN-only conn.
type udpMux struct{ s *Socket }

var _ pionice.UDPMux = (*udpMux)(nil)

func (m *udpMux) GetConn(ufrag string, _ net.Addr) (net.PacketConn, error) {
	m.s.mu.Lock()
	a := m.s.ufrags[ufrag]
	m.s.mu.Unlock()
	if a == nil {
		return nil, errors.New("ice: no agent for ufrag")
	}
	a.conn.refs.Add(1)
	return &connRef{agentConn: a.conn}, nil
}

// RemoveConnByUfrag is called by the pion agent when it closes; the Agent itself unregisters.
func (m *udpMux) RemoveConnByUfrag(string) {}

func (m *udpMux) GetListenAddresses() []net.Addr { return m.s.listen }

// Close is a no-op: the Socket owns the port.
func (m *udpMux) Close() error { return nil }

// stunQueueLen bounds the STUN datagrams waiting for one agent: its candidate's reader drains them as they come,
// so it holds a burst of connectivity checks, not a backlog (each slot costs every agent 32 bytes).
const stunQueueLen = 16

type stunDatagram struct {
	p    *packet.Buffer
	from netip.AddrPort
}

// agentConn is the net.PacketConn one agent's candidates read STUN from and write STUN (and only STUN) to. The
// socket delivers datagrams by reference into a bounded queue; writes are inspected to learn where the agent
// sends checks (to route their responses) and whom it answers (to bind that address).
type agentConn struct {
	a      *Agent
	queue  chan stunDatagram
	closed chan struct{}
	once   sync.Once
	refs   atomic.Int32
	rd     *deadline.Deadline
}

func newAgentConn(a *Agent) *agentConn {
	return &agentConn{a: a, queue: make(chan stunDatagram, stunQueueLen), closed: make(chan struct{}), rd: deadline.New()}
}

// deliver queues p (retained) for the agent; false when the queue is full or closed. A settled agent's STUN is
// answered on the spot instead.
func (c *agentConn) deliver(p *packet.Buffer, from netip.AddrPort) bool {
	if st := c.a.settle.Load(); st != nil {
		c.a.answerCheck(st, p.Bytes(), from)
		return true
	}
	select {
	case <-c.closed:
		return false
	default:
	}
	p.Retain()
	select {
	case c.queue <- stunDatagram{p, from}:
		return true
	default:
		p.Release()
		return false
	}
}

func (c *agentConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case d := <-c.queue:
		n := copy(b, d.p.Bytes())
		d.p.Release()
		return n, d.from, nil
	case <-c.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	case <-c.rd.Done():
		return 0, netip.AddrPort{}, errTimeout
	}
}

func (c *agentConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

func (c *agentConn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	if t, ok := stunType(b); ok {
		switch t {
		case stunBindingRequest:
			c.a.sentRequest([12]byte(b[8:20]))
		case stunBindingSuccess:
			// pion answers only checks whose MESSAGE-INTEGRITY verified with our password.
			c.a.bind(to)
		}
	}
	if err := c.a.s.WriteTo(b, to); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *agentConn) WriteTo(b []byte, to net.Addr) (int, error) {
	ua, ok := to.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("ice: not a UDP address")
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

func (c *agentConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.a.s.local) }

func (c *agentConn) SetDeadline(t time.Time) error     { c.rd.Set(t); return nil }
func (c *agentConn) SetReadDeadline(t time.Time) error { c.rd.Set(t); return nil }
func (c *agentConn) SetWriteDeadline(time.Time) error  { return nil }

// shutdown closes the conn for every candidate and releases what is queued.
func (c *agentConn) shutdown() {
	c.once.Do(func() {
		close(c.closed)
		for {
			select {
			case d := <-c.queue:
				d.p.Release()
			default:
				return
			}
		}
	})
}

// connRef is what one candidate holds; the last Close shuts the shared conn.
type connRef struct {
	*agentConn
	once sync.Once
}

func (r *connRef) Close() error {
	r.once.Do(func() {
		if r.refs.Add(-1) == 0 {
			r.shutdown()
		}
	})
	return nil
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var errTimeout net.Error = timeoutError{}
