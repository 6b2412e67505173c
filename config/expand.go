package config

import (
	"bytes"
	"fmt"
	"regexp"
)

var varRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// Expand replaces ${VAR} with the value of VAR, ${VAR:-default} with the
// default when VAR is unset or empty, and ${VAR:?message} with an error when
// it is. "$$" is a literal "$". An unset ${VAR} expands to the empty string.
// Substitution happens in the raw text before YAML is parsed, so line numbers
// are kept (a value holding a newline would shift them).
func Expand(data []byte, getenv func(string) string) ([]byte, Errors) {
	var errs Errors
	out := varRef.ReplaceAllFunc(data, func(m []byte) []byte {
		if string(m) == "$$" {
			return []byte("$")
		}
		sub := varRef.FindSubmatch(m)
		name, op, arg := string(sub[1]), string(sub[2]), string(sub[3])
		val := getenv(name)
		switch op {
		case ":-", "-":
			if val == "" {
				return []byte(arg)
			}
		case ":?", "?":
			if val == "" {
				line := 1 + bytes.Count(data[:bytes.Index(data, m)], []byte("\n"))
				msg := arg
				if msg == "" {
					msg = "is not set"
				}
				errs = append(errs, &Error{Line: line, Column: 1, Key: "${" + name + "}", Msg: fmt.Sprintf("environment variable %s %s", name, msg)})
			}
		}
		return []byte(val)
	})
	return out, errs
}
