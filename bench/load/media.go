package main

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtcrelay/rtcrelay/packet"
	"github.com/rtcrelay/rtcrelay/session"
)

const (
	audioPT, videoPT = 111, 96
	maxPayload       = 1100 // video payload per packet, before the split into equal sizes
	audioPayload     = 100  // Opus at about 40 kbit/s, 20 ms frames
	audioInterval    = 20 * time.Millisecond
	stampOff         = 16 // where the send stamp sits in every payload: unix nanos (8) + packet index (4)
)

// source generates the publisher's media: VP8 frames split into equal-size packets with valid payload
// descriptors (a keyframe every second), Opus-sized audio every 20 ms, each payload stamped with the send
// time and the track's packet index.
type source struct {
	o                    options
	audioSSRC, videoSSRC uint32
	sent                 atomic.Uint64
	count                [2]atomic.Uint32 // packets sent per track (0 audio, 1 video)
	seq                  [2]uint16
	buf                  []byte
	pictureID            uint16
}

func newSource(o options) *source {
	return &source{o: o, audioSSRC: rand.Uint32() | 1, videoSSRC: rand.Uint32() | 1, buf: make([]byte, 0, packet.Size)}
}

func (s *source) run(ctx context.Context, w *session.Session) {
	audioBits := float64(audioPayload+12) * 8 * float64(time.Second/audioInterval)
	perFrame := (s.o.bitrate - audioBits) / 8 / float64(s.o.fps)
	delta := perFrame * float64(s.o.fps) / float64(s.o.fps-1+4) // a keyframe is 4 deltas
	frameInterval := time.Second / time.Duration(s.o.fps)
	start := time.Now()
	nextVideo, nextAudio := start, start
	frame := 0
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(nextAudio) {
			ts := uint32(now.Sub(start) / time.Millisecond * 48)
			s.send(w, 0, ts, true, false, false, audioPayload)
			nextAudio = nextAudio.Add(audioInterval)
		}
		if !now.Before(nextVideo) {
			key := frame%s.o.fps == 0
			size := int(delta)
			if key {
				size = int(4 * delta)
			}
			s.frame(w, uint32(frame)*uint32(90000/s.o.fps), size, key)
			frame++
			nextVideo = nextVideo.Add(frameInterval)
		}
		next := nextVideo
		if nextAudio.Before(next) {
			next = nextAudio
		}
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
	}
}

// frame sends one video frame of size bytes in equal-size packets.
func (s *source) frame(w *session.Session, ts uint32, size int, key bool) {
	n := (size + maxPayload - 1) / maxPayload
	each := (size + n - 1) / n
	s.pictureID = (s.pictureID + 1) & 0x7FFF
	for i := range n {
		s.send(w, 1, ts, i == n-1, i == 0, key, each)
	}
}

// send builds and writes one RTP packet of track k (0 audio, 1 video) with a payload of size bytes; first and
// key describe a video packet's place in its frame.
func (s *source) send(w *session.Session, k int, ts uint32, marker, first, key bool, size int) {
	ssrc, pt := s.audioSSRC, byte(audioPT)
	if k == 1 {
		ssrc, pt = s.videoSSRC, videoPT
	}
	b := s.buf[:12+size]
	b[0] = 0x80
	b[1] = pt
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], s.seq[k])
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	p := b[12:]
	for i := range p {
		p[i] = byte(i)
	}
	if k == 1 {
		// VP8 payload descriptor (RFC 7741): X, S on the first packet of the frame, PID 0; I; a 15-bit picture ID.
		p[0] = 0x80
		if first {
			p[0] |= 0x10
		}
		p[1] = 0x80
		p[2], p[3] = 0x80|byte(s.pictureID>>8), byte(s.pictureID)
		if first {
			p[4] = 0x10 // VP8 frame header: show_frame, P=0 (keyframe)
			if !key {
				p[4] |= 0x01 // P=1: interframe
			} else {
				p[7], p[8], p[9] = 0x9d, 0x01, 0x2a // keyframe start code
			}
		}
	}
	idx := s.count[k].Load()
	binary.LittleEndian.PutUint64(p[stampOff:], uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint32(p[stampOff+8:], idx)
	if err := w.WriteRTP(b); err == nil {
		s.sent.Add(1)
	}
	s.count[k].Store(idx + 1)
	s.seq[k]++
}

// player accounts what arrives per track from the clear RTP header (its light reader calls account for every
// SRTP datagram) and decrypts a sample: every sampleEvery-th packet goes to the session, which hands it back
// decrypted to HandleRTP for the latency stamp and the publisher's packet index.
type player struct {
	peer        *peer
	sampleEvery int
	total       atomic.Uint64
	reset       atomic.Bool // asks the reader goroutine to start the measurement window

	mu      sync.Mutex // held by the reader for each batch it read
	rx      [2]trackRx
	lat     histogram
	samples uint64
	n       int // packets since the last sample
}

type trackRx struct {
	seen     bool // since the player started (the extended sequence numbers continue across the window reset)
	started  bool // in the window
	lastSeq  uint16
	firstExt int64 // extended sequence numbers of the first and last packet in the window
	lastExt  int64
	received uint64
	haveOff  bool
	off      int64 // the publisher's packet index − the extended sequence number (constant per player and track)
}

func newPlayer(sampleEvery int) *player { return &player{sampleEvery: max(1, sampleEvery)} }

func track(pt byte) int {
	if pt&0x7F == audioPT {
		return 0
	}
	return 1
}

// account counts one SRTP datagram from its clear header (mu held); it reports whether to decrypt it.
func (pl *player) account(b []byte) (sample bool) {
	pl.total.Add(1)
	if pl.reset.Swap(false) {
		for k := range pl.rx {
			pl.rx[k].started, pl.rx[k].received = false, 0
		}
		pl.lat, pl.samples = histogram{}, 0
	}
	seq := binary.BigEndian.Uint16(b[2:])
	t := &pl.rx[track(b[1])]
	if !t.seen {
		t.seen, t.lastSeq, t.lastExt = true, seq, int64(seq)
	}
	ext := t.lastExt + int64(int16(seq-t.lastSeq))
	if ext > t.lastExt {
		t.lastExt, t.lastSeq = ext, seq
	}
	if !t.started {
		t.started, t.firstExt = true, ext
	}
	t.received++
	pl.n++
	if pl.n >= pl.sampleEvery {
		pl.n = 0
		return true
	}
	return false
}

// HandleRTP gets the sampled packets, decrypted, on the reader goroutine (mu held).
func (pl *player) HandleRTP(p *packet.Buffer) {
	b := p.Bytes()
	off := p.Header.MarshalSize()
	if len(b) < off+stampOff+12 {
		return
	}
	pay := b[off:]
	sent := int64(binary.LittleEndian.Uint64(pay[stampOff:]))
	idx := binary.LittleEndian.Uint32(pay[stampOff+8:])
	now := time.Now().UnixNano()
	t := &pl.rx[track(p.Header.PayloadType)]
	if !t.haveOff && t.started {
		ext := t.lastExt + int64(int16(p.Header.SequenceNumber-t.lastSeq))
		t.off, t.haveOff = int64(idx)-ext, true
	}
	pl.lat.add(time.Duration(now - sent))
	pl.samples++
}

// HandleRTCP ignores the server's sender reports.
func (pl *player) HandleRTCP([]byte) {}

// fullSink is the sink of a player that reads with ice.Socket.Serve (-full-read): every packet decrypted,
// accounted and sampled.
type fullSink struct{ pl *player }

func (f fullSink) HandleRTP(p *packet.Buffer) {
	f.pl.mu.Lock()
	defer f.pl.mu.Unlock()
	if f.pl.account(p.Bytes()) {
		f.pl.HandleRTP(p)
	}
}

func (f fullSink) HandleRTCP([]byte) {}

func (pl *player) resetWindow() { pl.reset.Store(true) }

// result is what the player received in the window and what the publisher sent it from its first packet on
// (through the track's sequence-number → packet-index offset learnt from a decrypted sample; without one, the
// span of sequence numbers received).
func (pl *player) result(src *source) (received, expected uint64) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for k := range pl.rx {
		t := &pl.rx[k]
		if !t.started {
			continue
		}
		received += t.received
		if t.haveOff {
			expected += uint64(max(0, int64(src.count[k].Load())-(t.firstExt+t.off)))
		} else {
			expected += uint64(t.lastExt - t.firstExt + 1)
		}
	}
	return received, expected
}

// histogram of durations in buckets growing by 2 % from 1 µs.
type histogram struct{ b [1024]uint64 }

const histBase = 1.02

func (h *histogram) add(d time.Duration) {
	us := float64(d) / 1e3
	i := 0
	if us > 1 {
		i = min(int(math.Log(us)/math.Log(histBase))+1, len(h.b)-1)
	}
	h.b[i]++
}

func (h *histogram) merge(o *histogram) {
	for i := range h.b {
		h.b[i] += o.b[i]
	}
}

func (h *histogram) quantile(q float64) time.Duration {
	var n uint64
	for _, c := range h.b {
		n += c
	}
	if n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(n)))
	var acc uint64
	for i, c := range h.b {
		acc += c
		if acc >= want && c > 0 {
			return time.Duration(math.Pow(histBase, float64(i)) * 1e3)
		}
	}
	return 0
}
