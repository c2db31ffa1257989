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
