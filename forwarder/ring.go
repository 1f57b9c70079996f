package forwarder

import (
	"sync/atomic"

	"github.com/rtcrelay/rtcrelay/packet"
)

// ring is a track's recent packets indexed by sequence number: the NACK cache. Only the publisher's reader
// goroutine touches it (NACKs are served there), so it needs no lock.
type ring struct {
	slots []*packet.Buffer
	mask  uint16
	// lastKeyframe is the sequence number of the first packet of the last keyframe seen; hasKeyframe says
	// whether there was one.
	lastKeyframe uint16
	hasKeyframe  bool
}

func newRing(size int) ring {
	return ring{slots: make([]*packet.Buffer, size), mask: uint16(size - 1)}
}

// put stores p, taking over one reference, and releases whatever the slot held.
func (r *ring) put(p *packet.Buffer, keyframe bool) {
	seq := p.Header.SequenceNumber
	i := seq & r.mask
	if old := r.slots[i]; old != nil {
		old.Release()
	}
	r.slots[i] = p
	if keyframe {
		r.lastKeyframe, r.hasKeyframe = seq, true
	}
}

// get returns the packet of seq, or nil; the reference stays the ring's.
func (r *ring) get(seq uint16) *packet.Buffer {
	p := r.slots[seq&r.mask]
	if p == nil || p.Header.SequenceNumber != seq {
		return nil
	}
	return p
}

// release drops every packet.
func (r *ring) release() {
	for i, p := range r.slots {
		if p != nil {
			p.Release()
			r.slots[i] = nil
		}
	}
}

// entry is one queued reference: a packet of a track for all the writer's players of that track, or a
// retransmission to one player (dt != nil).
type entry struct {
	p        *packet.Buffer
	dt       *downTrack
	track    uint8
	keyframe bool
}

const queueSize = 512 // a power of two

// queue is a bounded single-producer single-consumer ring of entries: the producer is the publisher's reader
// goroutine, the consumer a writer goroutine.
type queue struct {
	buf  [queueSize]entry
	head atomic.Uint64 // next to pop; written by the consumer
	_    [56]byte
	tail atomic.Uint64 // next to push; written by the producer
	_    [56]byte
}

func (q *queue) push(e entry) bool {
	t := q.tail.Load()
	if t-q.head.Load() >= queueSize {
		return false
	}
	q.buf[t&(queueSize-1)] = e
	q.tail.Store(t + 1)
	return true
}

func (q *queue) pop() (entry, bool) {
	h := q.head.Load()
	if h == q.tail.Load() {
		return entry{}, false
	}
	i := h & (queueSize - 1)
	e := q.buf[i]
	q.buf[i] = entry{}
	q.head.Store(h + 1)
	return e, true
}

func (q *queue) len() int { return int(q.tail.Load() - q.head.Load()) }
