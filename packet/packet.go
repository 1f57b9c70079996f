// Package packet provides the pooled, reference-counted datagram buffers that carry RTP from the media socket
// through a session's in-place decryption into the forwarder's rings, without copies and without allocation.
package packet

import (
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
)

const (
	// Headroom is kept free in front of every datagram so that a rewritten RTP header may grow in place.
	Headroom = 64
	// MTU is the largest datagram a Buffer holds.
	MTU = 1500
	// Size is the whole backing array of a Buffer.
	Size = Headroom + MTU + 64
)

// Buffer is one datagram. The socket reader lends it to handlers for the length of a call; a handler that keeps
// it calls Retain, and whoever holds a reference calls Release exactly once when done.
type Buffer struct {
	// Header is the parsed RTP header of the plaintext, filled by the session after decryption.
	Header rtp.Header
	// Arrival is when the datagram was read, in nanoseconds of the process's monotonic clock.
	Arrival int64

	off, n int
	refs   atomic.Int32
	data   [Size]byte
}

var pool = sync.Pool{New: func() any { return new(Buffer) }}

// Get returns a Buffer holding one reference, with an empty payload just after the headroom.
func Get() *Buffer {
	b := pool.Get().(*Buffer)
	b.refs.Store(1)
	b.off, b.n = Headroom, 0
	b.Arrival = 0
	return b
}

// Retain adds a reference.
func (b *Buffer) Retain() { b.refs.Add(1) }

// Release drops a reference; the last one returns the buffer to the pool.
func (b *Buffer) Release() {
	switch r := b.refs.Add(-1); {
	case r == 0:
		pool.Put(b)
	case r < 0:
		panic("packet: Release of a free buffer")
	}
}

// Refs reports the current reference count (for tests).
func (b *Buffer) Refs() int32 { return b.refs.Load() }

// ReadSlice is the area a datagram is read into: everything after the headroom.
func (b *Buffer) ReadSlice() []byte { return b.data[Headroom : Headroom+MTU] }

// SetLen sets the length of the datagram that starts after the headroom.
func (b *Buffer) SetLen(n int) { b.off, b.n = Headroom, n }

// SetBytes narrows the buffer to p, which must be a sub-slice of this buffer's storage (e.g. the plaintext
// that in-place decryption returned).
func (b *Buffer) SetBytes(p []byte) {
	if len(p) == 0 {
		b.n = 0
		return
	}
	start := int(uintptrDiff(&p[0], &b.data[0]))
	if start < 0 || start+len(p) > Size {
		panic("packet: SetBytes with a foreign slice")
	}
	b.off, b.n = start, len(p)
}

// Bytes is the datagram or plaintext currently held.
func (b *Buffer) Bytes() []byte { return b.data[b.off : b.off+b.n : Size] }

// Len is len(Bytes()).
func (b *Buffer) Len() int { return b.n }
