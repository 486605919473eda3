// Command modproxy writes a file-system module proxy (for GOPROXY=file://DIR)
// that serves the repository's working tree as one provisional version of each
// given module, so that CI can fetch the modules as a consumer would before
// anything is tagged.
//
//	go run . -repo ../.. -out DIR -version v0.1.0 . redisstore cmd/axesdemo
//
// The files of the working tree are the ones git knows: tracked files that
// still exist plus untracked files that are not ignored. The zips follow the
// module zip rules of golang.org/x/mod/zip, as the Go module mirror builds them
// from a tag: a module's zip leaves out nested modules, vendor directories and
// version-control directories.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

func main() {
	repo := flag.String("repo", ".", "root of the git working tree")
	out := flag.String("out", "", "directory to write the proxy into (created)")
	version := flag.String("version", "v0.1.0", "provisional version of every module")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: modproxy -out DIR [-repo DIR] [-version vX.Y.Z] moduledir...")
		os.Exit(2)
	}
	if err := run(*repo, *out, *version, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "modproxy:", err)
		os.Exit(1)
	}
}

func run(repo, out, version string, dirs []string) error {
	stage, err := os.MkdirTemp("", "modproxy-stage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := stageWorkTree(repo, stage); err != nil {
		return err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		src := filepath.Join(stage, filepath.FromSlash(dir))
		gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
		if err != nil {
			return err
		}
		path := modfile.ModulePath(gomod)
		if path == "" {
			return fmt.Errorf("%s/go.mod: no module path", dir)
		}
		m := module.Version{Path: path, Version: version}
		if err := module.Check(path, version); err != nil {
			return err
		}
		esc, err := module.EscapePath(path)
		if err != nil {
			return err
		}
		vdir := filepath.Join(out, filepath.FromSlash(esc), "@v")
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return err
		}
		var zip bytes.Buffer
		if err := modzip.CreateFromDir(&zip, m, src); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		files := map[string][]byte{
			"list":            []byte(version + "\n"),
			version + ".info": info,
			version + ".mod":  gomod,
			version + ".zip":  zip.Bytes(),
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(vdir, name), data, 0o644); err != nil {
				return err
			}
		}
		fmt.Printf("%s@%s: %d bytes zipped from %s\n", path, version, zip.Len(), dir)
	}
	return nil
}

// stageWorkTree copies the files git knows in repo (tracked and present, or
// untracked and not ignored) into stage.
func stageWorkTree(repo, stage string) error {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = repo
	cmd.Stderr = os.Stderr
	list, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	for _, name := range strings.Split(strings.TrimSuffix(string(list), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		if err := copyFile(filepath.Join(repo, name), filepath.Join(stage, name)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted in the working tree, not yet committed
			}
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	fi, err := os.Lstat(from)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil // module zips hold regular files only
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	outf, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(outf, in); err != nil {
		outf.Close()
		return err
	}
	return outf.Close()
}
