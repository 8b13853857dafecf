package manifests

import (
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/pkg/tlsconfig"
)

// TestProdEtcdAdmitsOnlyTopod runs etcd 3.6.10 with the prod overlay's
// command line (its addresses moved to loopback, one member, each TLS file
// a throwaway certificate of the Secret the overlay reads it from: etcd-tls
// from an etcd CA, topod-etcd-client-tls from a CA of its own, every other
// Secret from a third CA standing for topod-ca) and dials it the way the
// overlay's topod does (its --etcd-tls-* files, through pkg/tlsconfig as
// topod does): topod's certificate gets in; vtgate's certificate (signed by
// the CA of every component's certificate), no certificate and plaintext
// do not; the probes' /readyz and /livez answer over plain HTTP.
// (Taking --client-cert-auth out does not make this fail: etcd 3.6 asks for
// a client certificate whenever --trusted-ca-file is set. CheckHardened
// requires the flag all the same.)
func TestProdEtcdAdmitsOnlyTopod(t *testing.T) {
	etcdBin := filepath.Join(binaries(t), "etcd")
	cs, err := Containers(render(t, "overlays/prod"))
	if err != nil {
		t.Fatal(err)
	}
	var etcd, topod, vtgate *Container
	for i, c := range cs {
		switch {
		case c.Binary() == "etcd" && c.LongRunning:
			etcd = &cs[i]
		case etcdBackend(c):
			topod = &cs[i]
		case c.Binary() == "vtgate":
			vtgate = &cs[i]
		}
	}
	if etcd == nil || topod == nil || vtgate == nil {
		t.Fatal("prod has no etcd, topod or vtgate")
	}

	// Throwaway certificates for the overlay's Secrets.
	etcdCA, clientCA, otherCA := certtest.New(t, "etcd-ca"), certtest.New(t, "etcd-client-ca"), certtest.New(t, "topod-ca")
	dir := t.TempDir()
	file := func(c Container, path string) string {
		t.Helper()
		sf, ok := SecretOf(c, path)
		if !ok {
			t.Fatalf("%s: %s is from no Secret", c.Where(), path)
		}
		ca, cert, key := otherCA.CAFile, otherCA.ClientCert, otherCA.ClientKey
		switch sf.Secret {
		case "etcd-tls":
			ca, cert, key = etcdCA.CAFile, etcdCA.ServerCert, etcdCA.ServerKey
		case "topod-etcd-client-tls":
			ca, cert, key = clientCA.CAFile, clientCA.ClientCert, clientCA.ClientKey
		}
		src := map[string]string{"ca.crt": ca, "tls.crt": cert, "tls.key": key}[sf.Key]
		if src == "" {
			t.Fatalf("%s: %s is key %s of Secret %s", c.Where(), path, sf.Key, sf.Secret)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, sf.Secret, sf.Key)
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return out
	}

	// etcd's command line, on loopback ports.
	ports, err := freeport.Pick(3)
	if err != nil {
		t.Fatal(err)
	}
	moved := map[string]string{"2379": strconv.Itoa(ports[0]), "2380": strconv.Itoa(ports[1]), "2381": strconv.Itoa(ports[2])}
	loopback := func(v string) string {
		var out []string
		for _, s := range strings.Split(v, ",") {
			u, err := url.Parse(s)
			if err != nil || moved[u.Port()] == "" {
				t.Fatalf("%s: unexpected URL %q", etcd.Where(), s)
			}
			u.Host = "127.0.0.1:" + moved[u.Port()]
			out = append(out, u.String())
		}
		return strings.Join(out, ",")
	}
	name, _ := etcd.Flag("name")
	var args []string
	var clientURL, metricsURL, peerURL string
	for _, a := range etcd.Argv[1:] {
		f, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch {
		case f == "data-dir":
			v = filepath.Join(dir, "data")
		case strings.HasSuffix(f, "-urls"):
			v = loopback(v)
		case tlsFlags[f] != "":
			v = file(*etcd, v)
		}
		switch f {
		case "advertise-client-urls":
			clientURL = v
		case "listen-metrics-urls":
			metricsURL = v
		case "initial-advertise-peer-urls":
			peerURL = v
		}
		if v == "" && !strings.Contains(a, "=") {
			args = append(args, a)
		} else {
			args = append(args, "--"+f+"="+v)
		}
	}
	ctx := t.Context()
	// HOME in the test's directory; the initial cluster from the
	// environment, as the StatefulSet gives it.
	p, err := proc.Start(proc.Spec{Name: "etcd", Binary: etcdBin, Args: args, Log: filepath.Join(dir, "etcd.log"),
		Env: []string{"HOME=" + dir, "ETCD_INITIAL_CLUSTER=" + name + "=" + peerURL, "ETCD_INITIAL_CLUSTER_STATE=new", "ETCD_INITIAL_CLUSTER_TOKEN=deploy-test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("etcd %q\nlog (tail):\n%s", args, proc.LogTail(p.Spec.Log, 40))
		}
	})

	// The probes: /readyz and /livez over plain HTTP on the metrics URL.
	for _, probe := range []string{"/readyz", "/livez", "/metrics"} {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := p.WaitReady(wctx, probe, proc.HTTPOK(metricsURL+probe))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s/readyz, /livez and /metrics answer over plain HTTP", metricsURL)

	// Clients: topod's certificate, as topod's flags name it, and others.
	flagFile := func(c Container, argv []string, f string) string {
		v, ok := argFlag(argv, f)
		if !ok {
			t.Fatalf("%s has no --%s", c.Where(), f)
		}
		return file(c, v)
	}
	topodTLS := tlsconfig.Files{
		CA:   flagFile(*topod, topod.Argv, "etcd-tls-ca"),
		Cert: flagFile(*topod, topod.Argv, "etcd-tls-cert"),
		Key:  flagFile(*topod, topod.Argv, "etcd-tls-key"),
	}
	vtgateTLS := topodTLS
	vtgateTLS.Cert = flagFile(*vtgate, vtgate.Argv, "topod-tls-cert")
	vtgateTLS.Key = flagFile(*vtgate, vtgate.Argv, "topod-tls-key")
	noCert := tlsconfig.Files{CA: topodTLS.CA}
	put := func(endpoint string, files *tlsconfig.Files) error {
		cfg := clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 3 * time.Second, Logger: zap.NewNop()}
		if files != nil {
			tc, err := tlsconfig.Client(*files)
			if err != nil {
				t.Fatal(err)
			}
			cfg.TLS = tc
		}
		cli, err := clientv3.New(cfg)
		if err != nil {
			return err
		}
		defer cli.Close()
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err = cli.Put(pctx, "/topod-deploy-test", "x")
		return err
	}
	if err := put(clientURL, &topodTLS); err != nil {
		t.Fatalf("topod's etcd client certificate: %v", err)
	}
	t.Logf("topod's etcd client certificate (Secret topod-etcd-client-tls) writes to %s", clientURL)
	plain := strings.Replace(clientURL, "https://", "http://", 1)
	for _, tc := range []struct {
		what     string
		endpoint string
		files    *tlsconfig.Files
	}{
		{"vtgate's certificate (signed by the CA of every component's certificate)", clientURL, &vtgateTLS},
		{"no client certificate", clientURL, &noCert},
		{"plaintext", plain, nil},
	} {
		err := put(tc.endpoint, tc.files)
		if err == nil {
			t.Errorf("etcd admits %s", tc.what)
			continue
		}
		if tc.files != nil {
			// The refusal is etcd's TLS alert, not a timeout of another
			// cause: a raw handshake, then a read, gets it.
			err = handshake(t, tc.endpoint, *tc.files)
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Errorf("etcd's answer to %s: %v, want a TLS alert about the certificate", tc.what, err)
				continue
			}
		}
		t.Logf("etcd refuses %s: %v", tc.what, err)
	}
}

// handshake dials endpoint with TLS and files, and reads: the error of a
// server refusing the client's certificate (with TLS 1.3 the client learns
// it at its first read).
func handshake(t *testing.T, endpoint string, files tlsconfig.Files) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsconfig.Client(files)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NextProtos = []string{"h2"}
	if len(cfg.Certificates) > 0 {
		// Present the certificate whatever CAs etcd says it accepts (Go's
		// client would otherwise send none), as an intruder would.
		cert := cfg.Certificates[0]
		cfg.Certificates = nil
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", u.Host, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}
