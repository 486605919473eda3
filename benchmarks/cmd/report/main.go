// Command report runs the comparison benchmarks of this module and writes
// RESULTS.md (tables and target checks) and chart.svg (a bar chart of the
// same measurements), and refreshes the results table between the
// "report:begin" and "report:end" markers of README.md. Run it from the
// benchmarks directory:
//
//	go run ./cmd/report
//
// It takes several minutes: three passes of the parallel workloads, then
// the heap measurements at 1M tracked keys and under a 10M-key spray, then
// one more pass of each parallel workload for axes alone under the CPU
// profiler (-profile=false skips it).
// With -from it renders the files from a saved `go test -bench` output
// instead of running the benchmarks.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strings"
	"time"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("report: ")
	var (
		count     = flag.Int("count", 3, "runs of each parallel benchmark; the median is reported")
		benchtime = flag.String("benchtime", "1s", "-benchtime of the parallel workloads")
		sprayOps  = flag.Int("spray.ops", 2_000_000, "operations of the timed spray (at most 4194304, the distinct keys in its pool)")
		heapKeys  = flag.Int("heap.keys", 1_000_000, "tracked keys of the heap-per-key measurement")
		sprayKeys = flag.Int("spray.keys", 10_000_000, "distinct keys of the heap spray")
		sprayCap  = flag.Int("spray.cap", 1_000_000, "key cap during the heap spray")
		from      = flag.String("from", "", "render from this saved benchmark output instead of running")
		outDir    = flag.String("out", ".", "directory to write RESULTS.md and chart.svg to")
		profile   = flag.Bool("profile", true, "profile axes on each parallel workload and report where its time goes")
	)
	flag.Parse()
	if *sprayOps < 1 || *sprayOps > 1<<22 {
		log.Fatalf("-spray.ops %d out of range [1, 4194304]", *sprayOps)
	}

	var raw []byte
	var cmds []string
	if *from != "" {
		b, err := os.ReadFile(*from)
		if err != nil {
			log.Fatal(err)
		}
		raw = b
		cmds = []string{"(rendered from " + *from + ")"}
	} else {
		if err := checkDir(); err != nil {
			log.Fatal(err)
		}
		// The parallel workloads run -count 1 at a time, count passes in
		// turn, so that each subject's runs spread over the whole
		// measurement: a slow spell of the machine then costs every
		// subject one run, not one subject all of its runs (with -count,
		// a subject's runs follow one another).
		parallelRuns := [][]string{
			{"test", "-run", "^$", "-bench", "^Benchmark(LockedZipf|LockedHot|FailZipf|Mixed)$", "-benchmem",
				"-benchtime", *benchtime, "-count", "1"},
			{"test", "-run", "^$", "-bench", "^BenchmarkFailSpray$", "-benchmem",
				"-benchtime", fmt.Sprintf("%dx", *sprayOps), "-count", "1"},
		}
		heapRun := []string{"test", "-run", "^$", "-bench", "^Benchmark(HeapPerKey|SprayHeap)$", "-benchtime", "1x", "-timeout", "60m",
			"-args", fmt.Sprintf("-heap.keys=%d", *heapKeys),
			fmt.Sprintf("-spray.keys=%d", *sprayKeys), fmt.Sprintf("-spray.cap=%d", *sprayCap)}
		var runs [][]string
		for range max(*count, 1) {
			runs = append(runs, parallelRuns...)
		}
		runs = append(runs, heapRun)
		for _, args := range parallelRuns {
			cmds = append(cmds, fmt.Sprintf("go %s  # %d times, in turn with the other", strings.Join(quote(args), " "), max(*count, 1)))
		}
		cmds = append(cmds, "go "+strings.Join(quote(heapRun), " "))
		var all bytes.Buffer
		loadStart = loadavg()
		for _, args := range runs {
			log.Printf("go %s", strings.Join(args, " "))
			out, err := goCmd(os.Stderr, args...)
			if err != nil {
				log.Fatalf("go %s: %v", strings.Join(args, " "), err)
			}
			all.Write(out)
		}
		raw = all.Bytes()
	}
	var profiles []Profile
	if *from == "" && *profile {
		dir, err := os.MkdirTemp("", "axes-report")
		if err != nil {
			log.Fatal(err)
		}
		ps, pcmds, err := profileWorkloads(dir, *benchtime, *sprayOps)
		os.RemoveAll(dir)
		if err != nil {
			log.Fatal(err)
		}
		profiles = ps
		cmds = append(cmds, pcmds...)
	}

	res, err := Parse(bytes.NewReader(raw))
	if err != nil {
		log.Fatal(err)
	}
	env := Env{CPU: res.CPU, OS: res.GOOS + "/" + res.GOARCH, Procs: res.Procs, Date: time.Now().UTC().Format("2006-01-02")}
	if v, err := goCmd(io.Discard, "env", "GOVERSION"); err == nil {
		env.Go = strings.TrimSpace(string(v))
	}
	env.Commands = cmds
	env.Profiles = profiles
	if v, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil && *from == "" {
		env.Commit = strings.TrimSpace(string(v))
	}
	if loadStart != "" {
		env.Load = loadStart + " at the start, " + loadavg() + " at the end"
	}
	md := Markdown(res, env, string(raw))
	svg := Chart(res, env)
	if err := os.WriteFile(*outDir+"/RESULTS.md", []byte(md), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*outDir+"/chart.svg", []byte(svg), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s/RESULTS.md and %s/chart.svg", *outDir, *outDir)
	readme := *outDir + "/README.md"
	if doc, err := os.ReadFile(readme); err == nil {
		if out, ok := splice(string(doc), Summary(res, env)); ok {
			if err := os.WriteFile(readme, []byte(out), 0o644); err != nil {
				log.Fatal(err)
			}
			log.Printf("updated the results table in %s", readme)
		}
	}
}

var loadStart string

// loadavg returns the 1-minute load average where the system reports it
// (Linux), or "". Other processes competing for the cores make every number
// slower and noisier, so the results record it.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// checkDir makes sure the command runs in the benchmarks module.
func checkDir() error {
	b, err := os.ReadFile("go.mod")
	if err != nil || !bytes.Contains(b, []byte("module github.com/axes-go/axes/benchmarks\n")) {
		return errors.New("run from the benchmarks directory: cd benchmarks && go run ./cmd/report")
	}
	return nil
}

// goCmd runs the go command, copying its output to echo, and returns the
// output.
func goCmd(echo io.Writer, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.Command("go", args...)
	cmd.Stdout = io.MultiWriter(&out, echo)
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	return out.Bytes(), err
}

func quote(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, "^$|()* ") {
			a = "'" + a + "'"
		}
		q[i] = a
	}
	return q
}
