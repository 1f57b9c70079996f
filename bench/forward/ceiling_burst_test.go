package forward

import (
	"context"
	"net/netip"
	"syscall"
	"testing"
	"unsafe"

	"github.com/pion/rtp"
	"golang.org/x/sys/unix"

	"github.com/rtcrelay/rtcrelay/ice"
	"github.com/rtcrelay/rtcrelay/internal/benchhooks"
	"github.com/rtcrelay/rtcrelay/srtp"
)

// burstSize is how many datagrams the burst ceiling reads per recvmmsg: the forwarder writers' burst
// (forwarder.writerBurst).
const burstSize = 16

// burstCeiling is the strongest bare loop on the forwarder's primitives and socket: one recvmmsg of up to 16
// datagrams straight from the ice.Socket's file descriptor (no demux, no packet pool), each decrypted once in
// place, then player by player and packet by packet: copy into an ice.Batch slot, rewrite SSRC and sequence
// number, EncryptRTP with the player's context, Queue; one Flush per receive burst. With GSO on, a player's
// run of equal-size packets in a burst leaves as one UDP_SEGMENT message, as the forwarder's writers send it.
// No ring, no queues, no writer goroutines, no extension rewriting.
type burstCeiling struct {
	raw   syscall.RawConn
	batch *ice.Batch
	dec   *srtp.Decrypter
	encs  []*srtp.Encrypter
	to    []netip.AddrPort
	hdr   rtp.Header
	dhdr  rtp.Header

	msgs  [burstSize]unix.Mmsghdr
	iovs  [burstSize]unix.Iovec
	bufs  [burstSize][2048]byte
	plain [burstSize][]byte
	seqs  [burstSize]uint16
	got   int
	fn    func(fd uintptr) bool
}

func (c *burstCeiling) init() {
	for i := range c.msgs {
		c.iovs[i].Base = &c.bufs[i][0]
		c.iovs[i].SetLen(len(c.bufs[i]))
		c.msgs[i].Hdr.Iov = &c.iovs[i]
		c.msgs[i].Hdr.SetIovlen(1)
	}
	c.fn = func(fd uintptr) bool {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.msgs[0])), burstSize,
			unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			return false
		}
		if e == 0 {
			c.got = int(n)
		}
		return true
	}
}

func (c *burstCeiling) run() {
	for {
		c.got = 0
		if err := c.raw.Read(c.fn); err != nil {
			return // the socket is closed
		}
		c.burst()
	}
}

func (c *burstCeiling) burst() {
	n := 0
	for j := range c.got {
		plain, err := c.dec.DecryptRTP(c.bufs[j][:c.msgs[j].Len], &c.dhdr)
		if err != nil {
			continue
		}
		c.plain[n], c.seqs[n] = plain, c.dhdr.SequenceNumber
		n++
	}
	if n == 0 {
		return
	}
	for i, enc := range c.encs {
		ssrc := uint32(i + 1)
		for j := range n {
			buf := append(c.batch.Buf(), c.plain[j]...)
			buf[8], buf[9], buf[10], buf[11] = byte(ssrc>>24), byte(ssrc>>16), byte(ssrc>>8), byte(ssrc)
			seq := c.seqs[j] + uint16(i)
			buf[2], buf[3] = byte(seq>>8), byte(seq)
			out, err := enc.EncryptRTP(buf, &c.hdr)
			if err != nil {
				continue
			}
			_ = c.batch.Queue(len(out), c.to[i])
		}
	}
	_ = c.batch.Flush()
}

func runBurstCeiling(b *testing.B, subs int, noGSO bool) {
	fl := newFlow(subs)
	rxs := receivers(b, subs, fl)
	sock := listen(b, 0, noGSO)
	pub := newPublisher(b, sock.LocalAddr())
	pk, ps := key(0)
	c := &burstCeiling{batch: sock.NewBatch()}
	c.init()
	var err error
	if _, _, c.dec, err = srtp.NewPairFromKeys(srtpProfile, pk, ps, pk, ps); err != nil {
		b.Fatal(err)
	}
	for i := range subs {
		k, s := key(i + 1)
		enc, _, _, err := srtp.NewPairFromKeys(srtpProfile, k, s, k, s)
		if err != nil {
			b.Fatal(err)
		}
		c.encs = append(c.encs, enc)
		c.to = append(c.to, rxs[i%len(rxs)].addr())
	}
	if c.raw, err = benchhooks.SyscallConn(sock); err != nil {
		b.Fatal(err)
	}
	asServer(func(context.Context) { go c.run() }) // ends when the socket closes (cleanup)
	measure(b, subs, func() { pub.send(b) }, fl)
}
