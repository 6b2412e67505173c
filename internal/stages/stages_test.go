package stages

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/logpump/logpump/config"
)

func component(t *testing.T, src string) config.Component {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	var c config.Component
	if err := c.UnmarshalYAML(doc.Content[0]); err != nil {
		t.Fatal(err)
	}
	c.Key = "processors.p"
	return c
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown type", "type: jsn\n", `processors.p.type: unknown processor type "jsn" (known: `},
		{"unknown key", "type: json\ntarget: attributes\nbody_feld: msg\n", `3:1: processors.p.body_feld: unknown key (did you mean "body_field"?)`},
		{"bad target", "type: logfmt\ntarget: nowhere\n", `2:9: processors.p.target: must be attributes or body, got "nowhere"`},
		{"bad regex", "type: regex\npattern: '(?P<x>['\n", `2:10: processors.p.pattern: error parsing regexp`},
		{"no group", "type: regex\npattern: 'abc'\n", `processors.p.pattern: has no named group`},
		{"bad layout", "type: json\ntimestamp: {field: t, layout: '%Q'}\n", `processors.p.timestamp.layout: convert strptime layout "%Q": unsupported directive %Q`},
		{"bad zone", "type: json\ntimestamp: {field: t, location: Mars/Olympus}\n", `load time zone "Mars/Olympus"`},
		{"bad severity", "type: json\nseverity: {field: l, mapping: {LOUD: [x]}}\n", `processors.p.severity.mapping: map severity "LOUD"`},
		{"multiline two modes", "type: multiline\nstart: '^a'\nindent: true\n", `give exactly one of start, end, continue, indent or preset`},
		{"multiline preset", "type: multiline\npreset: cobol\n", `processors.p.preset: unknown preset "cobol"`},
		{"filter both", "type: filter\nkeep: 'true'\ndrop: 'false'\n", `give exactly one of keep or drop`},
		{"filter bad expr", "type: filter\nkeep: 'severity >'\n", `processors.p.keep: compile condition`},
		{"sample rate", "type: sample\nrate: 2\n", `processors.p.rate: must be in (0, 1], got 2`},
		{"sample field", "type: sample\nrate: 0.5\nby: headers.x\n", `processors.p.by: unknown field "headers.x"`},
		{"rate_limit rate", "type: rate_limit\nrate: 0\n", `processors.p.rate: must be positive`},
		{"transform two verbs", "type: transform\nactions:\n  - set: attributes.a\n    value: 1\n    delete: body\n", `processors.p.actions[0]: give exactly one of`},
		{"transform bad path", "type: transform\nactions:\n  - delete: resource.x\n", `invalid path "resource.x"`},
		{"redact preset", "type: redact\npresets: [ssn]\n", `processors.p.presets[0]: unknown preset "ssn"`},
		{"static list", "type: static\nattributes: {x: [1]}\n", `processors.p.attributes.x: want a string, number or bool`},
		{"cri negative", "type: cri\nflush_timeout: -1s\n", `processors.p.flush_timeout: must be positive`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(component(t, tt.yaml), Env{})
			if err == nil {
				t.Fatalf("Build succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestBuildEveryType(t *testing.T) {
	examples := map[string]string{
		"json":       "type: json\nbody_field: msg\ntimestamp: {field: time}\nseverity: {field: level}\n",
		"logfmt":     "type: logfmt\n",
		"key_value":  "type: key_value\npair_separator: ','\n",
		"csv":        "type: csv\nheader: [a, b]\n",
		"klog":       "type: klog\n",
		"regex":      "type: regex\npattern: '^(?P<level>\\w+) (?P<msg>.*)$'\n",
		"cri":        "type: cri\n",
		"docker":     "type: docker\nmax_bytes: 64KiB\n",
		"container":  "type: container\nflush_timeout: 2s\n",
		"multiline":  "type: multiline\npreset: java\n",
		"syslog":     "type: syslog\nprotocol: rfc3164\nlocation: UTC\n",
		"static":     "type: static\nattributes: {env: prod, tier: 2}\nresource: {team: shop}\n",
		"host":       "type: host\nhost_id: 4f1e\n",
		"kubernetes": "type: kubernetes\n",
		"transform":  "type: transform\nactions:\n  - rename: attributes.lvl\n    to: attributes.level\n  - truncate: body\n    max_bytes: 4KiB\n",
		"redact":     "type: redact\npresets: [email, credit_card]\nkeys: [password]\nmode: hash\n",
		"filter":     "type: filter\ndrop: 'body contains \"healthz\"'\n",
		"sample":     "type: sample\nrate: 0.25\nby: attributes.request_id\n",
		"rate_limit": "type: rate_limit\nrate: 100\nby: resource.k8s.pod.name\n",
	}
	for _, typ := range Types() {
		t.Run(typ, func(t *testing.T) {
			src, ok := examples[typ]
			if !ok {
				t.Fatalf("no example for type %q", typ)
			}
			s, err := Build(component(t, src), Env{})
			if err != nil {
				t.Fatal(err)
			}
			if s == nil {
				t.Fatal("Build returned a nil stage")
			}
		})
	}
}
