package filter

import (
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/logpump/logpump/event"
)

// Condition is a boolean expression over one record, in the expr language
// (github.com/expr-lang/expr), compiled once. It reads:
//
//	body                 the body: a string, number, bool, or for a map body its text
//	body["k"]            a field of a map body (nil when absent)
//	attributes["k"]      an attribute (also attributes.k and attr("k")); nil when absent
//	resource["k"]        a resource attribute: the record's own resource, else the batch's
//	severity             the OpenTelemetry severity number, 0 when unknown
//	severity_text        the severity as written in the log
//	source, path         the batch's source name and the file path
//	TRACE DEBUG INFO WARN ERROR FATAL   severity numbers, e.g. severity >= WARN
//
// with expr's operators and functions: ==, !=, <, and, or, not, in,
// contains, startsWith, endsWith, matches (RE2; a constant pattern is
// compiled once), lower(), len(), ... Values convert to expr types as
// string, int, float64, bool, map[string]any and []any.
//
// A Condition is not safe for concurrent use: it carries one evaluator and
// the record being evaluated. Compile one per goroutine.
type Condition struct {
	src  string
	prog *vm.Program
	vm   vm.VM
	cur  *cursor
}

type cursor struct {
	b *event.Batch
	r *event.Record
}

// Compile compiles src. Errors name the position in src.
func Compile(src string) (*Condition, error) {
	cur := &cursor{}
	opts := []expr.Option{
		expr.Env(struct{}{}),
		expr.AsBool(),
		expr.Patch(patcher{}),
		expr.Function("__body", func(...any) (any, error) { return toAny(cur.r.Body), nil }, new(func() any)),
		expr.Function("__bodyf", func(p ...any) (any, error) {
			if cur.r.Body.Kind != event.KindMap {
				return nil, nil
			}
			return lookup(cur.r.Body.List, p[0]), nil
		}, new(func(string) any)),
		expr.Function("attr", func(p ...any) (any, error) { return lookup(cur.r.Attrs, p[0]), nil }, new(func(string) any)),
		expr.Function("__res", func(p ...any) (any, error) {
			res := cur.r.Resource
			if res == nil {
				res = cur.b.Resource
			}
			if res == nil {
				return nil, nil
			}
			return lookup(res.Attrs, p[0]), nil
		}, new(func(string) any)),
		expr.Function("__sev", func(...any) (any, error) { return int(cur.r.Severity), nil }, new(func() int)),
		expr.Function("__sevtext", func(...any) (any, error) { return cur.r.SeverityText, nil }, new(func() string)),
		expr.Function("__source", func(...any) (any, error) { return cur.b.Source, nil }, new(func() string)),
		expr.Function("__path", func(...any) (any, error) { return cur.b.Path, nil }, new(func() string)),
	}
	prog, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, fmt.Errorf("compile condition %q: %w", src, err)
	}
	return &Condition{src: src, prog: prog, cur: cur}, nil
}

// String returns the condition's source.
func (c *Condition) String() string { return c.src }

// Match evaluates the condition for record r of batch b. An evaluation error
// (comparing a string with a number, a missing field used as a number) is
// returned with false; callers count it and treat the record as not matching.
func (c *Condition) Match(b *event.Batch, r *event.Record) (bool, error) {
	c.cur.b, c.cur.r = b, r
	out, err := c.vm.Run(c.prog, nil)
	c.cur.b, c.cur.r = nil, nil
	if err != nil {
		return false, err
	}
	ok, _ := out.(bool)
	return ok, nil
}

// patcher rewrites the names of the record's parts into calls of the
// functions that read the current record.
type patcher struct{}

var severityConsts = map[string]int{
	"TRACE": int(event.SeverityTrace), "DEBUG": int(event.SeverityDebug), "INFO": int(event.SeverityInfo),
	"WARN": int(event.SeverityWarn), "ERROR": int(event.SeverityError), "FATAL": int(event.SeverityFatal),
}

func call(name string, args ...ast.Node) *ast.CallNode {
	return &ast.CallNode{Callee: &ast.IdentifierNode{Value: name}, Arguments: args}
}

func (patcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		switch n.Value {
		case "body":
			ast.Patch(node, call("__body"))
		case "severity":
			ast.Patch(node, call("__sev"))
		case "severity_text":
			ast.Patch(node, call("__sevtext"))
		case "source":
			ast.Patch(node, call("__source"))
		case "path":
			ast.Patch(node, call("__path"))
		default:
			if v, ok := severityConsts[n.Value]; ok {
				ast.Patch(node, &ast.IntegerNode{Value: v})
			}
		}
	case *ast.MemberNode:
		var name string
		switch inner := n.Node.(type) {
		case *ast.IdentifierNode:
			switch inner.Value {
			case "attributes":
				name = "attr"
			case "resource":
				name = "__res"
			}
		case *ast.CallNode:
			if id, ok := inner.Callee.(*ast.IdentifierNode); ok && id.Value == "__body" && len(inner.Arguments) == 0 {
				name = "__bodyf"
			}
		}
		if name != "" {
			ast.Patch(node, call(name, n.Property))
		}
	}
}

// lookup returns the value of key in kvs as an expr value, nil when absent.
func lookup(kvs []event.KeyValue, key any) any {
	k, _ := key.(string)
	v, ok := event.Lookup(kvs, k)
	if !ok {
		return nil
	}
	return toAny(v)
}

// toAny converts v for expr. Strings are boxed (one small allocation);
// integers below 256 and bools are not.
func toAny(v event.Value) any {
	switch v.Kind {
	case event.KindString, event.KindBytes:
		return v.Str
	case event.KindInt:
		return int(v.AsInt())
	case event.KindDouble:
		return v.AsDouble()
	case event.KindBool:
		return v.AsBool()
	case event.KindMap:
		m := make(map[string]any, len(v.List))
		for _, kv := range v.List {
			m[kv.Key] = toAny(kv.Value)
		}
		return m
	case event.KindArray:
		a := make([]any, len(v.List))
		for i, kv := range v.List {
			a[i] = toAny(kv.Value)
		}
		return a
	}
	return nil
}
