package gateway

import "context"

func withDecision(ctx context.Context, d *decision) context.Context {
	return context.WithValue(ctx, ctxKey{}, d)
}

// decisionFrom returns the decision ServeHTTP attached. The proxy only runs
// for allowed requests, so a missing decision is a programming error.
func decisionFrom(ctx context.Context) *decision {
	d, ok := ctx.Value(ctxKey{}).(*decision)
	if !ok {
		panic("gateway: proxy reached without a decision")
	}
	return d
}
