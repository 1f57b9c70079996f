package forwarder

import "encoding/binary"

// layout locates the parts of a plaintext RTP packet; offsets into the packet.
type layout struct {
	csrcEnd    int    // end of the fixed header and CSRC list
	extProfile uint16 // 0 when the X bit is clear
	extStart   int    // first byte of the extension elements (after the 4-byte extension header)
	extEnd     int    // end of the extension block
	payload    int    // first payload byte
	payloadEnd int    // end of the payload, before padding
}

// parseLayout reads the header layout of b without allocating. ok is false for anything not RTP version 2 or
// whose lengths do not fit.
func parseLayout(b []byte) (l layout, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return l, false
	}
	l.csrcEnd = 12 + 4*int(b[0]&0x0F)
	if len(b) < l.csrcEnd {
		return l, false
	}
	l.payload = l.csrcEnd
	if b[0]&0x10 != 0 {
		if len(b) < l.csrcEnd+4 {
			return l, false
		}
		l.extProfile = binary.BigEndian.Uint16(b[l.csrcEnd:])
		l.extStart = l.csrcEnd + 4
		l.extEnd = l.extStart + 4*int(binary.BigEndian.Uint16(b[l.csrcEnd+2:]))
		if len(b) < l.extEnd {
			return l, false
		}
		l.payload = l.extEnd
	}
	l.payloadEnd = len(b)
	if b[0]&0x20 != 0 {
		pad := int(b[len(b)-1])
		if pad == 0 || l.payload+pad > len(b) {
			return l, false
		}
		l.payloadEnd -= pad
	}
	return l, true
}

// codecKind selects the keyframe detector of a track.
type codecKind uint8

const (
	codecOther codecKind = iota
	codecVP8
	codecVP9
	codecH264
)

func codecKindOf(name string) codecKind {
	switch {
	case equalFold(name, "VP8"):
		return codecVP8
	case equalFold(name, "VP9"):
		return codecVP9
	case equalFold(name, "H264"):
		return codecH264
	}
	return codecOther
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// keyframeStart reports whether payload is the first packet of a keyframe. For codecs it cannot parse it
// reports true, so that players of such a track never wait forever.
func keyframeStart(c codecKind, payload []byte) bool {
	switch c {
	case codecVP8:
		return vp8KeyframeStart(payload)
	case codecVP9:
		// VP9 payload descriptor (RFC 9628): I P L F B E V Z. B = start of frame, P = inter-picture predicted.
		return len(payload) > 0 && payload[0]&0x08 != 0 && payload[0]&0x40 == 0
	case codecH264:
		return h264KeyframeStart(payload)
	}
	return true
}

// vp8KeyframeStart: payload descriptor (RFC 7741 §4.2) with S=1 and PID=0, then the VP8 payload header whose
// P bit (bit 0 of the first byte) is 0 for a keyframe.
func vp8KeyframeStart(p []byte) bool {
	i, ok := vp8HeaderAt(p)
	return ok && p[i]&0x01 == 0
}

// vp8HeaderAt returns the offset of the VP8 payload header of a partition start (S=1, PID=0).
func vp8HeaderAt(p []byte) (int, bool) {
	if len(p) < 1 || p[0]&0x10 == 0 || p[0]&0x07 != 0 {
		return 0, false
	}
	i := 1
	if p[0]&0x80 != 0 { // X
		if len(p) < 2 {
			return 0, false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture ID, 7 or 15 bits
			if len(p) <= i {
				return 0, false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	return i, len(p) > i
}

// vp8Size reads the frame size of a keyframe's first packet (RFC 6386 §9.1: 3-byte frame tag, start code
// 9d 01 2a, then 14-bit width and height, little endian).
func vp8Size(p []byte) (w, h uint16, ok bool) {
	i, ok := vp8HeaderAt(p)
	if !ok || len(p) < i+10 || p[i]&0x01 != 0 || p[i+3] != 0x9d || p[i+4] != 0x01 || p[i+5] != 0x2a {
		return 0, 0, false
	}
	w = binary.LittleEndian.Uint16(p[i+6:]) & 0x3FFF
	h = binary.LittleEndian.Uint16(p[i+8:]) & 0x3FFF
	return w, h, w != 0 && h != 0
}

// h264KeyframeStart: an IDR slice (5) or an SPS (7) as a single NAL unit, inside a STAP-A, or at the start
// of an FU-A (RFC 6184).
func h264KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1F; t {
	case 5, 7:
		return true
	case 24: // STAP-A
		for i := 1; i+2 < len(p); {
			n := int(binary.BigEndian.Uint16(p[i:]))
			i += 2
			if n == 0 || i+n > len(p) {
				return false
			}
			if nt := p[i] & 0x1F; nt == 5 || nt == 7 {
				return true
			}
			i += n
		}
	case 28: // FU-A
		return len(p) >= 2 && p[1]&0x80 != 0 && (p[1]&0x1F == 5 || p[1]&0x1F == 7)
	}
	return false
}

// rewriter turns a publisher's packet into one player's: SSRC, payload type, sequence number, timestamp and
// header extensions. It is immutable after construction; per-packet values are arguments.
type rewriter struct {
	ssrc uint32
	pt   uint8
	// ext maps a publisher extension ID to the player's (0: drop). Extensions the forwarder stamps itself
	// (mid, transport-cc, abs-send-time) and the rid ones map to 0.
	ext    [256]uint8
	midID  uint8 // the player's IDs of the stamped extensions, 0 when not negotiated
	twccID uint8
	astID  uint8
	mid    []byte
	ridID  uint8 // a relay's layer: the player's ID of rtp-stream-id, stamped with rid
	rid    []byte
	// RTX (RFC 4588) towards the player, when negotiated: retransmissions leave on rtxSSRC with rtxPT.
	rtxSSRC uint32
	rtxPT   uint8
}

// toRTX turns the rewritten packet b (whose payload starts at payload) into its RTX form in place: the
// original sequence number first in the payload, then the payload; RTX payload type, sequence number and
// SSRC. b must have 2 bytes of room past its length; it returns the new length.
func (rw *rewriter) toRTX(b []byte, payload int, seq uint16) int {
	n := len(b)
	b = b[:n+2]
	copy(b[payload+2:], b[payload:n])
	copy(b[payload:payload+2], b[2:4]) // the original sequence number
	b[1] = b[1]&0x80 | rw.rtxPT&0x7F
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[8:], rw.rtxSSRC)
	return n + 2
}

// stamp holds the per-packet values of the stamped extensions.
type stamp struct {
	twseq   uint16
	absSend uint32 // 6.18 fixed point seconds, 24 bits
}

// rewrite writes src, rewritten, into dst and returns its length. dst must hold len(src)+maxGrowth bytes.
func (rw *rewriter) rewrite(dst, src []byte, l layout, seq uint16, ts uint32, s stamp) int {
	dst[0] = src[0] &^ 0x10
	dst[1] = src[1]&0x80 | rw.pt&0x7F
	binary.BigEndian.PutUint16(dst[2:], seq)
	binary.BigEndian.PutUint32(dst[4:], ts)
	binary.BigEndian.PutUint32(dst[8:], rw.ssrc)
	o := 12 + copy(dst[12:l.csrcEnd], src[12:l.csrcEnd])

	twoByte := l.extProfile == 0x1000
	if l.extProfile != 0 && l.extProfile != 0xBEDE && !twoByte {
		// A profile we do not understand: pass it through unchanged.
		o += copy(dst[o:], src[l.csrcEnd:l.extEnd])
		dst[0] |= 0x10
	} else {
		hdr := o
		o += 4
		start := o
		if l.extProfile != 0 {
			blk := src[l.extStart:l.extEnd]
			for i := 0; i < len(blk); {
				var id uint8
				var n int
				if twoByte {
					if blk[i] == 0 {
						i++
						continue
					}
					if i+2 > len(blk) {
						break
					}
					id, n = blk[i], int(blk[i+1])
					i += 2
				} else {
					if blk[i] == 0 {
						i++
						continue
					}
					id, n = blk[i]>>4, int(blk[i]&0x0F)+1
					if id == 15 {
						break
					}
					i++
				}
				if i+n > len(blk) {
					break
				}
				if nid := rw.ext[id]; nid != 0 {
					o = putExt(dst, o, twoByte, nid, blk[i:i+n])
				}
				i += n
			}
		}
		if rw.midID != 0 {
			o = putExt(dst, o, twoByte, rw.midID, rw.mid)
		}
		if rw.ridID != 0 {
			o = putExt(dst, o, twoByte, rw.ridID, rw.rid)
		}
		if rw.twccID != 0 {
			o = putExt(dst, o, twoByte, rw.twccID, []byte{byte(s.twseq >> 8), byte(s.twseq)})
		}
		if rw.astID != 0 {
			o = putExt(dst, o, twoByte, rw.astID, []byte{byte(s.absSend >> 16), byte(s.absSend >> 8), byte(s.absSend)})
		}
		if o == start {
			o = hdr
		} else {
			for (o-start)%4 != 0 {
				dst[o] = 0
				o++
			}
			profile := uint16(0xBEDE)
			if twoByte {
				profile = 0x1000
			}
			binary.BigEndian.PutUint16(dst[hdr:], profile)
			binary.BigEndian.PutUint16(dst[hdr+2:], uint16((o-start)/4))
			dst[0] |= 0x10
		}
	}
	return o + copy(dst[o:], src[l.payload:])
}

// maxGrowth bounds how much longer rewrite (and toRTX) may make a packet: the stamped extensions (mid and
// rid ≤ 16 bytes each) with their element headers, an extension header and padding, and an RTX packet's original sequence
// number.
const maxGrowth = 4 + (2 + maxMidLen) + (2 + maxMidLen) + (2 + 2) + (2 + 3) + 3 + 2 // mid, rid, twcc, ast, pad, OSN

const maxMidLen = 16

// putExt appends one extension element; elements that do not fit the form are skipped.
func putExt(dst []byte, o int, twoByte bool, id uint8, data []byte) int {
	if twoByte {
		if len(data) > 255 {
			return o
		}
		dst[o], dst[o+1] = id, byte(len(data))
		return o + 2 + copy(dst[o+2:], data)
	}
	if id > 14 || len(data) == 0 || len(data) > 16 {
		return o
	}
	dst[o] = id<<4 | byte(len(data)-1)
	return o + 1 + copy(dst[o+1:], data)
}
