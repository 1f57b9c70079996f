// Package relayauth authenticates relay agents between rtcrelay servers.
//
// A relay agent proves which server it is with a Token: the server's ID, the time, a random nonce and the DTLS
// certificate fingerprint of its media sessions, signed with HMAC-SHA256 under a secret the receiving server
// knows (the cluster's shared secret, or that server's own secret listed as a peer). The receiving server
// accepts a token once (nonces are remembered for twice the allowed clock skew), only within the skew, and
// pins every media session of the authenticated connection to the signed fingerprint: DTLS then proves the
// peer holds that certificate's key, so a token copied off the wire is worth nothing to anyone else.
//
// Over the WCS WebSocket protocol the token travels in the custom object of the `connection` message
// ({"rtcrelayAuth": {...}}); over WHIP/WHEP in the X-Rtcrelay-Auth header (Header).
package relayauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CustomKey is the key of the token in a `connection` message's custom object.
const CustomKey = "rtcrelayAuth"

// Header is the HTTP header that carries a token (Encode) on WHIP/WHEP requests.
const Header = "X-Rtcrelay-Auth"

// DefaultSkew is how far a token's time may be from the verifier's clock.
const DefaultSkew = 60 * time.Second

// InfoFailed and InfoRequired begin the status info a refused relay sees (Error.Reason).
const (
	InfoFailed   = "Relay authentication failed"
	InfoRequired = "Relay authentication required"
)

// Bounds on the token's fields: anything longer is refused before any cryptography.
const (
	maxServer      = 128
	maxFingerprint = 200
	nonceBytes     = 16
	maxEncoded     = 2048
	// maxNonces bounds the replay cache; at the bound new tokens are refused until old ones expire (a
	// legitimate cluster makes a handful of relay connections per second, not tens of thousands a minute).
	maxNonces = 1 << 16
)

// ErrAuth is what every authentication failure wraps (errors.Is), Error its concrete type.
var ErrAuth = errors.New("relay authentication failed")

// Error is an authentication failure: Required for a relay that presented no token where one is required.
type Error struct {
	Required bool
	Detail   string
}

func (e *Error) Error() string { return "relayauth: " + e.Reason() }

// Reason is the status info the refused relay sees, e.g. "Relay authentication failed: token expired".
func (e *Error) Reason() string {
	head := InfoFailed
	if e.Required {
		head = InfoRequired
	}
	if e.Detail == "" {
		return head
	}
	return head + ": " + e.Detail
}

// Is makes errors.Is(err, ErrAuth) true.
func (e *Error) Is(target error) bool { return target == ErrAuth }

func fail(format string, args ...any) error { return &Error{Detail: fmt.Sprintf(format, args...)} }

// Required is the error for a relay that presented no (valid) token where one is required.
func Required(detail string) error { return &Error{Required: true, Detail: detail} }

// IsInfo reports whether a remote's status info is a relay authentication refusal (retrying will not help).
func IsInfo(info string) bool {
	return strings.HasPrefix(info, InfoFailed) || strings.HasPrefix(info, InfoRequired)
}

// Token is a relay's signed identity.
type Token struct {
	Server      string `json:"server"`      // the relaying server's ID (--server-id)
	TS          int64  `json:"ts"`          // signing time, Unix milliseconds
	Nonce       string `json:"nonce"`       // 16 random bytes, hex
	Fingerprint string `json:"fingerprint"` // the DTLS certificate fingerprint of its media sessions, as in SDP
	Sig         string `json:"sig"`         // hex HMAC-SHA256 of the fields above (message)
}

// message is what Sig signs: a version tag and the fields, newline-separated (the fields hold no newlines:
// Verify refuses control characters).
func (t *Token) message() []byte {
	return []byte("rtcrelay-relay-auth/1\n" + t.Server + "\n" + strconv.FormatInt(t.TS, 10) + "\n" + t.Nonce + "\n" +
		NormalizeFingerprint(t.Fingerprint))
}

func sign(secret string, t *Token) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(t.message())
	return hex.EncodeToString(m.Sum(nil))
}

// Encode is the token as one header-safe string: base64url (no padding) of its JSON.
func (t Token) Encode() string {
	b, _ := json.Marshal(t) // strings and an int always marshal
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode parses Encode's output.
func Decode(s string) (Token, error) {
	var t Token
	if len(s) > maxEncoded {
		return t, fail("token longer than %d bytes", maxEncoded)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return t, fail("token is not base64url")
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, fail("token is not a JSON object of strings and a number")
	}
	return t, nil
}

// FromCustom extracts the token from a `connection` custom object: ok is false when custom has no CustomKey
// (an ordinary client); err is set when it has one that is not a token.
func FromCustom(custom json.RawMessage) (t Token, ok bool, err error) {
	if len(custom) == 0 {
		return t, false, nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(custom, &obj) != nil {
		return t, false, nil // not an object: not ours
	}
	raw, ok := obj[CustomKey]
	if !ok {
		return t, false, nil
	}
	if len(raw) > maxEncoded {
		return t, true, fail("token longer than %d bytes", maxEncoded)
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return t, true, fail("%s is not a token object", CustomKey)
	}
	return t, true, nil
}

// WithoutToken returns custom without its CustomKey (so that the token is not echoed or handed to an
// application backend); custom unchanged when it has none.
func WithoutToken(custom json.RawMessage) json.RawMessage {
	var obj map[string]json.RawMessage
	if len(custom) == 0 || json.Unmarshal(custom, &obj) != nil {
		return custom
	}
	if _, ok := obj[CustomKey]; !ok {
		return custom
	}
	delete(obj, CustomKey)
	b, _ := json.Marshal(obj) // RawMessages from valid JSON always marshal
	return b
}

// Custom is custom (a JSON object, or empty) with the token added under CustomKey.
func (t Token) Custom(custom json.RawMessage) json.RawMessage {
	obj := map[string]json.RawMessage{}
	if len(custom) > 0 {
		if err := json.Unmarshal(custom, &obj); err != nil || obj == nil {
			obj = map[string]json.RawMessage{}
		}
	}
	obj[CustomKey], _ = json.Marshal(t)
	b, _ := json.Marshal(obj)
	return b
}

// NormalizeFingerprint is an SDP fingerprint ("sha-256 AB:CD:...") in one canonical spelling: lower case,
// single spaces, trimmed; a bare hash ("AB:CD:...") is taken as sha-256.
func NormalizeFingerprint(fp string) string {
	f := strings.Fields(strings.ToLower(fp))
	if len(f) == 1 {
		f = []string{"sha-256", f[0]}
	}
	return strings.Join(f, " ")
}

// Signer makes the tokens of this server's relay agents.
type Signer struct {
	server, secret, fingerprint string
}

// NewSigner signs as server with secret, for media sessions with the DTLS fingerprint.
func NewSigner(server, secret, fingerprint string) (*Signer, error) {
	switch {
	case secret == "":
		return nil, errors.New("relayauth: empty secret")
	case server == "" || len(server) > maxServer || hasControl(server):
		return nil, fmt.Errorf("relayauth: server id %q: 1 to %d printable bytes", server, maxServer)
	case fingerprint == "" || len(fingerprint) > maxFingerprint || hasControl(fingerprint):
		return nil, fmt.Errorf("relayauth: bad DTLS fingerprint %q", fingerprint)
	}
	return &Signer{server: server, secret: secret, fingerprint: fingerprint}, nil
}

// Sign returns a fresh token (new nonce) dated now.
func (s *Signer) Sign(now time.Time) Token {
	var n [nonceBytes]byte
	_, _ = rand.Read(n[:])
	t := Token{Server: s.server, TS: now.UnixMilli(), Nonce: hex.EncodeToString(n[:]), Fingerprint: s.fingerprint}
	t.Sig = sign(s.secret, &t)
	return t
}

// Config configures a Verifier.
type Config struct {
	// Secret, when set, is the cluster's shared secret: it verifies tokens of every server not in Peers.
	Secret string
	// Peers are per-server secrets (server ID → that server's --relay-secret): a listed server's tokens verify
	// only with its own secret, so one server's secret can be revoked without touching the others.
	Peers map[string]string
	// Skew is how far a token's time may be from now; default DefaultSkew.
	Skew time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	cfg Config

	mu     sync.Mutex
	nonces map[string]time.Time // seen nonce → when it may be forgotten
	sweep  time.Time            // next purge of expired nonces
}

// NewVerifier returns a Verifier; it fails without any secret.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.Secret == "" && len(cfg.Peers) == 0 {
		return nil, errors.New("relayauth: a verifier needs a secret or peers")
	}
	for id, sec := range cfg.Peers {
		if sec == "" {
			return nil, fmt.Errorf("relayauth: peer %q has an empty secret", id)
		}
	}
	if cfg.Skew <= 0 {
		cfg.Skew = DefaultSkew
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{cfg: cfg, nonces: map[string]time.Time{}}, nil
}

// Verify checks t and remembers its nonce: nil means t is a valid token of t.Server seen for the first time.
// Every failure is an *Error (errors.Is ErrAuth) whose Reason names the problem.
func (v *Verifier) Verify(t Token) error {
	switch {
	case t.Server == "" || len(t.Server) > maxServer || hasControl(t.Server):
		return fail("bad server id")
	case len(t.Nonce) != 2*nonceBytes || !isHex(t.Nonce):
		return fail("bad nonce")
	case t.Fingerprint == "" || len(t.Fingerprint) > maxFingerprint || hasControl(t.Fingerprint):
		return fail("bad fingerprint")
	case len(t.Sig) != 2*sha256.Size || !isHex(t.Sig):
		return fail("bad signature encoding")
	}
	secret, ok := v.cfg.Peers[t.Server]
	if !ok {
		secret = v.cfg.Secret
	}
	if secret == "" {
		return fail("unknown server %q", t.Server)
	}
	want := sign(secret, &t)
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(t.Sig))) {
		return fail("bad signature")
	}
	now := v.cfg.Now()
	at := time.UnixMilli(t.TS)
	if d := now.Sub(at); d > v.cfg.Skew || d < -v.cfg.Skew {
		return fail("token time %s is %v away from this server's clock (at most %v)", at.UTC().Format(time.RFC3339), d.Round(time.Second), v.cfg.Skew)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if now.After(v.sweep) {
		for n, exp := range v.nonces {
			if now.After(exp) {
				delete(v.nonces, n)
			}
		}
		v.sweep = now.Add(v.cfg.Skew)
	}
	if _, seen := v.nonces[t.Nonce]; seen {
		return fail("token replayed")
	}
	if len(v.nonces) >= maxNonces {
		return fail("too many relay connections; try again later")
	}
	// A token is valid until at+Skew; remember it until then (and a little longer for a fast clock).
	v.nonces[t.Nonce] = at.Add(2 * v.cfg.Skew)
	return nil
}

// CheckStart is the policy of a server with relay authentication on for one publish or play: relay is the
// verified token of the connection or request it came on (nil: none), hasPath whether it carries a relay path,
// sdp its offer. It reports whether that path may be trusted, or refuses the request: an authenticated relay's
// SDP without the fingerprint it signed, or (require) a relay path without authentication.
func CheckStart(relay *Token, require, hasPath bool, sdp string) (trustPath bool, err error) {
	switch {
	case relay != nil:
		return true, CheckSDP(sdp, relay.Fingerprint)
	case hasPath && require:
		return false, Required("a relay path needs a token signed with the relay secret")
	}
	return false, nil
}

// CheckSDP checks that every a=fingerprint of an SDP offer or answer is fp (the token's): the media session
// is then the authenticated relay's, as DTLS verifies the peer against these lines.
func CheckSDP(sdp, fp string) error {
	want := NormalizeFingerprint(fp)
	n := 0
	for line := range strings.Lines(sdp) {
		line = strings.TrimRight(line, "\r\n")
		v, ok := strings.CutPrefix(line, "a=fingerprint:")
		if !ok {
			continue
		}
		n++
		if NormalizeFingerprint(v) != want {
			return fail("the DTLS fingerprint of the SDP is not the one the relay signed")
		}
	}
	if n == 0 {
		return fail("the SDP has no DTLS fingerprint")
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}
