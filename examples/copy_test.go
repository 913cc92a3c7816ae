// Package examples_test checks that every example can be copied out of
// this repository into a module of its own and built there unchanged: an
// example imports only the public packages (rudp, rudp/impair, ...) and
// third-party modules, never an internal package of this repository.
package examples_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamplesBuildOutsideRepo copies each example (its .go files, tests
// included) to a temporary directory outside the repository, as a module of
// its own whose go.mod requires github.com/rudp-go/rudp with a replace
// directive to this checkout and whose go.sum is the repository's, and
// builds and vets it there, offline (GOPROXY=off: the modules come from the
// module cache). It skips, saying so, where the go command or the cached
// modules are missing.
func TestExamplesBuildOutsideRepo(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH:", err)
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := goDirective(t, filepath.Join(repo, "go.mod"))
	dirs, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	built := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(d.Name(), "main.go")); err != nil {
			continue
		}
		built++
		t.Run(d.Name(), func(t *testing.T) {
			dst := t.TempDir()
			if strings.HasPrefix(dst, repo+string(filepath.Separator)) {
				t.Fatalf("the temporary directory %s is inside the repository", dst)
			}
			copyGoFiles(t, d.Name(), dst)
			mod := "module example.com/" + d.Name() + "\n\ngo " + goVersion + "\n\n" +
				"require github.com/rudp-go/rudp v0.0.0-00010101000000-000000000000\n\n" +
				"replace github.com/rudp-go/rudp => " + repo + "\n"
			writeFile(t, filepath.Join(dst, "go.mod"), []byte(mod))
			writeFile(t, filepath.Join(dst, "go.sum"), sum)
			for _, args := range [][]string{{"build", "-o", os.DevNull, "."}, {"vet", "."}} {
				cmd := exec.Command(goTool, args...)
				cmd.Dir = dst
				cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
				out, err := cmd.CombinedOutput()
				if err == nil {
					continue
				}
				if offline(out) {
					t.Skipf("go %s needs a module the module cache lacks (run go mod download in the repository first):\n%s", args[0], out)
				}
				t.Fatalf("go %s in a copy outside the repository: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
	if built == 0 {
		t.Fatal("no example found")
	}
}

// offline reports whether the go command failed for want of the network.
func offline(out []byte) bool {
	return bytes.Contains(out, []byte("GOPROXY=off")) || bytes.Contains(out, []byte("module lookup disabled"))
}

// goDirective returns the go version a go.mod declares.
func goDirective(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			return v
		}
	}
	t.Fatalf("%s has no go directive", path)
	return ""
}

// copyGoFiles copies the .go files of dir into dst.
func copyGoFiles(t *testing.T, dir, dst string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatal("no Go files in", dir, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dst, filepath.Base(f)), b)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
}
