package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"internal-services/tests/k8s/bed"
)

// The kustomize bases that ship, relative to the repository root.
var bases = []string{"deploy/crds", "deploy/internal", "deploy/remote"}

// kustomize renders dir (relative to the repository root, or absolute) with
// the kubectl the bed runs, and returns the YAML.
func kustomize(t *testing.T, root, dir string) string {
	t.Helper()
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	cmd := exec.Command(filepath.Join(root, ".cache", "bin", "kubectl"), "kustomize", dir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, errb.String())
	}
	return out.String()
}

func (e *env) kustomize(dir string) string {
	e.t.Helper()
	return kustomize(e.t, e.root, dir)
}

// objects decodes a multi-document YAML stream.
func objects(t *testing.T, text string) []unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	var out []unstructured.Unstructured
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("decoding rendered YAML: %v", err)
		}
		if obj.Object != nil {
			out = append(out, obj)
		}
	}
}

func kinds(objs []unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(out)
	return out
}

func writeTemp(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dryRun creates the Namespaces the objects live in (a server-side dry run
// of an object in a missing namespace is refused), then applies the whole
// file with --dry-run=server: the API server validates every object
// (schemas, RBAC rules, the Deployment's pod spec) and stores nothing.
func dryRun(t *testing.T, root string, c *bed.Cluster, file string, objs []unstructured.Unstructured) {
	t.Helper()
	kubectl := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(root, ".cache", "bin", "kubectl"),
			append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	seen := map[string]bool{}
	for _, o := range objs {
		ns := o.GetNamespace()
		if o.GetKind() == "Namespace" {
			ns = o.GetName()
		}
		if ns == "" || seen[ns] {
			continue
		}
		seen[ns] = true
		if _, err := kubectl("get", "namespace", ns); err != nil {
			if out, err := kubectl("create", "namespace", ns); err != nil {
				t.Fatalf("creating namespace %s: %v\n%s", ns, err, out)
			}
		}
	}
	out, err := kubectl("apply", "--dry-run=server", "-f", file)
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -f %s: %v\n%s", file, err, out)
	}
	if n := strings.Count(out, "(server dry run)"); n != len(objs) {
		t.Fatalf("%s: %d objects, %d accepted by the server's dry run:\n%s", file, len(objs), n, out)
	}
}

// A minimal ServiceMonitor CRD, so that the optional component can be
// dry-run on a bed without the Prometheus Operator.
const serviceMonitorCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// Every kustomize base renders, holds what deploy/README.md says it holds,
// and is accepted by a real API server; an overlay moves all of it to
// another namespace and image, and adds the ServiceMonitor.
func TestKustomizeBases(t *testing.T) {
	root := repoRoot(t)
	clusters := bed.StartMany(t, "remote", "internal")
	remote, internal := clusters[0], clusters[1]
	if err := internal.InstallCRDs(true); err != nil { // Tekton's, for the samples
		t.Fatal(err)
	}
	tmp := t.TempDir()
	rendered := map[string][]unstructured.Unstructured{}
	for _, base := range bases {
		text := kustomize(t, root, base)
		rendered[base] = objects(t, text)
		file := writeTemp(t, tmp, strings.ReplaceAll(base, "/", "-")+".yaml", text)
		target := internal
		if base == "deploy/remote" {
			target = remote
		}
		dryRun(t, root, target, file, rendered[base])
	}

	want := map[string][]string{
		"deploy/crds": {
			"CustomResourceDefinition/internalrequests.appstudio.redhat.com",
			"CustomResourceDefinition/internalservicesconfigs.appstudio.redhat.com",
		},
		"deploy/internal": {
			"ConfigMap/internal-services-policies",
			"CustomResourceDefinition/internalrequests.appstudio.redhat.com",
			"CustomResourceDefinition/internalservicesconfigs.appstudio.redhat.com",
			"Deployment/internal-services",
			"Namespace/internal-services",
			"Role/internal-services",
			"RoleBinding/internal-services",
			"Service/internal-services-metrics",
			"ServiceAccount/internal-services",
		},
		"deploy/remote": {
			"ClusterRole/internal-services-remote",
			"ClusterRoleBinding/internal-services-remote",
			"CustomResourceDefinition/internalrequests.appstudio.redhat.com",
			"Namespace/internal-services",
			"Secret/internal-services-remote-token",
			"ServiceAccount/internal-services-remote",
		},
	}
	for base, list := range want {
		if got := kinds(rendered[base]); strings.Join(got, " ") != strings.Join(list, " ") {
			t.Errorf("%s renders %v, want %v", base, got, list)
		}
	}

	// The policy ConfigMap carries every policy that ships, i.e. every
	// *.lua file at the top of policies/, and only those.
	shipped, _ := filepath.Glob(filepath.Join(root, "policies", "*.lua"))
	var wantKeys []string
	for _, f := range shipped {
		wantKeys = append(wantKeys, filepath.Base(f))
	}
	for _, o := range rendered["deploy/internal"] {
		if o.GetKind() != "ConfigMap" {
			continue
		}
		data, _, _ := unstructured.NestedStringMap(o.Object, "data")
		var keys []string
		for k, v := range data {
			keys = append(keys, k)
			b, err := os.ReadFile(filepath.Join(root, "policies", k))
			if err != nil || string(b) != v {
				t.Errorf("ConfigMap key %s differs from policies/%s (%v)", k, k, err)
			}
		}
		sort.Strings(keys)
		if strings.Join(keys, " ") != strings.Join(wantKeys, " ") {
			t.Errorf("policy ConfigMap holds %v, policies/ ships %v", keys, wantKeys)
		}
	}

	// The samples stand apart and are valid too (the request needs its
	// tenant namespace, the config and Pipeline the controller's).
	for _, s := range []struct {
		file   string
		target *bed.Cluster
	}{
		{"deploy/samples/internalservicesconfig.yaml", internal},
		{"deploy/samples/pipeline-sign-release.yaml", internal},
		{"deploy/samples/internalrequest.yaml", remote},
	} {
		b, err := os.ReadFile(filepath.Join(root, s.file))
		if err != nil {
			t.Fatal(err)
		}
		objs := objects(t, string(b))
		if s.target == remote {
			// Its CRD, as the remote base ships it.
			installed := writeTemp(t, tmp, "remote-crd.yaml", kustomize(t, root, "deploy/crds"))
			out, err := exec.Command(filepath.Join(root, ".cache", "bin", "kubectl"), "--kubeconfig",
				s.target.AdminKubeconfig, "apply", "--server-side", "-f", installed).CombinedOutput()
			if err != nil {
				t.Fatalf("installing the CRDs on remote: %v\n%s", err, out)
			}
			waitEstablished(t, root, s.target, "internalrequests.appstudio.redhat.com")
		} else {
			waitEstablished(t, root, s.target, "internalservicesconfigs.appstudio.redhat.com")
		}
		dryRun(t, root, s.target, filepath.Join(root, s.file), objs)
	}

	podSecurity(t, root, internal, tmp, rendered["deploy/internal"])

	// An overlay, the kustomize way: another namespace, another image,
	// the ServiceMonitor component.
	overlay := filepath.Join(tmp, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(overlay, filepath.Join(root, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	writeTemp(t, overlay, "kustomization.yaml", `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: releng-internal
resources: [`+rel+`/internal]
components: [`+rel+`/internal/servicemonitor]
images:
- name: internal-services
  newName: registry.example.com/releng/internal-services
  newTag: v1.2.3
`)
	text := kustomize(t, root, overlay)
	objs := objects(t, text)
	crd := writeTemp(t, tmp, "servicemonitor-crd.yaml", serviceMonitorCRD)
	if out, err := exec.Command(filepath.Join(root, ".cache", "bin", "kubectl"), "--kubeconfig",
		internal.AdminKubeconfig, "apply", "-f", crd).CombinedOutput(); err != nil {
		t.Fatalf("installing the ServiceMonitor CRD: %v\n%s", err, out)
	}
	waitEstablished(t, root, internal, "servicemonitors.monitoring.coreos.com")
	dryRun(t, root, internal, writeTemp(t, tmp, "overlay.yaml", text), objs)
	if strings.Contains(text, "namespace: internal-services") {
		t.Errorf("the overlay still places something in namespace internal-services:\n%s", text)
	}
	var monitors int
	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace":
			if o.GetName() != "releng-internal" {
				t.Errorf("Namespace %s, want releng-internal", o.GetName())
			}
		case "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding":
		default:
			if o.GetNamespace() != "releng-internal" {
				t.Errorf("%s/%s in namespace %q, want releng-internal", o.GetKind(), o.GetName(), o.GetNamespace())
			}
		}
		switch o.GetKind() {
		case "RoleBinding":
			subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, s := range subjects {
				if ns := s.(map[string]interface{})["namespace"]; ns != "releng-internal" {
					t.Errorf("RoleBinding subject %v in namespace %v, want releng-internal", s, ns)
				}
			}
		case "Deployment":
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			image := containers[0].(map[string]interface{})["image"]
			if image != "registry.example.com/releng/internal-services:v1.2.3" {
				t.Errorf("Deployment image %v, want the overlay's", image)
			}
		case "ServiceMonitor":
			monitors++
		}
	}
	if monitors != 1 {
		t.Errorf("the servicemonitor component added %d ServiceMonitors, want 1", monitors)
	}
}

func waitEstablished(t *testing.T, root string, c *bed.Cluster, crd string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(root, ".cache", "bin", "kubectl"), "--kubeconfig", c.AdminKubeconfig,
		"wait", "--for=condition=Established", "--timeout=60s", "crd/"+crd).CombinedOutput()
	if err != nil {
		t.Fatalf("CRD %s not established: %v\n%s", crd, err, out)
	}
}

// PipelineRuns run in the controller's namespace, which enforces Pod
// Security "restricted": the sample Pipeline's steps, as the containers of
// a pod there, pass the API server's PodSecurity admission, and the same
// containers without their securityContext do not (so the check can fail).
func podSecurity(t *testing.T, root string, c *bed.Cluster, tmp string, internalBase []unstructured.Unstructured) {
	t.Helper()
	var ns *unstructured.Unstructured
	for i := range internalBase {
		if internalBase[i].GetKind() == "Namespace" {
			ns = &internalBase[i]
		}
	}
	if ns == nil || ns.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Fatalf("the internal base's Namespace does not enforce Pod Security restricted: %v", ns)
	}
	kubectl := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(root, ".cache", "bin", "kubectl"),
			append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...).CombinedOutput()
		return string(out), err
	}
	b, _ := json.Marshal(ns.Object)
	if out, err := kubectl("apply", "-f", writeTemp(t, tmp, "namespace.json", string(b))); err != nil {
		t.Fatalf("applying the Namespace: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "samples", "pipeline-sign-release.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var containers, bare []interface{}
	for _, p := range objects(t, string(b)) {
		tasks, _, _ := unstructured.NestedSlice(p.Object, "spec", "tasks")
		for _, task := range tasks {
			steps, _, _ := unstructured.NestedSlice(task.(map[string]interface{}), "taskSpec", "steps")
			for _, step := range steps {
				s := step.(map[string]interface{})
				sc, _ := s["securityContext"].(map[string]interface{})
				containers = append(containers, map[string]interface{}{"name": s["name"], "image": s["image"], "securityContext": sc})
				bare = append(bare, map[string]interface{}{"name": s["name"], "image": s["image"]})
			}
		}
	}
	if len(containers) == 0 {
		t.Fatal("the sample Pipeline has no steps")
	}
	pod := func(name string, cs []interface{}) string {
		b, _ := json.Marshal(map[string]interface{}{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]interface{}{"name": name, "namespace": ns.GetName()},
			"spec":     map[string]interface{}{"containers": cs},
		})
		return writeTemp(t, tmp, name+".json", string(b))
	}
	if out, err := kubectl("create", "--dry-run=server", "-f", pod("sample-steps", containers)); err != nil {
		t.Errorf("the sample Pipeline's steps do not pass Pod Security restricted: %v\n%s", err, out)
	}
	out, err := kubectl("create", "--dry-run=server", "-f", pod("bare-steps", bare))
	if err == nil || !strings.Contains(out, "violates PodSecurity \"restricted") {
		t.Errorf("steps without a securityContext were not refused by PodSecurity: %v\n%s", err, out)
	}
}
