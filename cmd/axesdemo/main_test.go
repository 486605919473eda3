package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunAttack(t *testing.T) {
	var out, errOut bytes.Buffer
	// Without -addr the attack picks a free port.
	if err := run([]string{"-attack"}, &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"login server on http://127.0.0.1:", "Attack report", "Legitimate logins: 4 of 4 succeeded", "Trusted-device logins while bots held the username locked: 1 of 1",
		"Challenge before lock (ChallengeAt 3, limit 5): 117 of 120 bot guesses stopped by a CAPTCHA they could not solve, 0 locks; the real user solved it and signed in: 1 of 1",
		"Limit held", "Username spray: 3 addresses stopped after 4, 4, 4 usernames each"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunBadArguments(t *testing.T) {
	for _, args := range [][]string{{"-nosuchflag"}, {"extra"}, {"-secret", "short", "-attack", "-addr", "127.0.0.1:0"}} {
		var out, errOut bytes.Buffer
		if err := run(args, &out, &errOut); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
