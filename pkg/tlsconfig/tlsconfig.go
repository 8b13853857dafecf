// Package tlsconfig builds TLS configurations from the PEM files flags name:
// topod's gRPC server and the plugin dialing it, topod's etcd client, and
// vschemad's HTTPS server and client. Every error names the file and the
// flag-level problem, so a misconfigured process fails at start, not at its
// first connection.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files names the PEM files of one side of a TLS connection.
type Files struct {
	// CA holds the certificates the peer is verified by: for a server, its
	// clients' (and then a client certificate is required); for a client,
	// its servers' (empty: the system's roots).
	CA string
	// Cert and Key are this side's certificate chain and private key:
	// required for a server, for a client only when the server asks for one.
	Cert, Key string
	// ServerName, for a client, is the name the server's certificate must
	// carry (empty: the host dialed).
	ServerName string
}

// Enabled reports whether any file is named: a client then speaks TLS.
func (f Files) Enabled() bool {
	return f.CA != "" || f.Cert != "" || f.Key != "" || f.ServerName != ""
}

// Server returns the configuration of a server presenting f.Cert, and
// requiring and verifying client certificates signed by f.CA if set.
func Server(f Files) (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("tls: a server needs both a certificate and a key")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: load certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		if c.ClientCAs, err = pool(f.CA); err != nil {
			return nil, err
		}
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// Client returns the configuration of a client verifying servers by f.CA
// (the system's roots if empty) and f.ServerName, presenting f.Cert if set.
func Client(f Files) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	var err error
	if f.CA != "" {
		if c.RootCAs, err = pool(f.CA); err != nil {
			return nil, err
		}
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("tls: a client certificate needs both the certificate and the key")
	}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("tls: load certificate %s and key %s: %w", f.Cert, f.Key, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// pool reads the PEM certificates in file.
func pool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA file: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", file)
	}
	return p, nil
}
