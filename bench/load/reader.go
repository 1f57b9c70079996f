package main

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/packet"
)

// The players' light read path. ice.Socket exports one reader, Serve: one ReadFromUDPAddrPort and one demux
// per datagram, and the session then decrypts every SRTP packet. With 1000 players on the server's own two
// cores that is most of the tool's CPU and most of the latency it measures. A player here reads its socket
// with recvmmsg (up to readBatch datagrams per syscall) and accounts SRTP from the clear RTP header (payload
// type → track, sequence number → loss); only every sampleEvery-th packet is handed to the session to be
// decrypted (for the latency stamp and the publisher's packet index). STUN, DTLS and SRTCP go through the
// socket's own demux, so ICE consent and DTLS keep working.
//
// Neither the socket's conn nor its demux is exported (product code needs neither), so this file reaches
// them through reflection and a linkname; the tool fails at start-up (conn) or at link time (dispatch) if
// ice changes them.

//go:linkname socketDispatch github.com/rtcrelay/rtcrelay/ice.(*Socket).dispatch
func socketDispatch(s *ice.Socket, p *packet.Buffer, from netip.AddrPort)

const readBatch = 32

// socketConn is the ice.Socket's UDP conn.
func socketConn(s *ice.Socket) (*net.UDPConn, error) {
	f := reflect.ValueOf(s).Elem().FieldByName("conn")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*net.UDPConn]() {
		return nil, errors.New("ice.Socket has no conn *net.UDPConn field any more: update bench/load/reader.go")
	}
	return *(**net.UDPConn)(unsafe.Pointer(f.UnsafeAddr())), nil
}

// lightReader reads one player's socket.
type lightReader struct {
	sock  *ice.Socket
	pl    *player
	raw   syscall.RawConn
	msgs  [readBatch]unix.Mmsghdr
	iovs  [readBatch]unix.Iovec
	names [readBatch]unix.RawSockaddrInet6
	bufs  [readBatch][packet.MTU]byte
	got   int
	fn    func(fd uintptr) bool
}

func newLightReader(sock *ice.Socket, pl *player) (*lightReader, error) {
	conn, err := socketConn(sock)
	if err != nil {
		return nil, err
	}
	r := &lightReader{sock: sock, pl: pl}
	if r.raw, err = conn.SyscallConn(); err != nil {
		return nil, err
	}
	for i := range r.msgs {
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(len(r.bufs[i]))
		r.msgs[i].Hdr.Iov = &r.iovs[i]
		r.msgs[i].Hdr.SetIovlen(1)
		r.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	r.fn = func(fd uintptr) bool {
		for i := range r.msgs {
			r.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		}
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), readBatch,
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
			r.handle(r.bufs[i][:r.msgs[i].Len], i)
		}
		r.pl.mu.Unlock()
	}
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
	socketDispatch(r.sock, p, r.from(i))
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
