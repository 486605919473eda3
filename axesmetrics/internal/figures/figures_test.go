package figures

import (
	"reflect"
	"testing"

	"github.com/axes-go/axes"
)

// Every field of axes.Stats has exactly one figure, so that a field added
// to Stats cannot be missed by the exporters.
func TestEveryStatsFieldHasOneFigure(t *testing.T) {
	seen := map[string]int{}
	for _, f := range All {
		seen[f.Field]++
	}
	typ := reflect.TypeOf(axes.Stats{})
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		if seen[name] != 1 {
			t.Errorf("axes.Stats.%s has %d figures, want 1", name, seen[name])
		}
		delete(seen, name)
	}
	for name := range seen {
		t.Errorf("figure reads %q, which axes.Stats does not have", name)
	}
}

// Each figure reads its own field: setting one field to a distinct value
// changes exactly the figures that read it.
func TestFiguresReadTheirField(t *testing.T) {
	for _, f := range All {
		var s axes.Stats
		v := reflect.ValueOf(&s).Elem().FieldByName(f.Field)
		switch v.Kind() {
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Int:
			v.SetInt(7)
		case reflect.Uint64:
			v.SetUint(7)
		default:
			t.Fatalf("%s: unexpected kind %v", f.Field, v.Kind())
		}
		for _, g := range All {
			got := g.Value(&s)
			if g.Field == f.Field && got == 0 {
				t.Errorf("%s: figure reads 0 after the field was set", f.Field)
			}
			if g.Field != f.Field && got != 0 {
				t.Errorf("setting %s changed figure %s to %v", f.Field, g.Field, got)
			}
		}
	}
}
