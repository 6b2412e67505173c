package config

import (
	"regexp"
	"strings"
)

// Redacted is what [Redact] puts in place of a secret.
const Redacted = "REDACTED"

var (
	// userinfo: "scheme://user:password@" or "scheme://token@".
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s"'<>]*@`)
	// "user:password@host" without a scheme (a gRPC target made from an
	// endpoint with userinfo).
	bareUserinfo = regexp.MustCompile(`(^|[\s"'(=\[,])[^\s/?#@"'()<>\[\],:=]+:[^\s/?#@"'()<>\[\],]*@([A-Za-z0-9])`)
	// A query parameter whose name says it holds a secret.
	secretParam = regexp.MustCompile(`(?i)([?&;](?:[A-Za-z0-9_.-]*(?:token|key|secret|password|passwd|pwd|auth|signature|sig|credential|session)[A-Za-z0-9_.-]*)=)[^&#\s"'<>]*`)
)

// Redact returns s, an endpoint or any text that may hold one (an error
// message, a log line), with the userinfo of every URL and the value of
// every query parameter whose name says it holds a secret (token, key,
// secret, password, auth, signature, session, ...) replaced by [Redacted].
// Everything an operator sees of an endpoint or an export error goes
// through it: logs, /readyz, /debug/pipeline, validate. It is cheap when s
// holds neither "://" nor "=".
func Redact(s string) string {
	if strings.Contains(s, "://") {
		s = urlUserinfo.ReplaceAllString(s, "${1}"+Redacted+"@")
	}
	if strings.Contains(s, "@") {
		s = bareUserinfo.ReplaceAllString(s, "${1}"+Redacted+"@${2}")
	}
	if strings.Contains(s, "=") {
		s = secretParam.ReplaceAllString(s, "${1}"+Redacted)
	}
	return s
}
