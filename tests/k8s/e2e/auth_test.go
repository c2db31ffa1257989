package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
)

// credPlugin prints an ExecCredential: the client certificate and key in
// CERT and KEY (files) when set, else the token in TOKEN. Every run appends
// KUBERNETES_EXEC_INFO to RECORD.
const credPlugin = `#!/bin/sh
echo "$KUBERNETES_EXEC_INFO" >> "$RECORD"
if [ -n "$CERT" ]; then
    cert=$(awk '{printf "%s\\n", $0}' "$CERT")
    key=$(awk '{printf "%s\\n", $0}' "$KEY")
    printf '{"apiVersion":"%s","kind":"ExecCredential","status":{"clientCertificateData":"%s","clientKeyData":"%s"}}\n' "$API" "$cert" "$key"
else
    printf '{"apiVersion":"%s","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"2999-01-01T00:00:00Z"}}\n' "$API" "$TOKEN"
fi
`

// The controller authenticates through exec credential plugins, as managed
// clusters hand them out: to remote with a client certificate the plugin
// prints (the controller's own RBAC identity), to internal with a token,
// its kubeconfig found through a KUBECONFIG list.
func TestExecPluginsAndKubeconfigList(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("plugin.sh", credPlugin, 0o755)

	// Remote: the certificate and key of the controller's identity there.
	rc, err := clientcmd.LoadFromFile(e.remoteKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	user := rc.AuthInfos[rc.Contexts[rc.CurrentContext].AuthInfo]
	cert, key := user.ClientCertificateData, user.ClientKeyData
	if len(cert) == 0 {
		if cert, err = os.ReadFile(user.ClientCertificate); err != nil {
			t.Fatal(err)
		}
		if key, err = os.ReadFile(user.ClientKey); err != nil {
			t.Fatal(err)
		}
	}
	certFile, keyFile := write("remote.crt", string(cert), 0o600), write("remote.key", string(key), 0o600)
	caRemote, _ := os.ReadFile(e.remote.CACert)
	remoteRecord := filepath.Join(dir, "remote.record")
	remoteCfg := write("remote.kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: remote
clusters:
- name: remote
  cluster: {server: %q, certificate-authority-data: %s}
contexts:
- name: remote
  context: {cluster: remote, user: plugin}
users:
- name: plugin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ./plugin.sh
      interactiveMode: Never
      env:
      - {name: API, value: client.authentication.k8s.io/v1}
      - {name: CERT, value: %q}
      - {name: KEY, value: %q}
      - {name: RECORD, value: %q}
`, e.remote.APIServerURL, base64.StdEncoding.EncodeToString(caRemote), certFile, keyFile, remoteRecord), 0o600)

	// Internal: the bed's static admin token, with cluster info.
	csv, err := os.ReadFile(filepath.Join(e.internal.Dir, "pki", "tokens.csv"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.SplitN(string(csv), ",", 2)[0]
	caInternal, _ := os.ReadFile(e.internal.CACert)
	internalRecord := filepath.Join(dir, "internal.record")
	internalCfg := write("internal.kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: internal
clusters:
- name: internal
  cluster: {server: %q, certificate-authority-data: %s}
contexts:
- name: internal
  context: {cluster: internal, user: plugin}
users:
- name: plugin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: %s
      provideClusterInfo: true
      env:
      - {name: API, value: client.authentication.k8s.io/v1beta1}
      - {name: TOKEN, value: %q}
      - {name: RECORD, value: %q}
`, e.internal.APIServerURL, base64.StdEncoding.EncodeToString(caInternal), filepath.Join(dir, "plugin.sh"),
		token, internalRecord), 0o600)

	// A missing file and the controller's usual kubeconfig around it: the
	// first file that names a context wins.
	t.Setenv("KUBECONFIG", strings.Join([]string{filepath.Join(dir, "absent.kubeconfig"), internalCfg, e.internalKubeconfig}, ":"))
	c := e.startController("exec-auth", "--kubeconfig=", "--remote-cluster-config-file", remoteCfg)
	e.create(request{ns: "tenant-a", name: "via-plugins", refParams: clusterRef("sign-release")})
	obj := e.waitRequest("tenant-a", "via-plugins", "success", 60*time.Second, hasCondition("True", "Succeeded"), c)
	if res, _, _ := unstructured.NestedMap(obj.Object, "status", "results"); res["signature"] == nil {
		t.Errorf("no results relayed: %v", obj.Object["status"])
	}
	mustContain(t, "controller log", c.log(), `"exec credential plugin gave a credential","cluster":"remote","kind":"certificate"`)
	mustContain(t, "controller log", c.log(), `"exec credential plugin gave a credential","cluster":"internal","kind":"token"`)

	rec, _ := os.ReadFile(remoteRecord)
	mustContain(t, "remote plugin's KUBERNETES_EXEC_INFO", string(rec),
		`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}`)
	rec, _ = os.ReadFile(internalRecord)
	mustContain(t, "internal plugin's KUBERNETES_EXEC_INFO", string(rec),
		fmt.Sprintf(`"spec":{"interactive":false,"cluster":{"server":"%s","certificate-authority-data":"%s"}}`,
			e.internal.APIServerURL, base64.StdEncoding.EncodeToString(caInternal)))
	// The token does not expire within the test: one run serves every request.
	if n := strings.Count(string(rec), "\n"); n != 1 {
		t.Errorf("the internal plugin ran %d times, want once", n)
	}
	c.stop(t)

	// Neither --kubeconfig nor KUBECONFIG, and not in a cluster:
	// ~/.kube/config, as controller-runtime falls back to it.
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(internalCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".kube", "config"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	c = e.startController("home-kubeconfig", "--kubeconfig=", "--remote-cluster-config-file", remoteCfg)
	e.create(request{ns: "tenant-a", name: "via-home", refParams: clusterRef("sign-release")})
	e.waitRequest("tenant-a", "via-home", "success", 60*time.Second, hasCondition("True", "Succeeded"), c)
	if n := strings.Count(readFile(t, internalRecord), "\n"); n != 2 {
		t.Errorf("the internal plugin ran %d times in all, want twice (once per controller)", n)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
