// Package srtp protects and unprotects RTP and RTCP in place with the keys of
// a DTLS-SRTP handshake. It wraps pion/srtp's Context without its session
// layer: no goroutines, no copies, no allocation per packet.
//
// Every Encrypter and Decrypter owns its own pion Context, which is not safe
// for concurrent use: each must be used by one goroutine at a time (its owner),
// or under the caller's lock.
package srtp

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pionsrtp "github.com/pion/srtp/v3"

	"github.com/rtcrelay/rtcrelay/dtls"
)

// Maximum per-packet overhead of the profiles we support, for sizing buffers.
const (
	MaxRTPOverhead  = 16 // AEAD_AES_128_GCM tag
	MaxRTCPOverhead = 20 // AEAD_AES_128_GCM tag + SRTCP index
)

// ReplayWindow is the replay-protection window of a Decrypter, in packets.
const ReplayWindow = 64

var (
	// ErrShortBuffer: the buffer's capacity cannot hold the protected packet.
	ErrShortBuffer = errors.New("srtp: buffer capacity too small for the auth tag")
	// ErrOverlap: dst and src overlap without starting at the same byte.
	ErrOverlap = errors.New("srtp: dst and src overlap but do not start at the same byte")
	// ErrAuth: the packet failed authentication (forged, corrupted or wrong key).
	ErrAuth = errors.New("srtp: authentication failed")
	// ErrReplay: the packet was already received or is older than the replay window.
	ErrReplay = errors.New("srtp: replayed packet")
)

// Overhead returns the bytes an SRTP and an SRTCP packet grow by under profile
// (the IANA number, e.g. 0x0007).
func Overhead(profile uint16) (rtpOverhead, rtcpOverhead int, err error) {
	p := pionsrtp.ProtectionProfile(profile)
	aead, err := p.AEADAuthTagLen()
	if err != nil {
		return 0, 0, fmt.Errorf("srtp: %w", err)
	}
	rtpTag, err := p.AuthTagRTPLen()
	if err != nil {
		return 0, 0, fmt.Errorf("srtp: %w", err)
	}
	rtcpTag, err := p.AuthTagRTCPLen()
	if err != nil {
		return 0, 0, fmt.Errorf("srtp: %w", err)
	}

	return aead + rtpTag, aead + 4 + rtcpTag, nil
}

type base struct {
	ctx          *pionsrtp.Context
	profile      uint16
	rtpOverhead  int
	rtcpOverhead int
	hdr          rtp.Header  // used when the caller passes no header
	rtcpHdr      rtcp.Header // scratch, avoids pion's per-call allocation
}

func newBase(profile uint16, key, salt []byte, opts ...pionsrtp.ContextOption) (base, error) {
	p := pionsrtp.ProtectionProfile(profile)
	keyLen, err := p.KeyLen()
	if err != nil {
		return base{}, fmt.Errorf("srtp: profile %#04x: %w", profile, err)
	}
	saltLen, err := p.SaltLen()
	if err != nil {
		return base{}, fmt.Errorf("srtp: profile %#04x: %w", profile, err)
	}
	if len(key) != keyLen || len(salt) != saltLen {
		return base{}, fmt.Errorf("srtp: profile %v needs a %d-byte key and %d-byte salt, got %d and %d",
			p, keyLen, saltLen, len(key), len(salt))
	}
	rtpO, rtcpO, err := Overhead(profile)
	if err != nil {
		return base{}, err
	}
	ctx, err := pionsrtp.CreateContext(key, salt, p, opts...)
	if err != nil {
		return base{}, fmt.Errorf("srtp: create context: %w", err)
	}

	return base{ctx: ctx, profile: profile, rtpOverhead: rtpO, rtcpOverhead: rtcpO}, nil
}

// Profile is the IANA SRTP protection profile number.
func (b *base) Profile() uint16 { return b.profile }

// RTPOverhead is how many bytes SRTP adds to an RTP packet.
func (b *base) RTPOverhead() int { return b.rtpOverhead }

// RTCPOverhead is how many bytes SRTCP adds to an RTCP packet.
func (b *base) RTCPOverhead() int { return b.rtcpOverhead }

// Encrypter protects outgoing RTP or RTCP. Use one for RTP and another for
// RTCP (NewPair does), each owned by one goroutine.
type Encrypter struct{ base }

// Decrypter authenticates and decrypts incoming SRTP and SRTCP, with a
// 64-packet replay window for each. Owned by one goroutine (the reader).
type Decrypter struct{ base }

// NewEncrypter returns an Encrypter for profile with the local master key/salt.
func NewEncrypter(profile uint16, key, salt []byte) (*Encrypter, error) {
	b, err := newBase(profile, key, salt)
	if err != nil {
		return nil, err
	}

	return &Encrypter{b}, nil
}

// NewDecrypter returns a Decrypter for profile with the remote master
// key/salt; replay protection is on.
func NewDecrypter(profile uint16, key, salt []byte) (*Decrypter, error) {
	b, err := newBase(profile, key, salt,
		pionsrtp.SRTPReplayProtection(ReplayWindow), pionsrtp.SRTCPReplayProtection(ReplayWindow))
	if err != nil {
		return nil, err
	}

	return &Decrypter{b}, nil
}

// NewPair builds the contexts of one session from its DTLS keys: an RTP
// Encrypter, an RTCP Encrypter and a Decrypter for both.
//
// The two Encrypters share one pion Context (each keeps its own header
// scratch), which saves a cipher pair and its per-SSRC state per session
// (about 3 kB): pion keeps RTP and RTCP apart inside a Context (separate
// per-SSRC maps, separate cipher scratch and keys), so the RTP one used by
// the session's writer and the RTCP one used under the session's RTCP lock
// never touch the same memory (TestPairEncryptersConcurrent, under -race).
// Each Encrypter alone still has one owner at a time.
func NewPair(k dtls.Keys) (rtpEnc, rtcpEnc *Encrypter, dec *Decrypter, err error) {
	return NewPairFromKeys(k.Profile, k.LocalKey, k.LocalSalt, k.RemoteKey, k.RemoteSalt)
}

// NewPairFromKeys is NewPair from raw master keys and salts.
func NewPairFromKeys(profile uint16, localKey, localSalt, remoteKey, remoteSalt []byte,
) (rtpEnc, rtcpEnc *Encrypter, dec *Decrypter, err error) {
	if rtpEnc, err = NewEncrypter(profile, localKey, localSalt); err != nil {
		return nil, nil, nil, err
	}
	rtcpEnc = &Encrypter{base{ctx: rtpEnc.ctx, profile: profile, rtpOverhead: rtpEnc.rtpOverhead, rtcpOverhead: rtpEnc.rtcpOverhead}}
	if dec, err = NewDecrypter(profile, remoteKey, remoteSalt); err != nil {
		return nil, nil, nil, err
	}

	return rtpEnc, rtcpEnc, dec, nil
}

// Prime makes the state of an SSRC this context will send now, as its first packet would (rollover counter 0),
// so that what a session costs is allocated when it is set up rather than at its first packet. Like every
// method, it must not run concurrently with the context's owner.
func (e *Encrypter) Prime(ssrc uint32) { e.ctx.SetROC(ssrc, 0) }

// EncryptRTP protects the RTP packet in buf in place and returns
// buf[:len(buf)+RTPOverhead()]. cap(buf) must leave room for the tag
// (ErrShortBuffer otherwise; nothing is allocated). h, if not nil, receives
// the parsed header; reusing one keeps its slices and avoids allocation.
func (e *Encrypter) EncryptRTP(buf []byte, h *rtp.Header) ([]byte, error) {
	if cap(buf)-len(buf) < e.rtpOverhead {
		return nil, ErrShortBuffer
	}
	if h == nil {
		h = &e.hdr
	}
	out, err := e.ctx.EncryptRTP(buf, buf, h)
	if err != nil {
		return nil, fmt.Errorf("srtp: encrypt rtp: %w", err)
	}

	return out, nil
}

// EncryptRTCP protects the compound RTCP packet plain into dst and returns
// dst[:len(plain)+RTCPOverhead()]. dst may start at plain (in place) or not
// overlap it at all; its capacity must hold the result.
func (e *Encrypter) EncryptRTCP(dst, plain []byte) ([]byte, error) {
	need := len(plain) + e.rtcpOverhead
	if cap(dst) < need {
		return nil, ErrShortBuffer
	}
	if partialOverlap(dst[:need], plain) {
		return nil, ErrOverlap
	}
	out, err := e.ctx.EncryptRTCP(dst[:0], plain, &e.rtcpHdr)
	if err != nil {
		return nil, fmt.Errorf("srtp: encrypt rtcp: %w", err)
	}

	return out, nil
}

// DecryptRTP authenticates and decrypts the SRTP packet in buf in place and
// returns the RTP packet (a prefix of buf). h, if not nil, receives the
// parsed header. Errors: ErrAuth, ErrReplay, or a wrapped parse error.
func (d *Decrypter) DecryptRTP(buf []byte, h *rtp.Header) ([]byte, error) {
	if h == nil {
		h = &d.hdr
	}
	out, err := d.ctx.DecryptRTP(buf, buf, h)
	if err != nil {
		return nil, classify("decrypt rtp", err)
	}

	return out, nil
}

// DecryptRTCP authenticates and decrypts the SRTCP packet in buf in place and
// returns the compound RTCP packet (a prefix of buf).
func (d *Decrypter) DecryptRTCP(buf []byte) ([]byte, error) {
	out, err := d.ctx.DecryptRTCP(buf, buf, &d.rtcpHdr)
	if err != nil {
		return nil, classify("decrypt rtcp", err)
	}

	return out, nil
}

// classify maps pion's errors onto our sentinels. Auth and replay failures
// return the bare sentinel (no allocation: they can be flooded).
func classify(op string, err error) error {
	if errors.Is(err, pionsrtp.ErrFailedToVerifyAuthTag) {
		return ErrAuth
	}
	// pion's duplicate error type is unexported; it unwraps to a sentinel with
	// this text (checked by TestReplay).
	if u := errors.Unwrap(err); u != nil && u.Error() == "duplicated packet" {
		return ErrReplay
	}

	return fmt.Errorf("srtp: %s: %w", op, err)
}

// partialOverlap reports whether a and b share memory without starting at
// the same address (pion detects only exact in-place use).
func partialOverlap(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if pa == pb {
		return false
	}

	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}
