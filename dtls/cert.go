package dtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" // sha-1 fingerprints are still legal in SDP (RFC 8122)
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// DefaultValidity is how long a generated certificate is valid. Browsers only
// check the DTLS certificate against the SDP fingerprint, not its dates, but a
// long-running server may still rotate it (see Certificate.NotAfter).
const DefaultValidity = 30 * 24 * time.Hour

// Certificate is our DTLS identity: a key pair, its certificate and the
// sha-256 fingerprint we put into a=fingerprint. It is immutable and safe for
// concurrent use by many handshakes.
type Certificate struct {
	tls         tls.Certificate
	leaf        *x509.Certificate
	fingerprint string
}

// GenerateCertificate creates a self-signed ECDSA P-256 certificate valid for
// DefaultValidity.
func GenerateCertificate() (*Certificate, error) {
	return GenerateCertificateValidFor(DefaultValidity)
}

// GenerateCertificateValidFor creates a self-signed ECDSA P-256 certificate
// valid from one hour ago (clock skew) for d.
func GenerateCertificateValidFor(d time.Duration) (*Certificate, error) {
	if d <= 0 {
		return nil, fmt.Errorf("dtls: certificate validity %v must be positive", d)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dtls: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("dtls: generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "rtcrelay"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(d),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("dtls: create certificate: %w", err)
	}

	return newCertificate(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
}

// LoadCertificate reads a PEM certificate (chain) and its PEM private key.
// The key must be ECDSA, RSA or Ed25519, as crypto/tls accepts.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("dtls: load certificate: %w", err)
	}

	return newCertificate(c)
}

// NewCertificate wraps an existing tls.Certificate (leaf first).
func NewCertificate(c tls.Certificate) (*Certificate, error) {
	return newCertificate(c)
}

func newCertificate(c tls.Certificate) (*Certificate, error) {
	if len(c.Certificate) == 0 {
		return nil, errors.New("dtls: certificate has no DER data")
	}
	if c.PrivateKey == nil {
		return nil, errors.New("dtls: certificate has no private key")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("dtls: parse certificate: %w", err)
	}
	c.Leaf = leaf

	return &Certificate{tls: c, leaf: leaf, fingerprint: formatFingerprint(sha256Sum(leaf.Raw))}, nil
}

// Fingerprint returns the sha-256 fingerprint of the certificate as upper-case
// colon-separated hex ("AA:BB:..."), the value of a=fingerprint:sha-256.
func (c *Certificate) Fingerprint() string { return c.fingerprint }

// TLSCertificate returns the certificate for crypto/tls or pion/dtls.
func (c *Certificate) TLSCertificate() tls.Certificate { return c.tls }

// NotAfter is when the certificate expires.
func (c *Certificate) NotAfter() time.Time { return c.leaf.NotAfter }

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)

	return s[:]
}

func formatFingerprint(sum []byte) string {
	h := strings.ToUpper(hex.EncodeToString(sum))
	var sb strings.Builder
	sb.Grow(len(sum) * 3)
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}

	return sb.String()
}

// fingerprint is a parsed remote fingerprint: a hash and the expected digest.
type fingerprint struct {
	hash   crypto.Hash
	name   string
	digest []byte
}

// parseFingerprint accepts "sha-256 AA:BB:..", "AA:BB:.." (sha-256) and the
// sha-1, sha-224, sha-384, sha-512 names (RFC 8122), case-insensitively.
func parseFingerprint(s string) (fingerprint, error) {
	s = strings.TrimSpace(s)
	name, value, found := strings.Cut(s, " ")
	if !found {
		name, value = "sha-256", s
	}
	name = strings.ToLower(strings.TrimSpace(name))
	value = strings.TrimSpace(value)

	var h crypto.Hash
	switch name {
	case "sha-1":
		h = crypto.SHA1
	case "sha-224":
		h = crypto.SHA224
	case "sha-256":
		h = crypto.SHA256
	case "sha-384":
		h = crypto.SHA384
	case "sha-512":
		h = crypto.SHA512
	default:
		return fingerprint{}, fmt.Errorf("%w: unsupported hash %q", ErrFingerprint, name)
	}
	digest, err := hex.DecodeString(strings.ReplaceAll(value, ":", ""))
	if err != nil || len(digest) != h.Size() || (len(value)+1) != 3*h.Size() {
		return fingerprint{}, fmt.Errorf("%w: malformed %s value %q", ErrFingerprint, name, value)
	}

	return fingerprint{hash: h, name: name, digest: digest}, nil
}

// sum hashes der with the fingerprint's algorithm.
func (f fingerprint) sum(der []byte) []byte {
	switch f.hash {
	case crypto.SHA1:
		s := sha1.Sum(der)

		return s[:]
	case crypto.SHA224:
		s := sha256.Sum224(der)

		return s[:]
	case crypto.SHA384:
		s := sha512.Sum384(der)

		return s[:]
	case crypto.SHA512:
		s := sha512.Sum512(der)

		return s[:]
	default:
		return sha256Sum(der)
	}
}
