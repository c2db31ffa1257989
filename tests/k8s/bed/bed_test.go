package bed

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

var (
	crdGVR       = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	configMapGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	roleGVR      = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}
	bindingGVR   = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}
	pipelineRun  = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"}
	tektonCRDs   = []string{"pipelines.tekton.dev", "pipelineruns.tekton.dev", "tasks.tekton.dev"}
)

func TestTwoClusters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	Binaries(t)
	began := time.Now()
	clusters := StartMany(t, "remote", "internal")
	remote, internal := clusters[0], clusters[1]
	t.Logf("both clusters ready in %v (remote alone took %v, internal %v)",
		time.Since(began).Round(time.Millisecond),
		remote.StartDuration.Round(time.Millisecond),
		internal.StartDuration.Round(time.Millisecond))

	if remote.APIServerURL == internal.APIServerURL || remote.EtcdURL == internal.EtcdURL {
		t.Fatalf("clusters share an endpoint: %s %s / %s %s",
			remote.APIServerURL, remote.EtcdURL, internal.APIServerURL, internal.EtcdURL)
	}
	for _, c := range clusters {
		if err := c.Ready(ctx); err != nil {
			t.Fatalf("%s not ready: %v", c.Name, err)
		}
		admin := mustDynamic(t, c, "")
		if _, err := admin.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).
			Get(ctx, c.Namespace, metav1.GetOptions{}); err != nil {
			t.Fatalf("%s: namespace %q: %v", c.Name, c.Namespace, err)
		}
	}

	t.Run("start is idempotent", func(t *testing.T) {
		before := remote.PIDs()
		if err := remote.start(); err != nil {
			t.Fatal(err)
		}
		after := remote.PIDs()
		if before["apiserver"] != after["apiserver"] || before["etcd"] != after["etcd"] {
			t.Fatalf("second start replaced processes: %v -> %v", before, after)
		}
	})

	t.Run("CRDs", func(t *testing.T) {
		own := projectCRDNames(t)
		if err := remote.InstallCRDs(false); err != nil {
			t.Fatal(err)
		}
		if err := internal.InstallCRDs(true); err != nil {
			t.Fatal(err)
		}
		for _, name := range own {
			requireEstablished(ctx, t, remote, name)
			requireEstablished(ctx, t, internal, name)
		}
		for _, name := range tektonCRDs {
			crd := requireEstablished(ctx, t, internal, name)
			strategy, _, _ := unstructured.NestedString(crd.Object, "spec", "conversion", "strategy")
			if strategy != "None" {
				t.Errorf("%s conversion strategy %q, want None", name, strategy)
			}
			_, err := mustDynamic(t, remote, "").Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				t.Errorf("remote has %s without --tekton (err %v)", name, err)
			}
		}
		// Installing again changes nothing and fails nothing.
		if err := internal.InstallCRDs(true); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("admin writes and restricted is forbidden", func(t *testing.T) {
		pr := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "tekton.dev/v1",
			"kind":       "PipelineRun",
			"metadata":   map[string]any{"name": "bed-check"},
			"spec":       map[string]any{"pipelineRef": map[string]any{"name": "p"}},
		}}
		admin := mustDynamic(t, internal, "")
		if _, err := admin.Resource(pipelineRun).Namespace(internal.Namespace).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
			t.Fatalf("admin creating a PipelineRun: %v", err)
		}
		got, err := admin.Resource(pipelineRun).Namespace(internal.Namespace).Get(ctx, "bed-check", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ref, _, _ := unstructured.NestedString(got.Object, "spec", "pipelineRef", "name"); ref != "p" {
			t.Fatalf("PipelineRun read back with pipelineRef %q", ref)
		}

		restricted := mustDynamic(t, remote, remote.RestrictedKubeconfig)
		_, err = restricted.Resource(configMapGVR).Namespace(remote.Namespace).
			Create(ctx, configMap("from-restricted"), metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("restricted create: got %v, want 403 Forbidden", err)
		}
		_, err = restricted.Resource(configMapGVR).Namespace(remote.Namespace).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("restricted list: got %v, want 403 Forbidden", err)
		}
	})

	t.Run("minted identity gets exactly its RBAC", func(t *testing.T) {
		path, err := remote.Kubeconfig("system:serviceaccount:is:controller", "is-controllers")
		if err != nil {
			t.Fatal(err)
		}
		admin := mustDynamic(t, remote, "")
		ns := remote.Namespace
		role := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
			"metadata": map[string]any{"name": "cm-reader"},
			"rules": []any{map[string]any{
				"apiGroups": []any{""}, "resources": []any{"configmaps"},
				"verbs": []any{"get", "list"},
			}},
		}}
		binding := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
			"metadata": map[string]any{"name": "cm-reader"},
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
			"subjects": []any{map[string]any{
				"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "is-controllers",
			}},
		}}
		if _, err := admin.Resource(roleGVR).Namespace(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Resource(bindingGVR).Namespace(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ctrl := mustDynamic(t, remote, path)
		if _, err := ctrl.Resource(configMapGVR).Namespace(ns).List(ctx, metav1.ListOptions{}); err != nil {
			t.Fatalf("bound identity cannot list configmaps: %v", err)
		}
		_, err = ctrl.Resource(configMapGVR).Namespace(ns).Create(ctx, configMap("from-ctrl"), metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("bound identity create: got %v, want 403 Forbidden", err)
		}
	})

	t.Run("wrong CA fails TLS", func(t *testing.T) {
		cfg, err := internal.RESTConfig("")
		if err != nil {
			t.Fatal(err)
		}
		remoteCA, err := os.ReadFile(remote.CACert)
		if err != nil {
			t.Fatal(err)
		}
		cfg.CAData, cfg.CAFile = remoteCA, ""
		client, err := dynamic.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.Resource(configMapGVR).Namespace(internal.Namespace).List(ctx, metav1.ListOptions{})
		if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Fatalf("internal apiserver with remote's CA: got %v, want an unknown-authority TLS error", err)
		}
	})

	t.Run("apiserver restart keeps the data", func(t *testing.T) {
		admin := mustDynamic(t, remote, "")
		ns := remote.Namespace
		if _, err := admin.Resource(configMapGVR).Namespace(ns).Create(ctx, configMap("survivor"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		oldPID := remote.PIDs()["apiserver"]
		if err := remote.RestartAPIServer(); err != nil {
			t.Fatal(err)
		}
		if newPID := remote.PIDs()["apiserver"]; newPID == oldPID || newPID == 0 {
			t.Fatalf("apiserver pid %d after restart, was %d", newPID, oldPID)
		}
		if !processGone(oldPID) {
			t.Fatalf("old apiserver %d still running", oldPID)
		}
		if _, err := admin.Resource(configMapGVR).Namespace(ns).Get(ctx, "survivor", metav1.GetOptions{}); err != nil {
			t.Fatalf("object lost across restart: %v", err)
		}

		if err := remote.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		if err := remote.Ready(ctx); err == nil {
			t.Fatal("apiserver answers while stopped")
		}
		if err := remote.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		if err := remote.Ready(ctx); err != nil {
			t.Fatalf("apiserver not ready after start-apiserver: %v", err)
		}
	})

	t.Run("compact drops old revisions", func(t *testing.T) {
		admin := mustDynamic(t, internal, "")
		ns := internal.Namespace
		cm, err := admin.Resource(configMapGVR).Namespace(ns).Create(ctx, configMap("compacted"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		oldRV := cm.GetResourceVersion()
		for i := 0; i < 3; i++ {
			_ = unstructured.SetNestedField(cm.Object, strings.Repeat("x", i+1), "data", "k")
			if cm, err = admin.Resource(configMapGVR).Namespace(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		key := "/registry/configmaps/" + ns + "/compacted"
		if err := etcdRangeAt(ctx, internal.EtcdURL, key, oldRV); err != nil {
			t.Fatalf("revision %s unreadable before compaction: %v", oldRV, err)
		}
		rev, err := internal.Compact()
		if err != nil {
			t.Fatal(err)
		}
		if latest := cm.GetResourceVersion(); rev < mustInt(t, latest) {
			t.Fatalf("compacted to %d, below the latest write %s", rev, latest)
		}
		err = etcdRangeAt(ctx, internal.EtcdURL, key, oldRV)
		if err == nil || !strings.Contains(err.Error(), "compacted") {
			t.Fatalf("revision %s after compaction to %d: got %v, want compacted", oldRV, rev, err)
		}
		again, err := internal.Compact()
		if err != nil || again < rev {
			t.Fatalf("second compaction: %d, %v", again, err)
		}
	})

	t.Run("destroy leaves no process", func(t *testing.T) {
		for _, c := range clusters {
			pids := c.PIDs()
			for _, role := range []string{"etcd", "apiserver", "watchdog"} {
				if pids[role] == 0 {
					t.Fatalf("%s has no %s pid recorded: %v", c.Name, role, pids)
				}
			}
			if err := c.Destroy(); err != nil {
				t.Fatal(err)
			}
			for role, pid := range pids {
				if !processGone(pid) {
					t.Errorf("%s %s (pid %d) still running after destroy", c.Name, role, pid)
				}
			}
			if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s state %s still there (%v)", c.Name, c.Dir, err)
			}
			if err := c.Destroy(); err != nil {
				t.Errorf("second destroy of %s: %v", c.Name, err)
			}
		}
	})
}

func mustDynamic(t *testing.T, c *Cluster, kubeconfig string) dynamic.Interface {
	t.Helper()
	d, err := c.DynamicAs(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", s, err)
	}
	return n
}

func configMap(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name},
		"data":     map[string]any{"k": "v"},
	}}
}

// projectCRDNames reads the CRD names from deploy/crds, the files
// install-crds applies.
func projectCRDNames(t *testing.T) []string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "crds", "*.yaml"))
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var doc unstructured.Unstructured
			if err := dec.Decode(&doc.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s: %v", f, err)
			}
			if doc.GetKind() == "CustomResourceDefinition" {
				names = append(names, doc.GetName())
			}
		}
	}
	if len(names) == 0 {
		t.Fatalf("no CustomResourceDefinition in %s/deploy/crds", root)
	}
	return names
}

func requireEstablished(ctx context.Context, t *testing.T, c *Cluster, name string) *unstructured.Unstructured {
	t.Helper()
	crd, err := mustDynamic(t, c, "").Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("%s: CRD %s: %v", c.Name, name, err)
	}
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, cond := range conds {
		m, _ := cond.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return crd
		}
	}
	t.Fatalf("%s: CRD %s not established: %v", c.Name, name, conds)
	return nil
}

// etcdRangeAt reads key at revision rev through etcd's JSON gateway; the
// error carries etcd's message, e.g. "required revision has been compacted".
func etcdRangeAt(ctx context.Context, etcdURL, key, rev string) error {
	body, _ := json.Marshal(map[string]string{
		"key":      base64.StdEncoding.EncodeToString([]byte(key)),
		"revision": rev,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, etcdURL+"/v3/kv/range", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var answer struct {
		Kvs     []json.RawMessage `json:"kvs"`
		Message string            `json:"message"`
		Error   string            `json:"error"`
	}
	if err := json.Unmarshal(out, &answer); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(answer.Message + answer.Error)
	}
	if len(answer.Kvs) != 1 {
		return errors.New("key not found at revision " + rev)
	}
	return nil
}

// processGone: no such process, or a zombie nobody reaped yet.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}
