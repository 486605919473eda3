package axes

import (
	"github.com/axes-go/axes/store"
	"math/rand/v2"
	"testing"
	"time"
)

// The shard's open-addressed table against a map, with digests chosen to
// collide: few home groups and few control tags, so that probes run long,
// wrap around the end of the table and cross tombstones.
func TestShardTableMatchesMap(t *testing.T) {
	st := newMemStore(1<<12, time.Time{}, store.Rule{})
	sh := &st.shards[0]
	sh.resize(8)
	rng := rand.New(rand.NewPCG(3, 4))
	model := map[Digest]int{} // digest -> slot index
	var live []Digest
	digest := func() Digest {
		// Lo picks the home group (8 choices, most near the end), Hi's top
		// bits the control tag (4 choices).
		return Digest{Hi: uint64(rng.IntN(4))<<57 | rng.Uint64()>>8, Lo: uint64(7-rng.IntN(3)) << 61}
	}
	for step := range 20000 {
		switch {
		case len(live) < 40 && rng.IntN(3) != 0:
			d := digest()
			if _, ok := model[d]; ok {
				continue
			}
			if sh.find(toSlotKey(d), d) != -1 {
				t.Fatalf("step %d: found %v before it was placed", step, d)
			}
			i := sh.place(toSlotKey(d), d)
			st.total.Add(1)
			model[d] = i
			live = append(live, d)
		case len(live) > 0:
			j := rng.IntN(len(live))
			d := live[j]
			st.remove(sh, model[d])
			delete(model, d)
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
			if sh.find(toSlotKey(d), d) != -1 {
				t.Fatalf("step %d: found %v after it was removed", step, d)
			}
		}
		if step%97 == 0 {
			for d, i := range model {
				if got := sh.find(toSlotKey(d), d); got != i {
					t.Fatalf("step %d: find(%v) = %d, want %d", step, d, got, i)
				}
			}
			if sh.count != len(model) {
				t.Fatalf("step %d: count %d, want %d", step, sh.count, len(model))
			}
		}
		if step%2003 == 0 {
			// A rebuild keeps every entry and drops the tombstones.
			sh.resize(len(sh.ctrl))
			if sh.tombs != 0 {
				t.Fatalf("step %d: %d tombstones after a rebuild", step, sh.tombs)
			}
			for d := range model {
				i := sh.find(toSlotKey(d), d)
				if i < 0 || sh.slots[i].k != toSlotKey(d) {
					t.Fatalf("step %d: %v lost by the rebuild", step, d)
				}
				model[d] = i
			}
		}
	}
}

// Control bytes: the matchers see exactly the bytes they look for.
func TestControlWordMatchers(t *testing.T) {
	var g uint64
	for j := range 8 {
		setCtrl(&g, j, ctrlEmpty)
	}
	setCtrl(&g, 1, 0x05)
	setCtrl(&g, 3, ctrlDeleted)
	setCtrl(&g, 6, 0x05)
	setCtrl(&g, 7, 0x7f)
	bytesOf := func(m uint64) (out []int) {
		for j := range 8 {
			if m&(0x80<<(8*j)) != 0 {
				out = append(out, j)
			}
		}
		return out
	}
	check := func(name string, got []int, want ...int) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", name, got, want)
			return
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: %v, want %v", name, got, want)
			}
		}
	}
	check("full", bytesOf(matchFull(g)), 1, 6, 7)
	check("empty", bytesOf(matchEmpty(g)), 0, 2, 4, 5)
	check("empty or deleted", bytesOf(matchEmptyOrDeleted(g)), 0, 2, 3, 4, 5)
	// matchH2 may report false positives (the caller compares keys), never
	// miss a byte.
	for _, j := range []int{1, 6} {
		if matchH2(g, 0x05)&(0x80<<(8*j)) == 0 {
			t.Errorf("matchH2 missed byte %d", j)
		}
	}
	if matchH2(g, 0x7f)&(0x80<<(8*7)) == 0 {
		t.Error("matchH2 missed byte 7")
	}
}
