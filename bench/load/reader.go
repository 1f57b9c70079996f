package main

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/internal/benchhooks"
	"github.com/rtcrelay/rtcrelay/packet"
)

// The players' light read path. ice.Socket exports one reader, Serve: one ReadFromUDPAddrPort and one demux
// per datagram, and the session then decrypts every SRTP packet. With 1000 players on the server's own two
// cores that is most of the tool's CPU and most of the latency it measures. A player here reads its socket
// with recvmmsg (up to readBatch datagrams per syscall) and accounts SRTP from the clear RTP header (payload
// type → track, sequence number → loss); only every sampleEvery-th packet is handed to the session to be
// decrypted (for the latency stamp and the publisher's packet index). STUN, DTLS and SRTCP go through the
// socket's own demux, so ICE consent and DTLS keep working.

// Without UDP GRO a recvmmsg takes up to 32 datagrams; with it, up to 4 messages of up to 64 KiB, each possibly
// several datagrams of one size coalesced by the kernel (the server's GSO runs arrive whole on loopback).
const (
	readBatch    = 32
	groBatch     = 4
	groSlotSize  = 1 << 16
	groCmsgSpace = 64
)

// lightReader reads one player's socket.
type lightReader struct {
	sock     *ice.Socket
	pl       *player
	raw      syscall.RawConn
	gro      bool
	slotSize int
	msgs     []unix.Mmsghdr
	iovs     []unix.Iovec
	names    []unix.RawSockaddrInet6
	bufs     []byte
	ctrl     []byte
	got      int
	fn       func(fd uintptr) bool
}

func newLightReader(sock *ice.Socket, pl *player, gro bool) (*lightReader, error) {
	r := &lightReader{sock: sock, pl: pl}
	var err error
	if r.raw, err = benchhooks.SyscallConn(sock); err != nil {
		return nil, err
	}
	n, slot := readBatch, packet.MTU
	if gro {
		var serr error
		if err := r.raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1)
		}); err == nil && serr == nil {
			r.gro, n, slot = true, groBatch, groSlotSize
		}
	}
	r.slotSize = slot
	r.msgs = make([]unix.Mmsghdr, n)
	r.iovs = make([]unix.Iovec, n)
	r.names = make([]unix.RawSockaddrInet6, n)
	r.bufs = make([]byte, n*r.slotSize)
	r.ctrl = make([]byte, n*groCmsgSpace)
	for i := range r.msgs {
		r.iovs[i].Base = &r.bufs[i*r.slotSize]
		r.iovs[i].SetLen(r.slotSize)
		r.msgs[i].Hdr.Iov = &r.iovs[i]
		r.msgs[i].Hdr.SetIovlen(1)
		r.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	r.fn = func(fd uintptr) bool {
		for i := range r.msgs {
			r.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			if r.gro {
				r.msgs[i].Hdr.Control = &r.ctrl[i*groCmsgSpace]
				r.msgs[i].Hdr.SetControllen(groCmsgSpace)
			}
		}
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)),
			unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			return false
		}
		if e == 0 {
			r.got = int(n)
		}
		return true
	}
	return r, nil
}

// run reads until the socket closes.
func (r *lightReader) run() {
	for {
		r.got = 0
		if err := r.raw.Read(r.fn); err != nil {
			return
		}
		if r.got == 0 {
			continue
		}
		r.pl.mu.Lock()
		for i := range r.got {
			b := r.bufs[i*r.slotSize : i*r.slotSize+int(r.msgs[i].Len)]
			seg := r.segSize(i)
			if seg <= 0 || seg >= len(b) {
				r.handle(b, i)
				continue
			}
			for len(b) > 0 { // datagrams coalesced by GRO
				k := min(seg, len(b))
				r.handle(b[:k], i)
				b = b[k:]
			}
		}
		r.pl.mu.Unlock()
	}
}

// segSize is message i's UDP_GRO segment size, 0 if it carries one datagram.
func (r *lightReader) segSize(i int) int {
	if !r.gro {
		return 0
	}
	c := r.ctrl[i*groCmsgSpace : i*groCmsgSpace+int(r.msgs[i].Hdr.Controllen)]
	msgs, err := unix.ParseSocketControlMessage(c)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_UDP && m.Header.Type == unix.UDP_GRO && len(m.Data) >= 2 {
			if len(m.Data) >= 4 {
				return int(*(*int32)(unsafe.Pointer(&m.Data[0])))
			}
			return int(*(*uint16)(unsafe.Pointer(&m.Data[0])))
		}
	}
	return 0
}

// handle runs with pl.mu held.
func (r *lightReader) handle(b []byte, i int) {
	if len(b) >= 12 && b[0] >= 128 && b[0] <= 191 && !(b[1] >= 192 && b[1] <= 223) {
		if !r.pl.account(b) {
			return
		}
	}
	// A sampled SRTP packet, or STUN/DTLS/SRTCP: the socket's demux (and the session's decryption).
	p := packet.Get()
	n := copy(p.ReadSlice(), b)
	p.SetLen(n)
	benchhooks.Dispatch(r.sock, p, r.from(i))
	p.Release()
}

func (r *lightReader) from(i int) netip.AddrPort {
	sa := &r.names[i]
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	if sa.Family == unix.AF_INET {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
}
