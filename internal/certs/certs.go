// Package certs holds the control plane's TLS certificate and the pins
// clients keep of it. The daemon uses the operator's certificate or makes a
// self-signed one on first start; clients trust a certificate by its
// SHA-256 fingerprint (pinned, trust on first use), not by a CA, as SSH
// trusts host keys.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// Fingerprint is the SHA-256 of a certificate's DER bytes, as
// "sha256:" and 64 hex digits.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts a fingerprint with or without the sha256:
// prefix, in either case, with or without colons (as openssl prints it).
func NormalizeFingerprint(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "sha256:")
	s = strings.ReplaceAll(s, ":", "")
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q is not a SHA-256 (64 hex digits, as provisiond status prints it)", s)
	}
	return "sha256:" + s, nil
}

// LoadOrCreate returns the control plane's certificate: the operator's
// pair when certFile is set, else the self-signed pair in dir (tls.crt and
// tls.key, mode 0600), created on first start for names (DNS names or IP
// addresses) and kept from then on.
func LoadOrCreate(certFile, keyFile, dir string, names []string) (tls.Certificate, error) {
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return c, fmt.Errorf("control plane certificate %s / key %s: %w (set control.cert_file and control.key_file to a PEM pair, or leave both empty for a self-signed one)", certFile, keyFile, err)
		}
		return c, nil
	}
	crt, key := dir+"/"+SelfSignedCert, dir+"/"+SelfSignedKey
	c, err := tls.LoadX509KeyPair(crt, key)
	if err == nil {
		return c, nil
	}
	if _, statErr := os.Stat(crt); !errors.Is(statErr, fs.ErrNotExist) {
		return c, fmt.Errorf("control plane certificate %s: %w (remove %s and %s to make a new one; clients must then trust it again)", crt, err, crt, key)
	}
	certPEM, keyPEM, err := selfSigned(names, time.Now())
	if err != nil {
		return c, err
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		return c, fmt.Errorf("writing %s: %w", key, err)
	}
	if err := os.WriteFile(crt, certPEM, 0o600); err != nil {
		return c, fmt.Errorf("writing %s: %w", crt, err)
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// The self-signed pair's files in the data directory.
const (
	SelfSignedCert = "tls.crt"
	SelfSignedKey  = "tls.key"
)

// selfSigned makes an ECDSA P-256 certificate for names, valid ten years.
func selfSigned(names []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "provisiond control plane", Organization: []string{"provisiond"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	seen := map[string]bool{}
	for _, n := range append([]string{"localhost", "127.0.0.1", "::1"}, names...) {
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("making the self-signed certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// FileFingerprint reads a PEM certificate file and returns its leaf's
// fingerprint.
func FileFingerprint(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s holds no PEM certificate", path)
	}
	return Fingerprint(b.Bytes), nil
}

// MismatchError is a server whose certificate is not the pinned one.
type MismatchError struct {
	Pinned, Got string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("the control plane's certificate changed: pinned %s, the server presents %s", e.Pinned, e.Got)
}

// ClientConfig returns a TLS configuration that trusts exactly the
// certificate with fingerprint pin. With an empty pin it trusts whatever
// the server presents (trust on first use) and reports it to seen, so the
// caller can pin it.
func ClientConfig(pin string, seen func(fingerprint string)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is by pin below, not by a CA.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("the server presented no certificate")
			}
			got := Fingerprint(raw[0])
			if pin == "" {
				if seen != nil {
					seen(got)
				}
				return nil
			}
			if got != pin {
				return &MismatchError{Pinned: pin, Got: got}
			}
			return nil
		},
	}
}
