package ice

import "encoding/binary"

// The few STUN facts the demux needs (RFC 8489), read by hand so that routing allocates nothing. Full decoding
// and MESSAGE-INTEGRITY verification stay with pion/ice.
const (
	stunHeaderSize  = 20
	stunMagicCookie = 0x2112A442
	stunAttrUser    = 0x0006

	stunBindingRequest    = 0x0001
	stunBindingSuccess    = 0x0101
	stunBindingError      = 0x0111
	stunBindingIndication = 0x0011
)

// stunClass is the class bits (C1 C0) of a STUN message type.
type stunClass uint8

const (
	stunClassRequest stunClass = iota
	stunClassIndication
	stunClassSuccess
	stunClassError
)

// stunMsg is the view of a STUN datagram the router uses; its slices alias the datagram.
type stunMsg struct {
	typ      uint16
	txID     []byte // 12 bytes
	username []byte // nil when absent
}

func (m *stunMsg) class() stunClass {
	return stunClass((m.typ>>4)&1 | (m.typ>>7)&2)
}

// parseSTUN validates the header and the attribute framing of b and finds USERNAME. It reports false for
// anything that is not a well-formed STUN message.
func parseSTUN(b []byte, m *stunMsg) bool {
	if len(b) < stunHeaderSize || b[0]&0xC0 != 0 {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n%4 != 0 || n != len(b)-stunHeaderSize || binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
		return false
	}
	m.typ = binary.BigEndian.Uint16(b[0:2])
	m.txID = b[8:20]
	m.username = nil
	for a := b[stunHeaderSize:]; len(a) > 0; {
		if len(a) < 4 {
			return false
		}
		t, l := binary.BigEndian.Uint16(a[0:2]), int(binary.BigEndian.Uint16(a[2:4]))
		padded := (l + 3) &^ 3
		if 4+padded > len(a) {
			return false
		}
		if t == stunAttrUser && m.username == nil {
			m.username = a[4 : 4+l]
		}
		a = a[4+padded:]
	}
	return true
}

// localUfrag is the part of a USERNAME "<receiver ufrag>:<sender ufrag>" that names the receiving agent (us).
func localUfrag(username []byte) []byte {
	for i, c := range username {
		if c == ':' {
			return username[:i]
		}
	}
	return nil
}

// stunType reads the message type of a datagram the agent is about to send, if it is STUN.
func stunType(b []byte) (uint16, bool) {
	if len(b) < stunHeaderSize || b[0]&0xC0 != 0 || binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
		return 0, false
	}
	return binary.BigEndian.Uint16(b[0:2]), true
}
