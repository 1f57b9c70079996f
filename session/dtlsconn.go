package session

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/transport/v5/deadline"
)

// dtlsQueueLen bounds the DTLS datagrams waiting for the handshake: a flight is a handful of datagrams, and the
// DTLS reader drains them as they come (each slot costs every session 24 bytes).
const dtlsQueueLen = 16

// dtlsConn is the per-session net.PacketConn the DTLS library runs over: the socket reader feeds it copies of
// DTLS datagrams (HandleDTLS), and writes go out of the shared socket to the current ICE remote.
type dtlsConn struct {
	s      *Session
	queue  chan []byte
	closed chan struct{}
	once   sync.Once
	rd     *deadline.Deadline
}

func newDTLSConn(s *Session) *dtlsConn {
	return &dtlsConn{s: s, queue: make(chan []byte, dtlsQueueLen), closed: make(chan struct{}), rd: deadline.New()}
}

// push queues a copy of b; false if the queue is full or closed.
func (c *dtlsConn) push(b []byte) bool {
	select {
	case <-c.closed:
		return false
	default:
	}
	select {
	case c.queue <- append([]byte(nil), b...):
		return true
	default:
		return false
	}
}

func (c *dtlsConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case d := <-c.queue:
		return copy(b, d), c.remoteAddr(), nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.rd.Done():
		return 0, nil, timeoutError{}
	}
}

func (c *dtlsConn) WriteTo(b []byte, to net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	dst := c.s.agent.Remote()
	if !dst.IsValid() {
		ua, ok := to.(*net.UDPAddr)
		if !ok {
			return 0, net.ErrClosed
		}
		dst = ua.AddrPort()
	}
	if err := c.s.cfg.Socket.WriteTo(b, dst); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *dtlsConn) remoteAddr() net.Addr {
	r := c.s.agent.Remote()
	if !r.IsValid() {
		r = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	}
	return net.UDPAddrFromAddrPort(r)
}

func (c *dtlsConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *dtlsConn) LocalAddr() net.Addr                { return net.UDPAddrFromAddrPort(c.s.cfg.Socket.LocalAddr()) }
func (c *dtlsConn) SetDeadline(t time.Time) error      { c.rd.Set(t); return nil }
func (c *dtlsConn) SetReadDeadline(t time.Time) error  { c.rd.Set(t); return nil }
func (c *dtlsConn) SetWriteDeadline(_ time.Time) error { return nil }

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
