package forwarder

import (
	"sync/atomic"

	"github.com/rtcrelay/rtcrelay/packet"
)

// A writer goroutine sends to a group of players. It owns their sequence state and the encrypt contexts behind
// their Downstream.WriteRTPBatch, and one batch per Sender its players send on.
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

	pend [writerBurst]pending
	// The writer's batches, one per sender its players send on (trs[i] → batches[i]).
	trs     []Sender
	batches []BatchSender
}

func newWriter(st *Stream) *writer {
	return &writer{
		st:   st,
		wake: make(chan struct{}, 1),
		ctrl: make(chan chan struct{}),
		quit: make(chan struct{}),
		done: make(chan struct{}),
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

// writerBurst is how many queued packets a writer takes at a time: it sends them player by player, so that a
// player's packets leave in one run (coalescable into one UDP GSO message), and flushes its batches when the
// queue is empty.
const writerBurst = 16

type pending struct {
	e   entry
	l   layout
	now int64
}

func (w *writer) run() {
	defer close(w.done)
	for {
		if w.burst() > 0 && w.q.len() > 0 {
			select {
			case ack := <-w.ctrl:
				w.flush()
				close(ack)
			case <-w.quit:
				w.flush()
				w.drain()
				return
			default:
			}
			continue
		}
		w.flush()
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

// flush sends what the writer's batches hold.
func (w *writer) flush() {
	for _, b := range w.batches {
		if b.Len() > 0 {
			_ = b.Flush() // failures are counted by the socket
		}
	}
}

// batchFor returns the writer's batch over tr, making it on first use.
func (w *writer) batchFor(tr Sender) BatchSender {
	for i, t := range w.trs {
		if t == tr {
			return w.batches[i]
		}
	}
	b := tr.NewBatch()
	w.trs = append(w.trs, tr)
	w.batches = append(w.batches, b)
	return b
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

// burst takes up to writerBurst entries off the queue and sends them; it returns how many it took.
func (w *writer) burst() int {
	n, taken := 0, 0
	var tracks uint16
	for n < writerBurst {
		e, ok := w.q.pop()
		if !ok {
			break
		}
		taken++
		l, ok := parseLayout(e.p.Bytes())
		if !ok {
			e.p.Release()
			continue
		}
		now := e.p.Arrival // the socket reader's stamp; abs-send-time is restamped from it
		if now == 0 {
			now = w.st.mono()
		}
		if e.dt != nil {
			if !e.dt.p.closed.Load() && e.dt.started && (e.dt.sim == nil || e.dt.sim.cur == e.track) &&
				w.send(e.dt, e.p, e.p.Bytes(), l, now, true) {
				e.dt.p.stats.retransmits.Add(1)
			}
			e.p.Release()
			continue
		}
		w.pend[n] = pending{e: e, l: l, now: now}
		tracks |= 1 << e.track
		n++
	}
	var sent, bytes uint64
	for idx := range uint8(maxTracks) {
		if tracks&(1<<idx) == 0 {
			continue
		}
		list := w.dts[idx].Load()
		if list == nil {
			continue
		}
		for _, dt := range *list {
			for i := range w.pend[:n] {
				pd := &w.pend[i]
				if pd.e.track != idx {
					continue
				}
				if dt.sim != nil && !dt.accept(idx, pd.e.p, pd.e.keyframe, pd.now) {
					continue
				}
				if !dt.started {
					if dt.t.video && !pd.e.keyframe {
						dt.p.stats.skipped.Add(1)
						continue
					}
					dt.start(pd.e.p.Header.SequenceNumber)
				}
				src := pd.e.p.Bytes()
				if w.send(dt, pd.e.p, src, pd.l, pd.now, false) {
					sent++
					bytes += uint64(len(src))
				}
			}
		}
	}
	for i := range w.pend[:n] {
		w.pend[i].e.p.Release()
		w.pend[i] = pending{}
	}
	if sent > 0 {
		w.packetsOut.Add(sent)
		w.bytesOut.Add(bytes)
	}
	return taken
}

// srtpOverhead is what encryption adds to a packet (the authentication tag), counted in what the estimator sees
// sent.
const srtpOverhead = 16

// send rewrites src for dt into a slot of the player's batch and queues it.
func (w *writer) send(dt *downTrack, p *packet.Buffer, src []byte, l layout, now int64, retransmit bool) bool {
	pubSeq := p.Header.SequenceNumber
	if !retransmit {
		dt.follow(pubSeq)
	}
	pl := dt.p
	pl.twseq++
	s := stamp{twseq: pl.twseq, absSend: uint32((uint64(now)/1000)<<18/1e6) & 0xFFFFFF}
	if pl.batch == nil {
		pl.batch = w.batchFor(pl.out.Sender())
	}
	buf := pl.batch.Buf()
	ts := p.Header.Timestamp + dt.tsOff
	n := dt.rw.rewrite(buf[:cap(buf)], src, l, pubSeq+dt.seqOff, ts, s)
	payload := n - (len(src) - l.payload)
	if dt.sim != nil {
		dt.sim.sentLayer(buf[:n], payload, ts, now, retransmit)
	}
	if retransmit && dt.rw.rtxSSRC != 0 && n+2 <= cap(buf) {
		n = dt.rw.toRTX(buf[:n], payload, dt.rtxSeq)
		dt.rtxSeq++
		pl.stats.rtxSent.Add(1)
	}
	if err := pl.out.WriteRTPBatch(pl.batch, buf[:n]); err != nil {
		pl.stats.writeErrors.Add(1)
		return false
	}
	if est := pl.est.Load(); est != nil && dt.rw.twccID != 0 {
		at := now
		if retransmit {
			at = w.st.mono() // now is the original's arrival
		}
		est.Sent(s.twseq, n+srtpOverhead, at)
	}
	dt.packets.Add(1)
	dt.octets.Add(uint64(l.payloadEnd - l.payload))
	return true
}
