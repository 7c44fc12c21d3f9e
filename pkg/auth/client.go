package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc"
)

// BearerToken is the token of an Authorization value "Bearer <token>", or
// "" for any other.
func BearerToken(header string) string {
	scheme, t, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(t)
}

// Bearer makes every call of a client connection carry token. An empty
// token adds nothing, for servers with auth off.
func Bearer(token string) grpc.DialOption {
	if token == "" {
		return grpc.EmptyDialOption{}
	}
	return grpc.WithPerRPCCredentials(bearer(token))
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: on one machine the APIs listen on
// loopback without TLS; across machines, TLS (or a mesh) carries them.
func (bearer) RequireTransportSecurity() bool { return false }
