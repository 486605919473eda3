package storetest_test

import (
	"testing"

	"github.com/axes-go/axes/store"
	"github.com/axes-go/axes/storetest"
)

// TestDefaultStore runs the suite on a limiter's own memory store.
func TestDefaultStore(t *testing.T) {
	storetest.Run(t, func() store.Store { return nil })
}

// TestMemoryStoreInterface runs the suite on a memory store reached
// through the Store interface.
func TestMemoryStoreInterface(t *testing.T) {
	storetest.Run(t, func() store.Store {
		s, err := store.NewMemory(1<<12, store.Rule{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
