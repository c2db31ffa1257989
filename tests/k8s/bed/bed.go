// Package bed gives Go tests a real Kubernetes control plane (etcd and
// kube-apiserver on loopback) through tests/bed/cluster. Every cluster a
// test starts is destroyed when the test ends, passes or fails, when the
// process gets SIGINT/SIGTERM/SIGHUP, and, through the script's watchdog,
// when the process dies in a way no Go code sees (a timeout panic, SIGKILL).
package bed

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is one running bed cluster. Paths are absolute.
type Cluster struct {
	Name                 string
	Dir                  string // state directory
	APIServerURL         string
	EtcdURL              string
	CACert               string
	AdminKubeconfig      string // CN=admin, O=system:masters
	RestrictedKubeconfig string // CN=restricted, O=restricted, bound to nothing
	AuditLog             string // the API server's audit log, JSON lines at Metadata level
	Namespace            string // created at start
	StartDuration        time.Duration

	bedDir string // IS_BED_DIR the script runs with
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error

	binOnce sync.Once
	binErr  error
	binLog  []byte

	liveMu  sync.Mutex
	live    = map[*Cluster]struct{}{}
	sigOnce sync.Once
)

// RepoRoot is the internal-services checkout the tests run in, found by
// walking up from the working directory to tests/bed/cluster.
func RepoRoot() (string, error) {
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "tests", "bed", "cluster")); err == nil {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = errors.New("bed: no tests/bed/cluster above the working directory")
				return
			}
			dir = parent
		}
	})
	return rootDir, rootErr
}

// Binaries builds kube-apiserver, etcd and kubectl once per test process
// (tests/bed/build-binaries skips the build when they match the pin).
func Binaries(t testing.TB) {
	t.Helper()
	binOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			binErr = err
			return
		}
		cmd := exec.Command(filepath.Join(root, "tests", "bed", "build-binaries"))
		binLog, binErr = cmd.CombinedOutput()
	})
	if binErr != nil {
		t.Fatalf("bed: build-binaries failed: %v\n%s", binErr, binLog)
	}
}

// bedDir is a directory of this process's own, so that test packages run in
// parallel by `go test ./...` can each start a cluster named "remote".
func bedDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	base := os.Getenv("IS_BED_DIR")
	if base == "" {
		base = filepath.Join(root, ".cache", "bed")
	}
	return filepath.Join(base, "go-"+strconv.Itoa(os.Getpid())), nil
}

// Start starts cluster name and registers its destruction with t.Cleanup.
func Start(t testing.TB, name string) *Cluster {
	t.Helper()
	return StartMany(t, name)[0]
}

// StartMany starts the named clusters side by side and returns them in the
// same order.
func StartMany(t testing.TB, names ...string) []*Cluster {
	t.Helper()
	Binaries(t)
	dir, err := bedDir()
	if err != nil {
		t.Fatal(err)
	}
	clusters := make([]*Cluster, len(names))
	for i, name := range names {
		c := &Cluster{Name: name, bedDir: dir}
		clusters[i] = c
		register(c)
		// Registered before the start so a half-started cluster goes too.
		t.Cleanup(func() {
			if err := c.Destroy(); err != nil {
				t.Errorf("bed: destroy %s: %v", c.Name, err)
			}
		})
	}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, c := range clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.start()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return clusters
}

func (c *Cluster) start() error {
	began := time.Now()
	if _, err := c.script("start"); err != nil {
		return err
	}
	c.StartDuration = time.Since(began)
	out, err := c.script("env")
	if err != nil {
		return err
	}
	env := parseEnv(out)
	c.Dir = env["BED_DIR"]
	c.APIServerURL = env["APISERVER_URL"]
	c.EtcdURL = env["ETCD_URL"]
	c.CACert = env["CA_CERT"]
	c.AdminKubeconfig = env["ADMIN_KUBECONFIG"]
	c.RestrictedKubeconfig = env["RESTRICTED_KUBECONFIG"]
	c.AuditLog = env["AUDIT_LOG"]
	c.Namespace = env["BED_NAMESPACE"]
	if c.Dir == "" || c.APIServerURL == "" || c.AdminKubeconfig == "" {
		return fmt.Errorf("bed: incomplete env for %s:\n%s", c.Name, out)
	}
	return nil
}

func parseEnv(text string) map[string]string {
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// script runs tests/bed/cluster CMD NAME ARGS... and returns its stdout;
// the error carries stderr, where the script explains itself.
func (c *Cluster) script(cmd string, args ...string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	argv := append([]string{cmd, c.Name}, args...)
	x := exec.Command(filepath.Join(root, "tests", "bed", "cluster"), argv...)
	x.Env = append(os.Environ(),
		"IS_BED_DIR="+c.bedDir,
		"IS_BED_OWNER_PID="+strconv.Itoa(os.Getpid()))
	var stdout, stderr bytes.Buffer
	x.Stdout, x.Stderr = &stdout, &stderr
	if err := x.Run(); err != nil {
		return stdout.String(), fmt.Errorf("bed: cluster %s %s: %v\n%s", cmd, c.Name, err, stderr.String())
	}
	return stdout.String(), nil
}

// Destroy stops the cluster and removes its state; later calls do nothing.
func (c *Cluster) Destroy() error {
	_, err := c.script("destroy")
	unregister(c)
	// The per-process directory goes with its last cluster.
	_ = os.Remove(c.bedDir)
	return err
}

// RestartAPIServer stops the apiserver and starts it on the same port over
// the same etcd, as an apiserver upgrade or crash would.
func (c *Cluster) RestartAPIServer() error {
	_, err := c.script("restart-apiserver")
	return err
}

func (c *Cluster) StopAPIServer() error {
	_, err := c.script("stop-apiserver")
	return err
}

// StartAPIServer starts the apiserver again and waits until it is ready.
func (c *Cluster) StartAPIServer() error {
	_, err := c.script("start-apiserver")
	return err
}

// Compact compacts etcd to its current revision and returns that revision;
// watches from older resource versions then get 410 Gone.
func (c *Cluster) Compact() (int64, error) {
	out, err := c.script("compact")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(out), 10, 64)
}

// Kubeconfig mints a client certificate for user in groups and returns the
// path of a kubeconfig that uses it.
func (c *Cluster) Kubeconfig(user string, groups ...string) (string, error) {
	out, err := c.script("kubeconfig", append([]string{user}, groups...)...)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// InstallCRDs applies deploy/crds/ and, with tekton, Tekton's Pipeline,
// PipelineRun and Task CRDs, and waits until they are established.
func (c *Cluster) InstallCRDs(tekton bool) error {
	args := []string{}
	if tekton {
		args = append(args, "--tekton")
	}
	_, err := c.script("install-crds", args...)
	return err
}

// PIDs are the processes the cluster runs now, by role.
func (c *Cluster) PIDs() map[string]int {
	pids := map[string]int{}
	for _, role := range []string{"etcd", "apiserver", "watchdog"} {
		b, err := os.ReadFile(filepath.Join(c.Dir, role+".pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids[role] = pid
		}
	}
	return pids
}

// RESTConfig loads a kubeconfig (the admin one when path is empty).
func (c *Cluster) RESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		path = c.AdminKubeconfig
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 30 * time.Second
	return cfg, nil
}

// Dynamic is a dynamic client acting as admin.
func (c *Cluster) Dynamic() (dynamic.Interface, error) {
	return c.DynamicAs("")
}

// DynamicAs is a dynamic client for the identity in kubeconfig path.
func (c *Cluster) DynamicAs(path string) (dynamic.Interface, error) {
	cfg, err := c.RESTConfig(path)
	if err != nil {
		return nil, err
	}
	return dynamic.NewForConfig(cfg)
}

// Ready reports whether /readyz answers ok to admin.
func (c *Cluster) Ready(ctx context.Context) error {
	cfg, err := c.RESTConfig("")
	if err != nil {
		return err
	}
	client, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	body, err := client.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return err
	}
	if string(body) != "ok" {
		return fmt.Errorf("bed: %s /readyz answered %q", c.Name, body)
	}
	return nil
}

func register(c *Cluster) {
	liveMu.Lock()
	live[c] = struct{}{}
	liveMu.Unlock()
	sigOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		go func() {
			sig := <-ch
			fmt.Fprintf(os.Stderr, "bed: %v: destroying clusters\n", sig)
			liveMu.Lock()
			all := make([]*Cluster, 0, len(live))
			for c := range live {
				all = append(all, c)
			}
			liveMu.Unlock()
			for _, c := range all {
				_ = c.Destroy()
			}
			os.Exit(2)
		}()
	})
}

func unregister(c *Cluster) {
	liveMu.Lock()
	delete(live, c)
	liveMu.Unlock()
}
