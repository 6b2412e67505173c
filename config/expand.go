package config

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxExpandDepth bounds the nesting of references in defaults
// (${A:-${B:-${C}}}).
const maxExpandDepth = 8

// ExpandNode replaces environment references in every scalar value below n
// (keys, comments and tags are left alone), after the YAML is parsed: a
// value cannot add keys or lines, and errors keep their line. The syntax:
//
//	${VAR}            the value of VAR; empty when unset
//	${VAR:-default}   default when VAR is unset or empty
//	${VAR:?message}   an error naming message when VAR is unset or empty
//	$$                a literal $
//
// ${VAR-default} and ${VAR?message} mean the same: an empty variable counts
// as unset.
// A default and a message may themselves hold references
// (${A:-${B:-x}}). A "$" followed by anything else is kept. A malformed
// reference (${VAR without its brace, ${}, ${1X}) is an error with the
// value's line. An expanded plain scalar is typed by its new text (so
// ${PORT} can be a number); a quoted one stays a string. Alias nodes are
// not followed: their anchor is expanded once.
func ExpandNode(n *yaml.Node, getenv func(string) string) Errors {
	var errs Errors
	expandNode(n, "", getenv, &errs)
	return errs
}

func expandNode(n *yaml.Node, key string, getenv func(string) string, errs *Errors) {
	if n == nil {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			expandNode(c, key, getenv, errs)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			expandNode(c, fmt.Sprintf("%s[%d]", key, i), getenv, errs)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			expandNode(n.Content[i+1], join(key, n.Content[i].Value), getenv, errs)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return
		}
		v, err := ExpandString(n.Value, getenv)
		if err != nil {
			*errs = append(*errs, newError(n, key, err.Error()))
			return
		}
		if v != n.Value {
			n.Value = v
			if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 && n.Tag == "!!str" {
				n.Tag = "" // typed by its new text (see yaml.Node.ShortTag)
			}
		}
	}
}

// ExpandString expands the references in s as [ExpandNode] does.
func ExpandString(s string, getenv func(string) string) (string, error) {
	return expand(s, getenv, 0)
}

func expand(s string, getenv func(string) string, depth int) (string, error) {
	if depth > maxExpandDepth {
		return "", fmt.Errorf("references nested deeper than %d", maxExpandDepth)
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '$')
		if j < 0 {
			b.WriteString(s[i:])
			break
		}
		b.WriteString(s[i : i+j])
		i += j
		switch {
		case strings.HasPrefix(s[i:], "$$"):
			b.WriteByte('$')
			i += 2
		case strings.HasPrefix(s[i:], "${"):
			v, n, err := reference(s[i:], getenv, depth)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += n
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), nil
}

// reference expands the reference that s starts with ("${..."), returning
// its value and its length in s.
func reference(s string, getenv func(string) string, depth int) (string, int, error) {
	i := 2
	for i < len(s) && (s[i] == '_' || 'A' <= s[i] && s[i] <= 'Z' || 'a' <= s[i] && s[i] <= 'z' || i > 2 && '0' <= s[i] && s[i] <= '9') {
		i++
	}
	name := s[2:i]
	if name == "" {
		return "", 0, fmt.Errorf("want a variable name after ${ in %s", quoteRef(s))
	}
	if i == len(s) {
		return "", 0, fmt.Errorf("unterminated reference %s: want a closing }", quoteRef(s))
	}
	if s[i] == '}' {
		return getenv(name), i + 1, nil
	}
	op := ""
	for _, o := range []string{":-", ":?", "-", "?"} {
		if strings.HasPrefix(s[i:], o) {
			op = o
			break
		}
	}
	if op == "" {
		return "", 0, fmt.Errorf("unexpected %q in reference %s (want ${%s}, ${%s:-default} or ${%s:?message})", s[i], quoteRef(s), name, name, name)
	}
	start := i + len(op)
	end := argEnd(s, start)
	if end < 0 {
		return "", 0, fmt.Errorf("unterminated reference %s: want a closing }", quoteRef(s))
	}
	val := getenv(name)
	if val != "" {
		return val, end + 1, nil
	}
	arg, err := expand(s[start:end], getenv, depth+1)
	if err != nil {
		return "", 0, err
	}
	if op[len(op)-1] == '-' {
		return arg, end + 1, nil
	}
	if arg == "" {
		arg = "is not set"
	}
	return "", 0, fmt.Errorf("environment variable %s %s", name, arg)
}

// argEnd returns the index of the brace closing a reference whose default
// or message starts at s[i:], skipping nested references and "$$"; -1
// when there is none.
func argEnd(s string, i int) int {
	open := 0
	for ; i < len(s); i++ {
		switch {
		case s[i] == '$' && i+1 < len(s) && s[i+1] == '$':
			i++
		case s[i] == '$' && i+1 < len(s) && s[i+1] == '{':
			open++
			i++
		case s[i] == '}':
			if open == 0 {
				return i
			}
			open--
		}
	}
	return -1
}

// quoteRef quotes the start of a reference for an error message.
func quoteRef(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}
