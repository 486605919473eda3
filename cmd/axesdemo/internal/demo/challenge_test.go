package demo

import (
	"bytes"
	"strings"
	"testing"
)

// Under ChallengeAt the bots, who cannot solve the CAPTCHA, reach the
// password check ChallengeAt times and never lock the username; its real
// user is asked for the CAPTCHA, solves it and signs in.
func TestRunChallenge(t *testing.T) {
	var progress bytes.Buffer
	res, err := RunChallenge(t.Context(), NewClock(SimStart).Now, &progress)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(progress.String())
	want := ChallengeResult{
		ChallengeAt: ChallengeAt, Limit: Policy().Limit, Target: "erin",
		BotGuesses: challengeBots * challengePerBot, BotChecked: ChallengeAt,
		BotAsked:  challengeBots*challengePerBot - ChallengeAt,
		UserAsked: true, UserLogins: 1, UserWanted: 1,
	}
	if res != want {
		t.Fatalf("got  %+v\nwant %+v", res, want)
	}
	rep := &Report{Challenge: &res}
	var b strings.Builder
	rep.writeChallenge(&b)
	if line := "Challenge before lock (ChallengeAt 3, limit 5): 117 of 120 bot guesses stopped by a CAPTCHA they could not solve, 0 locks; the real user solved it and signed in: 1 of 1\n"; b.String() != line {
		t.Fatalf("report line %q, want %q", b.String(), line)
	}
}
