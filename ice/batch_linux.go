package ice

import (
	"errors"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batch queues outgoing datagrams of one goroutine and sends them together: with one sendmmsg per flush and,
// when the socket's config allows it, runs of equal-size datagrams to the same remote coalesced into one UDP GSO
// (UDP_SEGMENT) message. The message headers, addresses and the sendmmsg closure are built once: queueing and
// flushing allocate nothing. A Batch belongs to one goroutine; several may send on one socket at once.
//
// The producer writes a datagram into Buf(), then calls Queue with its length and destination. Queue flushes
// when every slot is used or the slab has no room for another datagram of BatchSlotSize; the owner calls Flush
// when it has nothing more to send right now.
//
// The datagrams are packed one after the other into one slab of SocketConfig.SendBatchBytes (not one
// BatchSlotSize slot each): a batch's memory is what one sendmmsg carries, about 1.2 kB per video datagram.
type Batch struct {
	s    *Socket
	max  int
	gso  bool
	v6   bool
	slab []byte
	off  int // where the next datagram goes in slab

	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ctrl  []byte // per message, one UDP_SEGMENT control message
	first []int  // per message, its first slot
	segs  []int  // per message, its number of datagrams
	to    []netip.AddrPort

	slots, nmsg int
	segSize     int  // the open GSO message's segment size
	closed      bool // the open GSO message ended with a shorter datagram
	msgBytes    int

	done  int   // messages sent by the current flush
	errno error // the error of the message that failed
	fn    func(fd uintptr) bool
}

var cmsgSpace = unix.CmsgSpace(2)

// NewBatch returns a Batch over the socket, configured by SocketConfig.SendBatch and GSO.
func (s *Socket) NewBatch() *Batch {
	n := s.sendBatch
	b := &Batch{s: s, max: n, gso: s.gso && n > 1, v6: s.v6}
	size := BatchSlotSize
	if n > 1 {
		size = max(s.sendBatchBytes, BatchSlotSize)
	}
	b.slab = make([]byte, size)
	b.msgs = make([]unix.Mmsghdr, n)
	b.iovs = make([]unix.Iovec, n)
	b.names = make([]unix.RawSockaddrInet6, n)
	b.ctrl = make([]byte, n*cmsgSpace)
	b.first = make([]int, n)
	b.segs = make([]int, n)
	b.to = make([]netip.AddrPort, n)
	for i := range n {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b.ctrl[i*cmsgSpace]))
		h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
	}
	b.fn = b.send
	return b
}

// Buf is the slot for the next datagram: length 0, capacity BatchSlotSize.
func (b *Batch) Buf() []byte { return b.slab[b.off : b.off : b.off+BatchSlotSize] } // Queue flushes before it runs out

// Queue queues the first n bytes of Buf() for to; it flushes when the batch is full. The error is that of a
// flush (the datagrams are then dropped and counted).
func (b *Batch) Queue(n int, to netip.AddrPort) error {
	if b.max <= 1 {
		return b.s.WriteTo(b.slab[:n], to)
	}
	i := b.slots
	b.iovs[i].Base = &b.slab[b.off]
	b.iovs[i].SetLen(n)
	b.slots++
	b.off += (n + 7) &^ 7 // the next datagram 8-byte aligned
	if m := b.nmsg - 1; b.gso && m >= 0 && !b.s.gsoOff.Load() && !b.closed && b.to[m] == to && n <= b.segSize &&
		b.segs[m] < maxGSOSegments && b.msgBytes+n <= maxGSOBytes {
		b.segs[m]++
		b.msgBytes += n
		b.closed = n < b.segSize
		h := &b.msgs[m].Hdr
		h.SetIovlen(b.segs[m])
		if b.segs[m] == 2 {
			c := b.ctrl[m*cmsgSpace : (m+1)*cmsgSpace]
			*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(b.segSize)
			h.Control = &c[0]
			h.SetControllen(cmsgSpace)
		}
	} else {
		m = b.nmsg
		b.nmsg++
		b.first[m], b.segs[m], b.to[m] = i, 1, to
		b.segSize, b.closed, b.msgBytes = n, false, n
		h := &b.msgs[m].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[m]))
		h.Namelen = b.sockaddr(&b.names[m], to)
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Control = nil
		h.SetControllen(0)
	}
	if b.slots == b.max || b.off+BatchSlotSize > len(b.slab) {
		return b.Flush()
	}
	return nil
}

func (b *Batch) sockaddr(sa *unix.RawSockaddrInet6, to netip.AddrPort) uint32 {
	port := to.Port()
	if !b.v6 {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		s4.Family = unix.AF_INET
		s4.Port = port<<8 | port>>8
		s4.Addr = to.Addr().Unmap().As4()
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	sa.Port = port<<8 | port>>8
	sa.Flowinfo, sa.Scope_id = 0, 0
	sa.Addr = to.Addr().As16()
	return unix.SizeofSockaddrInet6
}

// Len is the number of datagrams queued.
func (b *Batch) Len() int { return b.slots }

// Flush sends what is queued. Datagrams the kernel refuses are dropped and counted in the socket's write
// errors; the first such error is returned.
func (b *Batch) Flush() error {
	if b.nmsg == 0 {
		return nil
	}
	var first error
	b.done = 0
	for b.done < b.nmsg {
		b.errno = nil
		if err := b.s.raw.Write(b.fn); err != nil { // the socket is closed
			b.s.c.writeErrors.Add(uint64(b.slots))
			first = err
			break
		}
		if b.errno == nil {
			continue
		}
		m := b.done
		b.done++
		if b.segs[m] > 1 && (errors.Is(b.errno, unix.EIO) || errors.Is(b.errno, unix.EINVAL)) {
			b.gsoFailed(m)
			continue
		}
		b.s.c.writeErrors.Add(uint64(b.segs[m]))
		if first == nil {
			first = b.errno
		}
	}
	b.slots, b.nmsg, b.off = 0, 0, 0
	return first
}

// send is the RawConn.Write callback: sendmmsg from b.done on; false asks the poller to wait for room.
func (b *Batch) send(fd uintptr) bool {
	for b.done < b.nmsg {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[b.done])),
			uintptr(b.nmsg-b.done), unix.MSG_DONTWAIT, 0, 0)
		b.s.c.syscalls.Add(1)
		if e == unix.EAGAIN {
			return false
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			b.errno = e
			return true
		}
		for i := b.done; i < b.done+int(r); i++ {
			b.s.c.sent.Add(uint64(b.segs[i]))
			b.s.c.sentBytes.Add(uint64(b.msgs[i].Len))
			if b.segs[i] > 1 {
				b.s.c.gsoMessages.Add(1)
			}
		}
		b.done += int(r)
	}
	return true
}

// gsoFailed resends message m's datagrams one by one and stops coalescing on this socket: the kernel or the
// route does not support UDP GSO.
func (b *Batch) gsoFailed(m int) {
	if b.s.gsoOff.CompareAndSwap(false, true) {
		b.s.log.Warn("UDP GSO refused by the kernel; sending datagrams one by one", "err", b.errno)
	}
	b.s.c.gsoFailures.Add(1)
	b.gso = false
	for i := b.first[m]; i < b.first[m]+b.segs[m]; i++ {
		_ = b.s.WriteTo(unsafe.Slice(b.iovs[i].Base, b.iovs[i].Len), b.to[m])
	}
}
