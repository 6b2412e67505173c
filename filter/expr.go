package filter

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/logpump/logpump/event"
)

// Expr is an expression over one record that computes a value, in the same
// language and environment as a [Condition]. It is compiled once; its
// result is an expr value (string, int, float64, bool, time.Time,
// time.Duration, map[string]any, []any or nil) for the caller to store.
//
// An Expr is not safe for concurrent use: compile one per goroutine.
type Expr struct {
	src  string
	prog *vm.Program
	vm   vm.VM
	cur  *cursor
}

// CompileExpr compiles src; now is the clock of now() (time.Now when nil).
// Errors name the line and column in src.
func CompileExpr(src string, now func() time.Time) (*Expr, error) {
	prog, cur, err := compile(src, false, now)
	if err != nil {
		return nil, fmt.Errorf("compile expression %q: %w", src, err)
	}
	return &Expr{src: src, prog: prog, cur: cur}, nil
}

// String returns the expression's source.
func (e *Expr) String() string { return e.src }

// Eval evaluates the expression for record r of batch b. The result does
// not alias b's arena unless it is a string read unchanged from the record.
func (e *Expr) Eval(b *event.Batch, r *event.Record) (any, error) {
	e.cur.b, e.cur.r = b, r
	out, err := e.vm.Run(e.prog, nil)
	e.cur.b, e.cur.r = nil, nil
	return out, err
}

// recordTime is the record's time, or its observed time when it has none.
func recordTime(r *event.Record) time.Time {
	ns := r.Time
	if ns == 0 {
		ns = r.Observed
	}
	return time.Unix(0, ns).UTC()
}

// functions are logpump's own functions, beside expr's built-in ones:
//
//	now()               the clock's time (a fixed one under logpump test)
//	sha256(x)           hex SHA-256 of x's text
//	hash(x)             FNV-1a of x's text as a non-negative int, for bucketing
//	capture(s, "re")    the named groups (else numbered ones) of the first
//	                    match of a constant RE2 pattern in s, as a map; nil
//	                    when s is not a string or does not match
func functions(now func() time.Time, pt *patcher) []expr.Option {
	return []expr.Option{
		expr.DisableBuiltin("now"),
		expr.Function("now", func(...any) (any, error) { return now().UTC(), nil }, new(func() time.Time)),
		expr.Function("sha256", func(p ...any) (any, error) {
			sum := sha256.Sum256([]byte(text(p[0])))
			return hex.EncodeToString(sum[:]), nil
		}, new(func(any) string)),
		expr.Function("hash", func(p ...any) (any, error) {
			h := fnv.New64a()
			h.Write([]byte(text(p[0])))
			return int(h.Sum64() >> 1), nil
		}, new(func(any) int)),
		expr.Function("capture", func(p ...any) (any, error) {
			s, ok := p[0].(string)
			pattern, _ := p[1].(string)
			re := pt.regexps[pattern]
			if !ok || re == nil {
				return nil, nil
			}
			m := re.FindStringSubmatch(s)
			if m == nil {
				return nil, nil
			}
			out := make(map[string]any, len(m)-1)
			named := false
			for i, name := range re.SubexpNames() {
				if name != "" && i < len(m) {
					out[name] = m[i]
					named = true
				}
			}
			if !named {
				for i := 1; i < len(m); i++ {
					out[strconv.Itoa(i)] = m[i]
				}
			}
			return out, nil
		}, new(func(any, string) map[string]any)),
	}
}

// text is x as sha256 and hash read it: a string as is, nil as "", other
// values in their expr text form.
func text(x any) string {
	switch v := x.(type) {
	case string:
		return v
	case nil:
		return ""
	}
	return fmt.Sprint(x)
}

// checkCapture compiles the constant pattern of a capture() call once, at
// load; a pattern that is not a string literal or not valid RE2 is an error
// at its position.
func (pt *patcher) checkCapture(n *ast.CallNode) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok || id.Value != "capture" || len(n.Arguments) != 2 || pt.err != nil {
		return
	}
	line, col := position(pt.src, n.Location().From)
	lit, ok := n.Arguments[1].(*ast.StringNode)
	if !ok {
		pt.err = fmt.Errorf("capture: the pattern must be a string literal (%d:%d)", line, col)
		return
	}
	re, err := regexp.Compile(lit.Value)
	if err != nil {
		pt.err = fmt.Errorf("capture: %v (%d:%d)", err, line, col)
		return
	}
	if pt.regexps == nil {
		pt.regexps = map[string]*regexp.Regexp{}
	}
	pt.regexps[lit.Value] = re
}

// position is the 1-based line and column (in characters) of byte offset
// off in src.
func position(src string, off int) (line, col int) {
	line, col = 1, 1
	for i, c := range src {
		if i >= off {
			break
		}
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}
