package filter

import (
	"fmt"
	"regexp"
	"strings"
	"time"

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
//	time                 the record's time (its observed time when it has none)
//	TRACE DEBUG INFO WARN ERROR FATAL   severity numbers, e.g. severity >= WARN
//	now() sha256() hash() capture()      logpump's functions, see functions
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
	// source and path hold the batch's names as expr values, boxed once
	// per batch rather than per record.
	boxedFor     *event.Batch
	source, path any
}

func (cur *cursor) batchNames() {
	if cur.boxedFor != cur.b {
		cur.boxedFor, cur.source, cur.path = cur.b, cur.b.Source, cur.b.Path
	}
}

// strop compares a string part of the record with a literal.
type strop struct {
	op, acc  int
	key, lit string
}

func (cur *cursor) strop(s strop) bool {
	var v event.Value
	var ok bool
	switch s.acc {
	case accBody:
		v, ok = cur.r.Body, true
	case accBodyField:
		if cur.r.Body.Kind == event.KindMap {
			v, ok = event.Lookup(cur.r.Body.List, s.key)
		}
	case accAttr:
		v, ok = event.Lookup(cur.r.Attrs, s.key)
	case accRes:
		res := cur.r.Resource
		if res == nil {
			res = cur.b.Resource
		}
		if res != nil {
			v, ok = event.Lookup(res.Attrs, s.key)
		}
	case accSevText:
		v, ok = event.String(cur.r.SeverityText), true
	}
	if !ok || (v.Kind != event.KindString && v.Kind != event.KindBytes) {
		// As in expr: nil or another type never equals a string. (expr
		// reports contains and friends on a non-string as an error; here
		// they are simply false.)
		return s.op == opNe
	}
	switch s.op {
	case opEq:
		return v.Str == s.lit
	case opNe:
		return v.Str != s.lit
	case opContains:
		return strings.Contains(v.Str, s.lit)
	case opStarts:
		return strings.HasPrefix(v.Str, s.lit)
	case opEnds:
		return strings.HasSuffix(v.Str, s.lit)
	}
	return false
}

// maxSlots bounds the string comparisons of one condition that get a
// zero-argument slot; further ones use __strop with arguments.
const maxSlots = 8

func slotName(i int) string { return "__s" + string(rune('0'+i)) }

// Compile compiles src. Errors name the position in src. The condition's
// now() reads the system clock; use [CompileWith] for another.
func Compile(src string) (*Condition, error) {
	return CompileWith(src, nil)
}

// CompileWith compiles src with now as the clock of now() (time.Now when nil).
func CompileWith(src string, now func() time.Time) (*Condition, error) {
	prog, cur, err := compile(src, true, now)
	if err != nil {
		return nil, fmt.Errorf("compile condition %q: %w", src, err)
	}
	return &Condition{src: src, prog: prog, cur: cur}, nil
}

// compile compiles src in the record environment; asBool asks for a
// boolean result.
func compile(src string, asBool bool, now func() time.Time) (*vm.Program, *cursor, error) {
	if now == nil {
		now = time.Now
	}
	cur := &cursor{}
	pt := &patcher{src: src}
	opts := []expr.Option{
		expr.Env(struct{}{}),
		expr.Patch(pt),
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
		expr.Function("__strop", func(p ...any) (any, error) {
			return cur.strop(strop{op: p[0].(int), acc: p[1].(int), key: p[2].(string), lit: p[3].(string)}), nil
		}, new(func(int, int, string, string) bool)),
		expr.Function("__sev", func(...any) (any, error) { return int(cur.r.Severity), nil }, new(func() int)),
		expr.Function("__sevtext", func(...any) (any, error) { return cur.r.SeverityText, nil }, new(func() string)),
		expr.Function("__source", func(...any) (any, error) { cur.batchNames(); return cur.source, nil }, new(func() string)),
		expr.Function("__path", func(...any) (any, error) { cur.batchNames(); return cur.path, nil }, new(func() string)),
		expr.Function("__time", func(...any) (any, error) { return recordTime(cur.r), nil }, new(func() time.Time)),
	}
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	opts = append(opts, functions(now, pt)...)
	// Zero-argument slot functions evaluate the string comparisons the
	// patcher found: a call with arguments makes expr allocate an argument
	// buffer on every run, a call without does not.
	for i := range maxSlots {
		opts = append(opts, expr.Function(slotName(i), func(...any) (any, error) {
			return cur.strop(pt.slots[i]), nil
		}, new(func() bool)), expr.Function(readName(i), func(...any) (any, error) {
			return cur.value(pt.reads[i]), nil
		}, new(func() any)))
	}
	prog, err := expr.Compile(src, opts...)
	if err == nil {
		err = pt.err
	}
	if err != nil {
		return nil, nil, err
	}
	return prog, cur, nil
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
type patcher struct {
	slots []strop
	// reads are the record reads with a constant key given a slot.
	reads []strop
	src   string
	// regexps holds the compiled constant patterns of capture().
	regexps map[string]*regexp.Regexp
	err     error
}

var severityConsts = map[string]int{
	"TRACE": int(event.SeverityTrace), "DEBUG": int(event.SeverityDebug), "INFO": int(event.SeverityInfo),
	"WARN": int(event.SeverityWarn), "ERROR": int(event.SeverityError), "FATAL": int(event.SeverityFatal),
}

func call(name string, args ...ast.Node) *ast.CallNode {
	return &ast.CallNode{Callee: &ast.IdentifierNode{Value: name}, Arguments: args}
}

// Operators and accessors of __strop, the allocation-free form of a
// comparison between a record's string and a string literal.
const (
	opEq = iota
	opNe
	opContains
	opStarts
	opEnds
)

const (
	accBody = iota
	accBodyField
	accAttr
	accRes
	accSevText
)

var strOps = map[string]int{"==": opEq, "!=": opNe, "contains": opContains, "startsWith": opStarts, "endsWith": opEnds}

// accessor reports whether n reads a string-valued part of the record, and
// which.
func (pt *patcher) accessor(n ast.Node) (acc int, key ast.Node, ok bool) {
	if c, isCall := n.(*ast.CallNode); isCall && len(c.Arguments) == 0 {
		if id, isID := c.Callee.(*ast.IdentifierNode); isID && strings.HasPrefix(id.Value, "__r") {
			i := int(id.Value[3] - '0')
			return pt.reads[i].acc, &ast.StringNode{Value: pt.reads[i].key}, true
		}
	}
	return accessor(n)
}

func accessor(n ast.Node) (acc int, key ast.Node, ok bool) {
	c, isCall := n.(*ast.CallNode)
	if !isCall {
		return 0, nil, false
	}
	id, isID := c.Callee.(*ast.IdentifierNode)
	if !isID {
		return 0, nil, false
	}
	switch {
	case id.Value == "__body" && len(c.Arguments) == 0:
		return accBody, &ast.StringNode{}, true
	case id.Value == "__sevtext" && len(c.Arguments) == 0:
		return accSevText, &ast.StringNode{}, true
	case id.Value == "__bodyf" && len(c.Arguments) == 1:
		return accBodyField, c.Arguments[0], true
	case id.Value == "attr" && len(c.Arguments) == 1:
		return accAttr, c.Arguments[0], true
	case id.Value == "__res" && len(c.Arguments) == 1:
		return accRes, c.Arguments[0], true
	}
	return 0, nil, false
}

func (pt *patcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.BinaryNode:
		// Comparing a record's string with a literal is the common
		// condition; evaluate it without boxing the string.
		op, known := strOps[n.Operator]
		if !known {
			return
		}
		lit, isLit := n.Right.(*ast.StringNode)
		acc, key, isAcc := pt.accessor(n.Left)
		if !isLit && (op == opEq || op == opNe) {
			lit, isLit = n.Left.(*ast.StringNode)
			acc, key, isAcc = pt.accessor(n.Right)
		}
		k, constKey := key.(*ast.StringNode)
		if !isLit || !isAcc || !constKey {
			return
		}
		if len(pt.slots) < maxSlots {
			pt.slots = append(pt.slots, strop{op: op, acc: acc, key: k.Value, lit: lit.Value})
			ast.Patch(node, call(slotName(len(pt.slots)-1)))
			return
		}
		ast.Patch(node, call("__strop", &ast.IntegerNode{Value: op}, &ast.IntegerNode{Value: acc}, key, &ast.StringNode{Value: lit.Value}))
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
		case "time":
			ast.Patch(node, call("__time"))
		default:
			if v, ok := severityConsts[n.Value]; ok {
				ast.Patch(node, &ast.IntegerNode{Value: v})
			}
		}
	case *ast.CallNode:
		pt.checkCapture(n)
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && id.Value == "attr" {
			ast.Patch(node, pt.read(n))
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
			ast.Patch(node, pt.read(call(name, n.Property)))
		}
	}
}

// read turns a read of the record with a constant key (attr("k"),
// __res("k"), __bodyf("k")) into a call of a zero-argument value slot while
// slots last: a call with arguments costs an allocation per run.
func (pt *patcher) read(c *ast.CallNode) ast.Node {
	acc, key, ok := accessor(c)
	k, constKey := key.(*ast.StringNode)
	if !ok || !constKey || len(pt.reads) >= maxSlots {
		return c
	}
	pt.reads = append(pt.reads, strop{acc: acc, key: k.Value})
	return call(readName(len(pt.reads) - 1))
}

func readName(i int) string { return "__r" + string(rune('0'+i)) }

// value returns the part of the record a read slot names, as an expr value.
func (cur *cursor) value(s strop) any {
	switch s.acc {
	case accBodyField:
		if cur.r.Body.Kind != event.KindMap {
			return nil
		}
		return lookup(cur.r.Body.List, s.key)
	case accAttr:
		return lookup(cur.r.Attrs, s.key)
	case accRes:
		res := cur.r.Resource
		if res == nil {
			res = cur.b.Resource
		}
		if res == nil {
			return nil
		}
		return lookup(res.Attrs, s.key)
	}
	return nil
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
