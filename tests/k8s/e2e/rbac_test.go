package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The identities the controller runs under on the bed, as in setup.
const (
	remoteUser   = "internal-services-remote"
	internalUser = "system:serviceaccount:" + controllerNS + ":internal-services"
)

// permission is "verb group/resource[/subresource]", core group as "".
func permission(verb, group, resource string) string {
	return verb + " " + group + "/" + resource
}

// used reads an audit log and returns every permission user exercised,
// with one example request each; a request without an object (a
// non-resource URL such as /version) counts as its own kind of permission.
func used(t *testing.T, path, user string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if e.User.Username != user {
			continue
		}
		var p string
		if e.ObjectRef.Resource == "" {
			p = e.Verb + " nonResourceURL " + e.RequestURI
		} else {
			res := e.ObjectRef.Resource
			if e.ObjectRef.Subresource != "" {
				res += "/" + e.ObjectRef.Subresource
			}
			p = permission(e.Verb, e.ObjectRef.APIGroup, res)
		}
		if _, seen := out[p]; !seen {
			out[p] = fmt.Sprintf("%s -> %d", e.RequestURI, e.ResponseStatus.Code)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// granted expands the rules of the Role or ClusterRole named name in a
// rendered base into permissions.
func granted(t *testing.T, objs []unstructured.Unstructured, kind, name string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	found := false
	for _, o := range objs {
		if o.GetKind() != kind || o.GetName() != name {
			continue
		}
		found = true
		rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
		for _, r := range rules {
			rule := r.(map[string]interface{})
			if _, ok := rule["resourceNames"]; ok {
				t.Errorf("%s %s: a rule limited by resourceNames cannot be compared by resource: %v", kind, name, rule)
			}
			groups, _, _ := unstructured.NestedStringSlice(rule, "apiGroups")
			resources, _, _ := unstructured.NestedStringSlice(rule, "resources")
			verbs, _, _ := unstructured.NestedStringSlice(rule, "verbs")
			for _, g := range groups {
				for _, res := range resources {
					for _, v := range verbs {
						out[permission(v, g, res)] = true
					}
				}
			}
		}
	}
	if !found {
		t.Fatalf("no %s %s in the rendered base", kind, name)
	}
	return out
}

// compare fails the test for every permission granted but never used, and
// every one used but not granted.
func compare(t *testing.T, where string, grant map[string]bool, use map[string]string) {
	t.Helper()
	var unused, ungranted []string
	for p := range grant {
		if _, ok := use[p]; !ok {
			unused = append(unused, p)
		}
	}
	for p, example := range use {
		if !grant[p] {
			ungranted = append(ungranted, p+" (e.g. "+example+")")
		}
	}
	sort.Strings(unused)
	sort.Strings(ungranted)
	for _, p := range unused {
		t.Errorf("%s: granted but never used by the controller: %s", where, p)
	}
	for _, p := range ungranted {
		t.Errorf("%s: used by the controller but not granted: %s", where, p)
	}
	var all []string
	for p := range use {
		all = append(all, p)
	}
	sort.Strings(all)
	t.Logf("%s: the controller used %s", where, strings.Join(all, ", "))
}

// Least privilege, proven: the controller runs every path of its workflow
// under the shipped identities (leader election, a success, a rejection, a
// failure, a request deleted while its run goes on, a run deleted behind
// its back, a graceful stop), and the permissions its requests used, read
// from both API servers' audit logs, are exactly those the shipped Role and
// ClusterRole grant.
func TestLeastPrivilege(t *testing.T) {
	e := setup(t)
	ctrl := e.startController("rbac", "--leader-elect", "--leader-election-id", "rbac-leader")
	wait := 60 * time.Second
	ctx := context.Background()

	e.create(request{ns: "tenant-a", name: "ok", refParams: clusterRef("sign-release")})
	e.create(request{ns: "tenant-b", name: "off-list", refParams: clusterRef("sign-release")})
	e.create(request{ns: "tenant-a", name: "fails", refParams: clusterRef("always-fails")})
	e.create(request{ns: "tenant-a", name: "withdrawn", refParams: clusterRef("never-ends")})
	orphan := e.create(request{ns: "tenant-a", name: "orphaned", refParams: clusterRef("never-ends")})

	e.waitRequest("tenant-a", "ok", "success", wait, hasCondition("True", "Succeeded"), ctrl)
	e.waitRequest("tenant-b", "off-list", "rejection", wait, hasCondition("False", "Rejected"), ctrl)
	e.waitRequest("tenant-a", "fails", "failure", wait, hasCondition("False", "Failed"), ctrl)

	// Deleted while running: the run is cancelled and deleted, then the
	// finalizer goes and the request with it.
	e.waitRequest("tenant-a", "withdrawn", "Running", wait, hasCondition("Unknown", "Running"), ctrl)
	if err := e.remoteC.Resource(irGVR).Namespace("tenant-a").Delete(ctx, "withdrawn", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitRequest("tenant-a", "withdrawn", "deletion", wait, func(o *unstructured.Unstructured) bool { return o == nil }, ctrl)

	// A run deleted by someone else: the controller looks the run and the
	// request up live before it fails the request.
	e.waitRequest("tenant-a", "orphaned", "Running", wait, hasCondition("Unknown", "Running"), ctrl)
	for _, pr := range e.pipelineRuns(string(orphan.GetUID())) {
		if err := e.internalC.Resource(prGVR).Namespace(controllerNS).Delete(ctx, pr.GetName(), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.waitRequest("tenant-a", "orphaned", "failure", wait, hasCondition("False", "Failed"), ctrl)

	// A graceful stop releases the Lease (an update).
	ctrl.stop(t)
	mustContain(t, "controller log", ctrl.log(), "released the Lease")

	compare(t, "internal cluster (Role internal-services)",
		granted(t, objects(t, e.kustomize("deploy/internal")), "Role", "internal-services"),
		used(t, e.internal.AuditLog, internalUser))
	compare(t, "remote cluster (ClusterRole internal-services-remote)",
		granted(t, objects(t, e.kustomize("deploy/remote")), "ClusterRole", "internal-services-remote"),
		used(t, e.remote.AuditLog, remoteUser))
}
