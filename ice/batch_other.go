//go:build !linux

package ice

import "net/netip"

// Batch queues outgoing datagrams of one goroutine. Without sendmmsg (not Linux) it sends each datagram at once.
type Batch struct {
	s   *Socket
	buf []byte
}

// NewBatch returns a Batch over the socket.
func (s *Socket) NewBatch() *Batch { return &Batch{s: s, buf: make([]byte, BatchSlotSize)} }

// Buf is the slot for the next datagram: length 0, capacity BatchSlotSize.
func (b *Batch) Buf() []byte { return b.buf[:0] }

// Queue sends the first n bytes of Buf() to to.
func (b *Batch) Queue(n int, to netip.AddrPort) error { return b.s.WriteTo(b.buf[:n], to) }

// Len is the number of datagrams queued: always 0 here.
func (b *Batch) Len() int { return 0 }

// Flush has nothing to do here.
func (b *Batch) Flush() error { return nil }
