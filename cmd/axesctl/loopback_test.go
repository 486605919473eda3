package main

import "testing"

// The token goes in clear text only to this machine: a name that merely
// starts with "127." is somebody else's.
func TestLoopbackHost(t *testing.T) {
	for h, want := range map[string]bool{
		"localhost": true, "127.0.0.1": true, "127.1.2.3": true, "::1": true,
		"127.attacker.example": false, "127.0.0.1.nip.io": false, "10.0.0.1": false, "": false,
	} {
		if got := isLoopbackHost(h); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", h, got, want)
		}
	}
	if _, err := newAdminBackend("http://127.attacker.example/axes/", "t"); err == nil {
		t.Error("plain http to a remote host named 127.* accepted")
	}
}
