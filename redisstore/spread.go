package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

// SpreadSlots: a script call per dimension, pipelined in one round trip,
// and the undo of what a refused attempt wrote in its other dimensions.

// applySpread runs req dimension by dimension (SpreadSlots), pipelined,
// with a second round trip when one dimension refuses an attempt that
// another has already counted or reserved.
func (s *Store) applySpread(ctx context.Context, req *store.Request) error {
	n := len(req.Dims)
	token := ""
	if req.Op == store.OpFail || req.Op == store.OpBegin {
		var b [12]byte
		rand.Read(b[:])
		token = hex.EncodeToString(b[:])
	}
	now := s.now(req)
	info := make([]dimInfo, n)
	call := func(pipe redis.Pipeliner, i int, phase, ext int, applied bool, now int64) *redis.Cmd {
		d := &req.Dims[i]
		bk := s.budgetKeys(d.Digest)
		keys := []string{bk[0], bk[1], bk[2], s.key(d.Digest)}
		args := make([]any, 3, 3+len(keys)+3)
		args[2] = len(keys)
		s.retarget(args)
		for _, k := range keys {
			args = append(args, k)
		}
		args = append(args, one, s.ruleArgs(req.Rule).arg,
			s.decision(req, req.Dims[i:i+1], now, phase, token, ext, applied, s.deadline(ctx)))
		cmd := redis.NewCmd(ctx, args...)
		_ = pipe.Process(ctx, cmd)
		return cmd
	}
	cmds, err := s.pipeline(ctx, func(pipe redis.Pipeliner) []*redis.Cmd {
		cmds := make([]*redis.Cmd, n)
		for i := range n {
			cmds[i] = call(pipe, i, phaseApply, extNone, false, now)
		}
		return cmds
	})
	if err != nil {
		return err
	}
	anyLocked, anyRefused, anyChallenge := false, false, false
	for i, c := range cmds {
		refused, err := parseReply(req.Op, c.Val(), req.Dims[i:i+1], info[i:i+1])
		if err != nil {
			return err
		}
		anyRefused = anyRefused || refused
		anyLocked = anyLocked || info[i].lockedBefore
		anyChallenge = anyChallenge || req.Dims[i].Outcome.Challenge
	}
	s.noteSpread(info)
	if token == "" || !anyRefused {
		return nil
	}
	// Redo the dimensions that did not see the refusal.
	ext := extBusy
	switch {
	case anyLocked:
		ext = extLocked
		// As in Rule.Apply, a locked attempt is refused before any
		// dimension is found to want a challenge or to be busy.
		for i := range req.Dims {
			req.Dims[i].Outcome.Busy = false
			req.Dims[i].Outcome.Challenge = false
		}
	case anyChallenge:
		ext = extChallenge
		// A challenge is due before any dimension is found busy.
		for i := range req.Dims {
			req.Dims[i].Outcome.Busy = false
		}
	}
	var redo []int
	for i := range n {
		switch {
		case info[i].applied:
			redo = append(redo, i)
		case ext == extLocked && !info[i].lockedBefore && req.Rule.Extend:
			redo = append(redo, i)
		}
	}
	if len(redo) > 0 {
		cmds, err = s.pipeline(ctx, func(pipe redis.Pipeliner) []*redis.Cmd {
			cmds := make([]*redis.Cmd, len(redo))
			for j, i := range redo {
				cmds[j] = call(pipe, i, phaseRedo, ext, info[i].applied, info[i].now)
			}
			return cmds
		})
		if err != nil {
			return err
		}
		for j, i := range redo {
			var in [1]dimInfo
			before := req.Dims[i].Outcome
			if _, err := parseReply(req.Op, cmds[j].Val(), req.Dims[i:i+1], in[:]); err != nil {
				return err
			}
			if !info[i].applied && before.TimedOut > 0 {
				// Phase 1 wrote back the reservations that timed out
				// here (it refused, so restored nothing): the redo finds
				// them counted already.
				o := &req.Dims[i].Outcome
				o.TimedOut += before.TimedOut
				o.Counted = true
			}
			if in[0].raced {
				s.n.races.Add(1)
			}
			s.noteSpread(in[:])
		}
	}
	for i := range req.Dims {
		req.Dims[i].Outcome.Refused = true
		req.Dims[i].Outcome.Challenge = ext == extChallenge
	}
	return nil
}

// noteSpread is noteReply for the replies of a pipeline, possibly from
// several servers: it keeps the lowest offset.
func (s *Store) noteSpread(info []dimInfo) {
	if len(info) == 0 {
		return
	}
	lowest := info[0].server
	for i := range info {
		lowest = min(lowest, info[i].server)
		if info[i].sketched {
			s.n.sketched.Add(1)
		}
	}
	s.observe(lowest - s.mono())
}
