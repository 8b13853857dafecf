package authz

import (
	"context"
	"crypto/x509"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Names are the names a verified certificate is known by, in the forms a
// policy's identities use: its URI SANs as written, "dns:" and each DNS
// SAN, "cn:" and the subject's common name.
func Names(cert *x509.Certificate) []string {
	var names []string
	for _, u := range cert.URIs {
		names = append(names, u.String())
	}
	for _, d := range cert.DNSNames {
		names = append(names, "dns:"+d)
	}
	if cert.Subject.CommonName != "" {
		names = append(names, "cn:"+cert.Subject.CommonName)
	}
	return names
}

// NamesFromContext are the Names of the verified client certificate of the
// gRPC request ctx belongs to, or nil when the client presented none (or
// the connection is not TLS).
func NamesFromContext(ctx context.Context) []string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return Names(info.State.VerifiedChains[0][0])
}
