package parse

import (
	"regexp"
	"strings"
	"testing"
)

func TestRegexPresetOptions(t *testing.T) {
	for _, name := range RegexPresets() {
		re, err := regexp.Compile(regexPresets[name].pattern)
		if err != nil || !hasNamedGroup(re) {
			t.Errorf("preset %s: %v", name, err)
		}
		o := RegexOptions{Preset: name, Options: Options{Timestamp: &TimeOptions{Field: "when"}}}
		if err := o.Validate(); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
		if o.Timestamp.Field != "when" {
			t.Errorf("preset %s replaced the timestamp given", name)
		}
	}
	for _, tt := range []struct {
		o    RegexOptions
		want string
	}{
		{RegexOptions{Preset: "nginx"}, `preset: unknown preset "nginx" (known: apache_access, apache_error, haproxy_http, mysql_slow, nginx_access, nginx_error, postgres)`},
		{RegexOptions{Preset: "postgres", Pattern: "(?P<a>.)"}, "pattern: give pattern or preset, not both"},
		{RegexOptions{}, "pattern: missing required key (or give a preset)"},
	} {
		if err := tt.o.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.o, err, tt.want)
		}
	}
}
