package forwarder

import (
	"sync/atomic"

	"github.com/rtcrelay/rtcrelay/packet"
)

// A writer goroutine sends to a group of players. It owns their sequence state and the encrypt contexts behind
// their Downstream.WriteRTP, and a scratch buffer that each outgoing packet is rewritten into.
type writer struct {
	st    *Stream
	q     queue
	sleep atomic.Bool   // the goroutine is (about to be) parked; the producer must wake it
	wake  chan struct{} // capacity 1
	ctrl  chan chan struct{}
	quit  chan struct{}
	done  chan struct{}

	// dts is, per track index, the snapshot of this writer's players of that track (copy-on-write under
	// the stream's mutex).
	dts [maxTracks]atomic.Pointer[[]*downTrack]

	nplayers int // under the stream's mutex

	// Counters, written by this goroutine (and drops by the reader); summed into the stream's stats.
	packetsOut atomic.Uint64
	bytesOut   atomic.Uint64
	drops      atomic.Uint64 // queue full: entries (each one is a drop for every player of the track here)

	scratch []byte
}

func newWriter(st *Stream) *writer {
	return &writer{
		st:      st,
		wake:    make(chan struct{}, 1),
		ctrl:    make(chan chan struct{}),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		scratch: make([]byte, packet.Size+maxGrowth+64),
	}
}

// enqueue is called by the producer (the publisher's reader) with a reference it hands over; false means the
// queue was full and the reference is still the caller's.
func (w *writer) enqueue(e entry) bool {
	if !w.q.push(e) {
		return false
	}
	if w.sleep.Load() {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// barrier returns once the writer has finished the entry it was working on, so that it sees snapshots
// replaced before the call.
func (w *writer) barrier() {
	ack := make(chan struct{})
	select {
	case w.ctrl <- ack:
		select {
		case <-ack:
		case <-w.done:
		}
	case <-w.done:
	}
}

const writerBatch = 64

func (w *writer) run() {
	defer close(w.done)
	for {
		for range writerBatch {
			e, ok := w.q.pop()
			if !ok {
				break
			}
			w.handle(e)
		}
		if w.q.len() > 0 {
			select {
			case ack := <-w.ctrl:
				close(ack)
			case <-w.quit:
				w.drain()
				return
			default:
			}
			continue
		}
		w.sleep.Store(true)
		if w.q.len() > 0 {
			w.sleep.Store(false)
			continue
		}
		select {
		case <-w.wake:
		case ack := <-w.ctrl:
			close(ack)
		case <-w.quit:
			w.sleep.Store(false)
			w.drain()
			return
		}
		w.sleep.Store(false)
	}
}

// drain releases what is left in the queue; the producer has stopped.
func (w *writer) drain() {
	for {
		e, ok := w.q.pop()
		if !ok {
			return
		}
		e.p.Release()
	}
}

func (w *writer) handle(e entry) {
	defer e.p.Release()
	src := e.p.Bytes()
	l, ok := parseLayout(src)
	if !ok {
		return
	}
	now := e.p.Arrival // the socket reader's stamp; abs-send-time is restamped from it
	if now == 0 {
		now = w.st.mono()
	}
	if e.dt != nil {
		if e.dt.p.closed.Load() || !e.dt.started {
			return
		}
		if w.send(e.dt, e.p, src, l, now, true) {
			e.dt.p.stats.retransmits.Add(1)
		}
		return
	}
	list := w.dts[e.track].Load()
	if list == nil {
		return
	}
	var n, bytes uint64
	for _, dt := range *list {
		if !dt.started {
			if dt.t.video && !e.keyframe {
				dt.p.stats.skipped.Add(1)
				continue
			}
			dt.start(e.p.Header.SequenceNumber)
		}
		if w.send(dt, e.p, src, l, now, false) {
			n++
			bytes += uint64(len(src))
		}
	}
	if n > 0 {
		w.packetsOut.Add(n)
		w.bytesOut.Add(bytes)
	}
}

// send rewrites src for dt into the scratch buffer and writes it.
func (w *writer) send(dt *downTrack, p *packet.Buffer, src []byte, l layout, now int64, retransmit bool) bool {
	pubSeq := p.Header.SequenceNumber
	if !retransmit {
		dt.follow(pubSeq)
	}
	pl := dt.p
	pl.twseq++
	s := stamp{twseq: pl.twseq, absSend: uint32((uint64(now)/1000)<<18/1e6) & 0xFFFFFF}
	n := dt.rw.rewrite(w.scratch, src, l, pubSeq+dt.seqOff, p.Header.Timestamp+dt.tsOff, s)
	if err := pl.out.WriteRTP(w.scratch[:n]); err != nil {
		pl.stats.writeErrors.Add(1)
		return false
	}
	dt.packets.Add(1)
	dt.octets.Add(uint64(l.payloadEnd - l.payload))
	return true
}
