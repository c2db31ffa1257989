package e2e

// A hostile server in front of the internal cluster: a TLS endpoint on
// loopback that forwards to the real kube-apiserver until told to
// misbehave (garbage instead of HTTP, a close right after the headers, a
// chunked encoding error, a watch event that never ends, a certificate for
// another name). The controller must log a precise error for the internal
// cluster, back off, keep serving the remote one (a request from a
// namespace off the allow list is still rejected), and run what waited once
// the real server is back. A stall is covered by tests/unit/test_hostile.c,
// where the idle timeout can be short.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

type hostileMode string

const (
	modeForward     hostileMode = "forward"
	modeGarbage     hostileMode = "garbage"
	modeHeadersOnly hostileMode = "headers-only"
	modeBadChunk    hostileMode = "bad-chunk"
	modeEndless     hostileMode = "endless-event"
	modeWrongName   hostileMode = "wrong-name"
)

type hostileServer struct {
	t          *testing.T
	ln         net.Listener
	url        string
	mu         sync.Mutex
	mode       hostileMode
	conns      map[net.Conn]struct{}
	good, bad  tls.Certificate // for 127.0.0.1, for another name
	caPEM      []byte
	kubeconfig string // a kubeconfig that reaches upstream through this server
}

// trackingListener remembers every raw connection so that a mode change can
// cut the ones in flight, watches included.
type trackingListener struct {
	net.Listener
	s *hostileServer
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns[c] = struct{}{}
		l.s.mu.Unlock()
	}
	return c, err
}

func newCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64, ips []net.IP,
	names []string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "hostile"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips, DNSNames: names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startHostile serves on loopback, forwarding to the API server that
// upstreamKubeconfig reaches, with the identity it holds.
func startHostile(t *testing.T, upstream *rest.Config) *hostileServer {
	s := &hostileServer{t: t, mode: modeForward, conns: map[net.Conn]struct{}{}}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hostile-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	s.good = newCert(t, ca, caKey, 2, []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	s.bad = newCert(t, ca, caKey, 3, nil, []string{"api.elsewhere.example"})

	rt, err := rest.TransportFor(upstream)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(upstream.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     rt,
		FlushInterval: -1, // watch events go through as they come
		ErrorLog:      nil,
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = tls.NewListener(trackingListener{raw, s}, &tls.Config{
		NextProtos: []string{"http/1.1"}, // hijacking needs HTTP/1.1
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if s.current() == modeWrongName {
				return &s.bad, nil
			}
			return &s.good, nil
		},
	})
	s.url = "https://" + raw.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, proxy)
	}), ErrorLog: nil}
	go func() { _ = srv.Serve(s.ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	s.kubeconfig = filepath.Join(t.TempDir(), "hostile.kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: hostile
clusters:
- name: hostile
  cluster:
    server: %s
    certificate-authority-data: %s
contexts:
- name: hostile
  context: {cluster: hostile, user: nobody}
users:
- name: nobody
  user: {}
`, s.url, base64.StdEncoding.EncodeToString(s.caPEM))
	if err := os.WriteFile(s.kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *hostileServer) current() hostileMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// setMode switches and cuts every connection, so that the client meets the
// new behaviour on its next request, watches included.
func (s *hostileServer) setMode(m hostileMode) {
	s.mu.Lock()
	s.mode = m
	conns := s.conns
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
}

func (s *hostileServer) serve(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
	mode := s.current()
	watch := r.URL.Query().Get("watch") == "1" || r.URL.Query().Get("watch") == "true"
	if mode == modeForward || mode == modeWrongName || (mode == modeEndless && !watch) {
		proxy.ServeHTTP(w, r)
		return
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.t.Errorf("hostile server: hijack: %v", err)
		return
	}
	defer conn.Close()
	switch mode {
	case modeGarbage:
		_, _ = buf.WriteString("SSH-2.0-OpenSSH_9.2p1\r\n\x01\x02 not HTTP at all\r\n")
	case modeHeadersOnly:
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
	case modeBadChunk:
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\nZZ\r\nnot a chunk\r\n")
	case modeEndless:
		head := `{"type":"ADDED","object":{"metadata":{"name":"`
		_, _ = fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"+
			"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(head), head)
		chunk := fmt.Sprintf("%x\r\n%s\r\n", 1<<16, strings.Repeat("x", 1<<16))
		// Until the client gives up on the event (its cap) or the mode changes.
		for s.current() == modeEndless {
			if _, err := buf.WriteString(chunk); err != nil {
				return
			}
			if err := buf.Flush(); err != nil {
				return
			}
		}
	}
	_ = buf.Flush()
}

// logLine is one controller log line, as far as these tests read it.
type logLine struct {
	Msg       string  `json:"msg"`
	Cluster   string  `json:"cluster"`
	Informer  string  `json:"informer"`
	Error     string  `json:"error"`
	Reason    string  `json:"reason"`
	RetryInMs float64 `json:"retry_in_ms"`
}

// watchFailures are the controller's "list/watch failed" lines for cluster
// internal from offset on.
func watchFailures(log string) []logLine {
	var out []logLine
	for _, l := range strings.Split(log, "\n") {
		var ll logLine
		if json.Unmarshal([]byte(l), &ll) == nil && ll.Msg == "list/watch failed" && ll.Cluster == "internal" {
			out = append(out, ll)
		}
	}
	return out
}

func TestHostileServer(t *testing.T) {
	e := setup(t)
	upstream, err := e.internal.RESTConfig(e.internalKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	hs := startHostile(t, upstream)
	// The controller reaches the internal cluster through the hostile server
	// only; the remote cluster directly.
	e.internalKubeconfig = hs.kubeconfig
	ctrl := e.startController("hostile")
	wait := 60 * time.Second

	e.create(request{ns: "tenant-a", name: "before", refParams: clusterRef("sign-release")})
	e.waitRequest("tenant-a", "before", "success through the forwarding server", wait,
		hasCondition("True", "Succeeded"), ctrl)

	cases := []struct {
		mode hostileMode
		want string // in the error of the internal cluster's list/watch failures
	}{
		{modeGarbage, "Received HTTP/0.9 when not allowed"},
		{modeHeadersOnly, "transfer closed with 100 bytes remaining to read"},
		{modeBadChunk, "Illegal or missing hexadecimal sequence in chunked-encoding"},
		{modeEndless, "exceeds the limit of 16777216 bytes"},
		{modeWrongName, "TLS: "},
	}
	for _, c := range cases {
		t.Run(string(c.mode), func(t *testing.T) {
			e.t = t
			offset := len(ctrl.log())
			hs.setMode(c.mode)
			// The remote cluster is still served from what the controller
			// knows: a request from off the allow list is rejected.
			e.create(request{ns: "tenant-b", name: "off-" + string(c.mode), refParams: clusterRef("sign-release")})
			e.waitRequest("tenant-b", "off-"+string(c.mode), "rejection while the internal server misbehaves", wait,
				hasCondition("False", "Rejected"), ctrl)
			// An allowed one waits rather than fails.
			e.create(request{ns: "tenant-a", name: "on-" + string(c.mode), refParams: clusterRef("sign-release")})
			var fails []logLine
			deadline := time.Now().Add(wait)
			for {
				fails = nil
				for _, f := range watchFailures(ctrl.log()[offset:]) {
					if strings.Contains(f.Error, c.want) {
						fails = append(fails, f)
					}
				}
				if len(fails) >= 2 || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if len(fails) < 2 {
				t.Fatalf("want at least two list/watch failures for cluster internal containing %q; got %+v",
					c.want, watchFailures(ctrl.log()[offset:]))
			}
			if c.mode == modeWrongName && !strings.Contains(fails[0].Error, "127.0.0.1") {
				t.Errorf("the TLS error does not name the host it was checking: %q", fails[0].Error)
			}
			// Backoff: every retry waits, and each informer's wait grows
			// from one failure to the next until it reaches the cap.
			byInformer := map[string][]float64{}
			for _, f := range watchFailures(ctrl.log()[offset:]) {
				if f.RetryInMs <= 0 {
					t.Errorf("a retry without backoff: %+v", f)
				}
				byInformer[f.Informer] = append(byInformer[f.Informer], f.RetryInMs)
			}
			grew := false
			for _, waits := range byInformer {
				for i := 1; i < len(waits); i++ {
					grew = grew || waits[i] > waits[i-1] || waits[i-1] >= 30000
				}
			}
			if !grew {
				t.Errorf("no informer's retries were spaced out more after a second failure: %v", byInformer)
			}
			if st, _, _ := condition(e.get("tenant-a", "on-"+string(c.mode))); st == "False" {
				t.Fatalf("an allowed request failed because the internal server misbehaved")
			}
			// The real server is back: what waited runs.
			hs.setMode(modeForward)
			e.waitRequest("tenant-a", "on-"+string(c.mode), "success once the server behaves", 120*time.Second,
				hasCondition("True", "Succeeded"), ctrl)
		})
	}
	e.t = t
	if strings.Contains(ctrl.log(), "AddressSanitizer") || strings.Contains(ctrl.log(), "runtime error:") {
		t.Errorf("the controller reported a memory or UB error:\n%s", ctrl.log())
	}
}
