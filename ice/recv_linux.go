package ice

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rtcrelay/rtcrelay/packet"
)

// recvBatch reads the socket with recvmmsg: up to len(bufs) datagrams per syscall into pooled packet buffers,
// with the message headers, addresses and the closure built once, so that reading allocates nothing.
type recvBatch struct {
	s     *Socket
	bufs  []*packet.Buffer
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	got   int
	errno error
	fn    func(fd uintptr) bool
}

func newRecvBatch(s *Socket, n int) *recvBatch {
	r := &recvBatch{s: s, bufs: make([]*packet.Buffer, n), msgs: make([]unix.Mmsghdr, n),
		iovs: make([]unix.Iovec, n), names: make([]unix.RawSockaddrInet6, n)}
	for i := range n {
		r.bufs[i] = packet.Get()
		r.arm(i)
	}
	r.fn = r.recv
	return r
}

// arm points slot i's message at its buffer and address.
func (r *recvBatch) arm(i int) {
	rs := r.bufs[i].ReadSlice()
	r.iovs[i].Base = &rs[0]
	r.iovs[i].SetLen(len(rs))
	h := &r.msgs[i].Hdr
	h.Iov = &r.iovs[i]
	h.SetIovlen(1)
	h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	h.Namelen = unix.SizeofSockaddrInet6
}

// recv is the RawConn.Read callback; false asks the poller to wait for data.
func (r *recvBatch) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)),
			unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			r.got = int(n)
		case unix.EAGAIN:
			return false
		case unix.EINTR:
			continue
		default:
			r.errno = e
		}
		return true
	}
}

func (r *recvBatch) release() {
	for _, p := range r.bufs {
		p.Release()
	}
}

// from decodes slot i's source address.
func (r *recvBatch) from(i int) (netip.AddrPort, bool) {
	sa := &r.names[i]
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := s4.Port>>8 | s4.Port<<8
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port), true
	case unix.AF_INET6:
		port := sa.Port>>8 | sa.Port<<8
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port), true
	}
	return netip.AddrPort{}, false
}

// serveBatched is Serve's loop with recvmmsg. It reports false when the socket cannot be read this way (then
// Serve reads one datagram at a time).
func (s *Socket) serveBatched(ctx context.Context) (bool, error) {
	if s.raw == nil || s.recvBatch <= 1 {
		return false, nil
	}
	r := newRecvBatch(s, s.recvBatch)
	defer r.release()
	for {
		r.got, r.errno = 0, nil
		err := s.raw.Read(r.fn)
		if err == nil && r.errno != nil {
			err = r.errno
		}
		if err != nil {
			if ctx.Err() != nil {
				return true, ctx.Err()
			}
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return true, nil
			}
			s.c.readErrors.Add(1)
			s.log.Warn("media socket read", "err", err)
			if errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ENOBUFS) {
				time.Sleep(time.Millisecond) // avoid spinning on a persistent resource error
			}
			continue
		}
		arrival := int64(time.Since(s.epoch))
		for i := range r.got {
			p := r.bufs[i]
			from, ok := r.from(i)
			if !ok {
				s.drop(&s.c.unknown, "unknown address family", from)
			} else {
				p.SetLen(int(r.msgs[i].Len))
				p.Arrival = arrival
				s.dispatch(p, from)
			}
			// A handler that kept the datagram owns it now; the slot gets a fresh buffer.
			if p.Refs() != 1 {
				p.Release()
				r.bufs[i] = packet.Get()
				r.arm(i)
			} else {
				r.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			}
		}
	}
}
