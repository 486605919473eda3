package main

import (
	"fmt"
	"html"
	"strings"
)

// panel is one bar group of the chart: a value per subject.
type panel struct {
	title  string
	unit   string
	values []bar
}

type bar struct {
	subject string
	value   float64
}

// Chart renders the measurements as an SVG bar chart: one panel per parallel
// workload (ns/op) and one each for heap per key and peak heap under the
// spray. Shorter is better everywhere; axes is drawn in its own colour, the
// baseline in grey.
func Chart(r *Results, env Env) string {
	subjects := order(r)
	var panels []panel
	add := func(title, workload, unit string) {
		p := panel{title: title, unit: unit}
		for _, s := range subjects {
			if v, ok := r.Get(workload, s, unit); ok {
				p.values = append(p.values, bar{s, v})
			}
		}
		if len(p.values) > 0 {
			panels = append(panels, p)
		}
	}
	for _, w := range parallel {
		add(w.name+" ("+r.Params[w.name]+")", w.name, "ns/op")
	}
	add("Heap per tracked key ("+r.Params[heapWorkload]+")", heapWorkload, "bytes/key")
	add("Peak live heap under the spray ("+r.Params[sprayWorkload]+")", sprayWorkload, "peak-MB")

	const (
		width  = 820
		left   = 120 // label column
		barMax = 560 // longest bar
		rowH   = 18
		barH   = 13
		titleH = 26
		gap    = 14
		top    = 54
	)
	height := top
	for _, p := range panels {
		height += titleH + rowH*len(p.values) + gap
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="15" font-weight="bold">axes vs Go limiters: shorter is better</text>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="38" fill="#555555">%s</text>`+"\n",
		esc(fmt.Sprintf("%s, GOMAXPROCS %d, %s, %s, %s. Orange: axes; grey: baseline; blue: peers.",
			or(env.CPU, "unknown CPU"), env.Procs, env.OS, or(env.Go, "go"), env.Date)))
	y := top
	for _, p := range panels {
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">%s, %s</text>`+"\n", y+16, esc(p.title), esc(strings.TrimPrefix(p.unit, "peak-")))
		y += titleH
		mx := 0.0
		for _, v := range p.values {
			mx = max(mx, v.value)
		}
		for _, v := range p.values {
			w := 0.0
			if mx > 0 {
				w = v.value / mx * barMax
			}
			color := "#4c78a8"
			switch v.subject {
			case subjectAxes:
				color = "#e4572e"
			case subjectFloor:
				color = "#9d9d9d"
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+barH-2, esc(v.subject))
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y, max(w, 1), barH, color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#333333">%s</text>`+"\n", float64(left)+max(w, 1)+5, y+barH-2, esc(num(v.value)))
			y += rowH
		}
		y += gap
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func esc(s string) string { return html.EscapeString(s) }
