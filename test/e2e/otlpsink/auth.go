package otlpsink

import (
	"context"
	"errors"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/extensionauth"
)

// tokenAuthID names the authenticator extension a sink with a BearerToken
// uses, as a Collector configuration would (auth: {authenticator: testauth}).
var tokenAuthID = component.MustNewID("testauth")

// tokenAuth is a server authenticator extension: it accepts a request whose
// authorization header (gRPC metadata or HTTP header) is "Bearer <token>".
// The receiver's own interceptors call it and answer a refusal as the
// Collector does (gRPC Unauthenticated, HTTP 401).
type tokenAuth struct{ token string }

var _ extensionauth.Server = tokenAuth{}

func (tokenAuth) Start(context.Context, component.Host) error { return nil }
func (tokenAuth) Shutdown(context.Context) error              { return nil }

func (a tokenAuth) Authenticate(ctx context.Context, sources map[string][]string) (context.Context, error) {
	for k, vs := range sources {
		if !strings.EqualFold(k, "authorization") {
			continue
		}
		for _, v := range vs {
			if v == "Bearer "+a.token {
				return ctx, nil
			}
		}
	}
	return ctx, errors.New("missing or wrong bearer token")
}

// authHost is a component.Host offering the authenticator extension.
type authHost struct{ auth tokenAuth }

func (h authHost) GetExtensions() map[component.ID]component.Component {
	return map[component.ID]component.Component{tokenAuthID: h.auth}
}
