package app

import "github.com/keybound/keybound/internal/route"

// RouteTable returns the gateway's running routes, for the admin API's
// usage analytics and posture report (which read each route's sensitivity,
// required scopes and environment). It is nil when no gateway runs. The
// routes are shared and must not be modified.
func (a *App) RouteTable() []*route.Route {
	if a.gateway == nil || a.gateway.gw == nil {
		return nil
	}
	return a.gateway.gw.Routes().Routes()
}
