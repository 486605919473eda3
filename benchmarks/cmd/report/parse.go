package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Results holds parsed `go test -bench` output.
type Results struct {
	GOOS, GOARCH, CPU string
	// Procs is GOMAXPROCS of the runs (the -N suffix of benchmark names).
	Procs int
	// Workloads lists workload names (benchmark names without "Benchmark")
	// in the order first seen.
	Workloads []string
	// Params holds each workload's sub-benchmark parameters, e.g.
	// "keys=100k/by=ip".
	Params map[string]string
	// Subjects lists subject names in the order first seen.
	Subjects []string
	// Stats holds the samples of each workload and subject.
	Stats map[string]map[string]*Stat
}

// Stat holds the samples of one benchmark: values by unit.
type Stat struct {
	Samples map[string][]float64
}

// Median returns the median of the samples of unit, and whether there are
// any.
func (s *Stat) Median(unit string) (float64, bool) {
	if s == nil || len(s.Samples[unit]) == 0 {
		return 0, false
	}
	v := slices.Clone(s.Samples[unit])
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2], true
	}
	return (v[n/2-1] + v[n/2]) / 2, true
}

// Get returns the median of unit for a workload and subject.
func (r *Results) Get(workload, subject, unit string) (float64, bool) {
	return r.Stats[workload][subject].Median(unit)
}

// Parse reads benchmark output. Lines that are not results or the
// goos/goarch/cpu header are ignored.
func Parse(rd io.Reader) (*Results, error) {
	r := &Results{Params: map[string]string{}, Stats: map[string]map[string]*Stat{}}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if k, v, ok := strings.Cut(text, ": "); ok {
			switch k {
			case "goos":
				r.GOOS = v
			case "goarch":
				r.GOARCH = v
			case "cpu":
				r.CPU = v
			}
			continue
		}
		if !strings.HasPrefix(text, "Benchmark") {
			continue
		}
		f := strings.Fields(text)
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a name printed alone before a long run, or a log line
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if p, err := strconv.Atoi(name[i+1:]); err == nil {
				r.Procs = p
				name = name[:i]
			}
		}
		parts := strings.Split(name, "/")
		if len(parts) < 2 {
			return nil, fmt.Errorf("line %d: benchmark %q has no subject", line, name)
		}
		w, s := parts[0], parts[len(parts)-1]
		params := strings.Join(parts[1:len(parts)-1], "/")
		if _, ok := r.Stats[w]; !ok {
			r.Workloads = append(r.Workloads, w)
			r.Stats[w] = map[string]*Stat{}
			r.Params[w] = params
		}
		if !slices.Contains(r.Subjects, s) {
			r.Subjects = append(r.Subjects, s)
		}
		st := r.Stats[w][s]
		if st == nil {
			st = &Stat{Samples: map[string][]float64{}}
			r.Stats[w][s] = st
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: value %q: %v", line, f[i], err)
			}
			st.Samples[f[i+1]] = append(st.Samples[f[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(r.Workloads) == 0 {
		return nil, fmt.Errorf("no benchmark results in the output")
	}
	return r, nil
}
