package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The command line: bad input ends in one clear line on stderr and a
// non-zero exit, before anything connects anywhere.
func TestCommandLine(t *testing.T) {
	bin := filepath.Join(buildDir(t), "internal-services")
	notYAML := filepath.Join(t.TempDir(), "broken.kubeconfig")
	if err := os.WriteFile(notYAML, []byte("clusters: [\n  - name: a\n    cluster: {server: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--version"}, 0, "internal-services "},
		{[]string{"--help"}, 0, "--remote-cluster-config-file PATH"},
		{[]string{"--bogus"}, 2, "unknown option --bogus"},
		{[]string{"--log-level"}, 2, "--log-level needs a value"},
		{[]string{"--log-level", "loud", "--remote-cluster-config-file", "x"}, 2, `invalid value "loud" for --log-level`},
		{[]string{"--lua-memory-limit=12Q", "--remote-cluster-config-file", "x"}, 2, `invalid value "12Q" for --lua-memory-limit`},
		{[]string{"--max-concurrent-reconciles", "0", "--remote-cluster-config-file", "x"}, 2, `invalid value "0" for --max-concurrent-reconciles`},
		{[]string{"--kubeconfig", "/nonexistent"}, 2, "--remote-cluster-config-file is required"},
		{[]string{"--kubeconfig", "/nonexistent", "--remote-cluster-config-file", "x"}, 1,
			"internal cluster: kubeconfig /nonexistent: cannot read: No such file or directory"},
		{[]string{"--kubeconfig", notYAML, "--remote-cluster-config-file", "x"}, 1, "internal cluster: kubeconfig " + notYAML + ": line"},
		// Go's flag syntax, as the existing Deployment writes its args.
		{[]string{"-h"}, 0, "--zap-time-encoding"},
		{[]string{"-remote-cluster-config-filex=/x"}, 2, "unknown option -remote-cluster-config-filex "},
		{[]string{"-remote-cluster-config-file=/x", "-kubeconfig", "/nonexistent"}, 1, "kubeconfig /nonexistent: cannot read"},
		{[]string{"-leader-elect=maybe", "-remote-cluster-config-file", "x"}, 2, `invalid value "maybe" for --leader-elect`},
		{[]string{"--zap-encoder=xml", "-remote-cluster-config-file", "x"}, 2, `invalid value "xml" for --zap-encoder`},
		{[]string{"--zap-log-level=loud", "-remote-cluster-config-file", "x"}, 2, `invalid value "loud" for --zap-log-level`},
		{[]string{"--zap-stacktrace-level=debug", "-remote-cluster-config-file", "x"}, 2, `invalid value "debug" for --zap-stacktrace-level`},
		{[]string{"--zap-time-encoding=unix", "-remote-cluster-config-file", "x"}, 2, `invalid value "unix" for --zap-time-encoding`},
		{[]string{"--lease-duration=90", "-remote-cluster-config-file", "x"}, 2, `invalid value "90" for --lease-duration`},
		{[]string{"--lease-duration=9s", "-remote-cluster-config-file", "x"}, 2, "--leader-renew-deadline must be shorter than --lease-duration"},
		{[]string{"--leader-elector-retry-period=9s", "-remote-cluster-config-file", "x"}, 2, "--leader-renew-deadline must be longer than 1.2 times --leader-elector-retry-period"},
		{[]string{"-zap-devel", "-zap-encoder=json", "--zap-log-level=2", "-zap-stacktrace-level=panic", "-zap-time-encoding=rfc3339nano",
			"--lease-duration=1m30s", "--leader-renew-deadline=60s", "--leader-elector-retry-period=10s", "--leader-elect=true",
			"-remote-cluster-config-file", "x", "--kubeconfig=/nonexistent"}, 1, "kubeconfig /nonexistent: cannot read"},
		{[]string{"--", "-remote-cluster-config-file=x"}, 2, "unexpected argument -remote-cluster-config-file=x"},
	}
	for _, c := range cases {
		cmd := exec.Command(bin, append([]string{"--metrics-bind-address", "0", "--health-probe-bind-address", "0"}, c.args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG=")
		out, _ := cmd.CombinedOutput()
		code := cmd.ProcessState.ExitCode()
		text := string(out)
		if code != c.code || !strings.Contains(text, c.want) {
			t.Errorf("%v: exit %d, output %q; want exit %d and %q", c.args, code, text, c.code, c.want)
		}
		if c.code != 0 && strings.Count(strings.TrimSpace(text), "\n") != 0 {
			t.Errorf("%v: want one line on stderr, got %q", c.args, text)
		}
	}
}

// check-policies runs a policy directory through the real host, sandbox and
// limits on a request and config, without any cluster: the worked example
// of policies/README.md, a policy that does not compile, bad input.
func TestCheckPolicies(t *testing.T) {
	root := repoRoot(t)
	bin := filepath.Join(buildDir(t), "internal-services")
	example := filepath.Join(root, "policies", "examples", "testing", "fixtures")
	fixture := func(name string) string { return filepath.Join(example, name+".json") }
	shipped := filepath.Join(root, "policies")

	broken := t.TempDir()
	writeTemp(t, broken, "10-ok.lua", "return function() return true end\n")
	writeTemp(t, broken, "20-broken.lua", "return function(request)\n  if request then\n    return true\nend\n")
	runaway := t.TempDir()
	writeTemp(t, runaway, "loop.lua", "return function() while true do end end\n")
	greedy := t.TempDir()
	writeTemp(t, greedy, "grow.lua", "return function() local s = 'x' while true do s = s .. s end end\n")
	writer := t.TempDir()
	writeTemp(t, writer, "write.lua", "return function(request) request.metadata.namespace = 'tenant-a' return true end\n")
	context := t.TempDir()
	writeTemp(t, context, "ns.lua", "return function(r, c, context) return false, 'namespace ' .. context.namespace end\n")
	notJSON := writeTemp(t, t.TempDir(), "request.json", "{\"metadata\": \n")

	cases := []struct {
		name   string
		env    []string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"allowed", nil, []string{"--policy-dir", shipped, fixture("sign-release"), fixture("config")}, 0,
			"allow (allowlist.lua, git_url.lua)\n", ""},
		{"off the allow list", nil, []string{"--policy-dir", shipped, fixture("off-the-list"), fixture("config")}, 1,
			"deny (allowlist.lua): namespace \"tenant-x\" is not in the allow list of InternalServicesConfig internal-services/config\n", ""},
		{"git URL not allowed", nil, []string{"--policy-dir", shipped, fixture("git-elsewhere"), fixture("config")}, 1,
			"deny (git_url.lua): ", ""},
		{"no config", nil, []string{"--policy-dir", shipped, fixture("sign-release")}, 1,
			"deny (allowlist.lua): InternalServicesConfig internal-services/config not found: no remote namespace is allowed\n", ""},
		{"instruction budget", nil, []string{"--policy-dir", runaway, fixture("sign-release")}, 1,
			"deny (loop.lua): policy \"loop.lua\" failed: instruction budget exceeded\n", ""},
		{"memory cap", nil, []string{"--policy-dir", greedy, fixture("sign-release")}, 1,
			"deny (grow.lua): policy \"grow.lua\" failed: memory limit exceeded", ""},
		{"read-only inputs", nil, []string{"--policy-dir", writer, fixture("off-the-list")}, 1,
			"policy inputs are read-only: cannot set field \"namespace\"", ""},
		{"namespace from the environment", []string{"SERVICE_NAMESPACE=releng"}, []string{"--policy-dir", context, fixture("sign-release")}, 1,
			"deny (ns.lua): namespace releng\n", ""},
		{"namespace flag", []string{"SERVICE_NAMESPACE=releng"}, []string{"--namespace", "ops", "--policy-dir", context, fixture("sign-release")}, 1,
			"deny (ns.lua): namespace ops\n", ""},
		{"does not compile", nil, []string{"--policy-dir", broken, fixture("sign-release")}, 2,
			"", "internal-services check-policies: " + broken + "/20-broken.lua:5: 'end' expected (to close 'function' at line 1) near <eof>\n"},
		{"no policies", nil, []string{"--policy-dir", t.TempDir(), fixture("sign-release")}, 2,
			"", "no policy files (*.lua) in "},
		{"request not JSON", nil, []string{"--policy-dir", shipped, notJSON}, 2,
			"", "internal-services check-policies: " + notJSON + ": not JSON: "},
		{"config missing", nil, []string{"--policy-dir", shipped, fixture("sign-release"), "/nonexistent.json"}, 2,
			"", "internal-services check-policies: /nonexistent.json: No such file or directory\n"},
		{"no request", nil, []string{"--policy-dir", shipped}, 2,
			"", "want REQUEST.json and optionally CONFIG.json, got 0 files"},
		{"unknown option", nil, []string{"--bogus", fixture("sign-release")}, 2, "", "unknown option --bogus"},
		{"help", nil, []string{"--help"}, 0, "Usage: internal-services check-policies", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"check-policies", "--lua-dir", filepath.Join(root, "lua")}, c.args...)
			cmd := exec.Command(bin, args...)
			cmd.Env = append(append(os.Environ(), "SERVICE_NAMESPACE="), c.env...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			_ = cmd.Run()
			code := cmd.ProcessState.ExitCode()
			if code != c.code {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, c.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), c.stdout) || (c.stdout == "" && stdout.Len() != 0) {
				t.Errorf("stdout %q, want %q", stdout.String(), c.stdout)
			}
			if !strings.Contains(stderr.String(), c.stderr) || (c.stderr == "" && stderr.Len() != 0) {
				t.Errorf("stderr %q, want %q", stderr.String(), c.stderr)
			}
			if n := strings.Count(stdout.String()+stderr.String(), "\n"); c.name != "help" && n != 1 {
				t.Errorf("want one line of output, got %d: %q %q", n, stdout.String(), stderr.String())
			}
		})
	}
}
