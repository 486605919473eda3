package axesaudit

import (
	"context"

	"github.com/axes-go/axes/axeshttp"
)

// SearchHistory implements axeshttp.History, so that the admin page and
// API search the trail (axeshttp.AdminHistory(trail)): the events of the
// client q names, newest first. A lock with no end has a zero Until.
func (t *Trail) SearchHistory(ctx context.Context, q axeshttp.HistoryQuery) ([]axeshttp.HistoryRecord, error) {
	recs, err := t.Query(ctx, Filter{IP: q.IP, Username: q.Username, UserAgent: q.UserAgent,
		Since: q.Since, Until: q.Until, Limit: min(max(q.Limit, 1), MaxLimit)})
	if err != nil {
		return nil, err
	}
	out := make([]axeshttp.HistoryRecord, len(recs))
	for i, r := range recs {
		h := axeshttp.HistoryRecord{Time: r.Time, Kind: r.Kind.String(), IP: r.IP, Username: r.Username,
			UserAgent: r.UserAgent, Failures: r.Failures, Count: r.Count}
		if r.By != 0 {
			h.By = r.By.String()
		}
		if r.Kind == Refused {
			h.Reason = r.Reason.String()
		}
		if !r.Until.IsZero() && !r.Until.Equal(Forever) {
			h.Until = r.Until
		}
		out[i] = h
	}
	return out, nil
}

var _ axeshttp.History = (*Trail)(nil)
