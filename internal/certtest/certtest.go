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
	"math/big"
	"net"
	"net/http"
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
	ca := &CA{Pool: x509.NewCertPool(), CAFile: filepath.Join(dir, "ca.pem"), ClientName: "ci-robot"}
	ca.Pool.AddCert(caCert)
	WritePEM(t, ca.CAFile, "CERTIFICATE", caDER)
	issue := func(cn string, serial int64, usage x509.ExtKeyUsage) (string, string, tls.Certificate) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
			KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
		WritePEM(t, certFile, "CERTIFICATE", der)
		WritePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return certFile, keyFile, pair
	}
	ca.ServerCert, ca.ServerKey, _ = issue("server", 2, x509.ExtKeyUsageServerAuth)
	ca.ClientCert, ca.ClientKey, ca.Client = issue(ca.ClientName, 3, x509.ExtKeyUsageClientAuth)
	return ca
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
