// Package certtest makes a throwaway certificate authority for tests: a CA,
// a server certificate for 127.0.0.1 and localhost, and a client
// certificate, written as PEM files to the test's temporary directory.
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a test certificate authority and the certificates it issued.
type CA struct {
	Pool *x509.CertPool
	// CAFile is the CA certificate, to verify servers or clients by.
	CAFile string
	// ServerCert and ServerKey: a server certificate for 127.0.0.1 and
	// localhost.
	ServerCert, ServerKey string
	// ClientCert and ClientKey: a client certificate named ClientName.
	ClientCert, ClientKey string
	ClientName            string
	Client                tls.Certificate

	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial int64 // of the last certificate issued
}

// New makes a CA named name and its two certificates, valid for an hour.
func New(t testing.TB, name string) *CA {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Pool: x509.NewCertPool(), CAFile: filepath.Join(dir, "ca.pem"), ClientName: "ci-robot", serial: 1}
	ca.Pool.AddCert(caCert)
	WritePEM(t, ca.CAFile, "CERTIFICATE", caDER)
	ca.dir, ca.cert, ca.key = dir, caCert, caKey
	server := ca.issue(t, "server", x509.ExtKeyUsageServerAuth, nil)
	ca.ServerCert, ca.ServerKey = server.CertFile, server.KeyFile
	client := ca.Issue(t, ca.ClientName)
	ca.ClientCert, ca.ClientKey, ca.Client = client.CertFile, client.KeyFile, client.Pair
	return ca
}

// Cert is a certificate the CA issued: its PEM files and the loaded pair.
type Cert struct {
	CertFile, KeyFile string
	Pair              tls.Certificate
}

// Issue makes a client certificate with common name cn and the URI SANs
// uris (e.g. SPIFFE ids), besides localhost and 127.0.0.1.
func (ca *CA) Issue(t testing.TB, cn string, uris ...string) Cert {
	t.Helper()
	var us []*url.URL
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		us = append(us, parsed)
	}
	return ca.issue(t, cn, x509.ExtKeyUsageClientAuth, us)
}

func (ca *CA) issue(t testing.TB, cn string, usage x509.ExtKeyUsage, uris []*url.URL) Cert {
	t.Helper()
	ca.serial++
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}, URIs: uris,
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%s-%d", cn, ca.serial)
	c := Cert{CertFile: filepath.Join(ca.dir, name+".pem"), KeyFile: filepath.Join(ca.dir, name+"-key.pem")}
	WritePEM(t, c.CertFile, "CERTIFICATE", der)
	WritePEM(t, c.KeyFile, "EC PRIVATE KEY", keyDER)
	if c.Pair, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
		t.Fatal(err)
	}
	return c
}

// WritePEM writes der as one PEM block of type typ to file.
func WritePEM(t testing.TB, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// HTTPClient returns an HTTP client that trusts the CA and presents cert,
// if not nil.
func (ca *CA) HTTPClient(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: ca.Pool}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
}
