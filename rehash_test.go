package axes

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/axes-go/axes/store"
)

// TestShardRehashInPlace: the in-place rebuild at the same size keeps every
// entry findable with its slot's contents, drops every tombstone, keeps the
// count, and allocates nothing; on tables of colliding digests (few home
// groups, few tags: long probes that wrap) and of spread ones, near full.
func TestShardRehashInPlace(t *testing.T) {
	for _, collide := range []bool{true, false} {
		st := newMemStore(1<<14, time.Time{}, store.Rule{})
		sh := &st.shards[0]
		sh.resize(16)
		rng := rand.New(rand.NewPCG(5, 6))
		model := map[Digest]uint32{} // digest -> a mark kept in lastFail
		var live []Digest
		digest := func() Digest {
			if collide {
				return Digest{Hi: uint64(rng.IntN(4))<<57 | rng.Uint64()>>8, Lo: uint64(15-rng.IntN(4)) << 60}
			}
			return Digest{Hi: rng.Uint64(), Lo: rng.Uint64()}
		}
		for step := range 30000 {
			if len(live) < 16*7-1 && rng.IntN(2) == 0 {
				d := digest()
				if _, ok := model[d]; ok {
					continue
				}
				i := sh.place(toSlotKey(d), d)
				st.total.Add(1)
				sh.slots[i].lastFail = uint32(step + 1)
				model[d] = uint32(step + 1)
				live = append(live, d)
			} else if len(live) > 0 {
				j := rng.IntN(len(live))
				d := live[j]
				st.remove(sh, sh.find(toSlotKey(d), d))
				delete(model, d)
				live[j] = live[len(live)-1]
				live = live[:len(live)-1]
			}
			if sh.count+sh.tombs+1 > len(sh.ctrl)*7 || step%1009 == 0 {
				if n := testing.AllocsPerRun(1, sh.rehash); n != 0 {
					t.Fatalf("step %d: rehash allocated %v times", step, n)
				}
				if sh.tombs != 0 || len(sh.ctrl) != 16 {
					t.Fatalf("step %d: %d tombstones, %d groups after a rehash", step, sh.tombs, len(sh.ctrl))
				}
				full := 0
				for _, c := range sh.ctrl {
					for j := range 8 {
						if b := ctrlByte(c, j); b == ctrlDeleted {
							t.Fatalf("step %d: a tombstone after a rehash", step)
						} else if b != ctrlEmpty {
							full++
						}
					}
				}
				if full != len(model) || sh.count != len(model) {
					t.Fatalf("step %d: %d full slots, count %d, want %d", step, full, sh.count, len(model))
				}
				for d, mark := range model {
					i := sh.find(toSlotKey(d), d)
					if i < 0 || sh.slots[i].lastFail != mark || ctrlByte(sh.ctrl[i/8], i%8) != h2(d) {
						t.Fatalf("step %d (collide %v): %v lost or altered by the rehash", step, collide, d)
					}
				}
			}
		}
	}
}
