package axesaudit

import (
	"context"
	"fmt"
	"time"
)

// deleteChunk is how many rows one retention statement deletes, so that
// no transaction holds the tables for long while the writer waits.
const deleteChunk = 5000

// DeleteOlderThan deletes the events older than age and the attempts last
// seen before then whose recorded lock has ended, and returns how many
// rows it deleted (django-axes' axes_reset_logs --age). It deletes in
// chunks of a few thousand rows, each its own statement. Run it from a
// ticker or a cron job; nothing else deletes by age.
func (t *Trail) DeleteOlderThan(ctx context.Context, age time.Duration) (int64, error) {
	if age <= 0 {
		return 0, fmt.Errorf("axes: audit DeleteOlderThan needs a positive age, got %v", age)
	}
	now := t.cfg.Clock()
	cutoff := t.d.timeArg(now.Add(-age))
	var total int64
	for _, q := range [...]struct {
		sql  string
		args []any
	}{
		{`DELETE FROM axes_audit_events WHERE id IN (
			SELECT id FROM axes_audit_events WHERE at < ? ORDER BY at LIMIT ?)`,
			[]any{cutoff, deleteChunk}},
		{`DELETE FROM axes_audit_attempts WHERE id IN (
			SELECT id FROM axes_audit_attempts WHERE last_seen < ? AND (locked_until IS NULL OR locked_until <= ?)
			ORDER BY last_seen LIMIT ?)`,
			[]any{cutoff, t.d.timeArg(now), deleteChunk}},
	} {
		sql := t.d.rebind(q.sql)
		for {
			res, err := t.db.ExecContext(ctx, sql, q.args...)
			if err != nil {
				return total, fmt.Errorf("axes: audit retention: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return total, fmt.Errorf("axes: audit retention: %w", err)
			}
			total += n
			if n < deleteChunk {
				break
			}
		}
	}
	return total, nil
}
