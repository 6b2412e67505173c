package config

import "testing"

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://collector:4318/v1/logs", "http://collector:4318/v1/logs"},
		{"https://user:hunter2@collector:4318/v1/logs", "https://REDACTED@collector:4318/v1/logs"},
		{"http://tok3n@collector:4317", "http://REDACTED@collector:4317"},
		{`export logs to http://u:p@h/v1/logs?api_key=abc&x=1: connection refused`, `export logs to http://REDACTED@h/v1/logs?api_key=REDACTED&x=1: connection refused`},
		{"https://h/v1/logs?x=1&access_token=s3cr3t#frag", "https://h/v1/logs?x=1&access_token=REDACTED#frag"},
		{"https://h/v1/logs?X-Amz-Signature=abc&X-Amz-Credential=def", "https://h/v1/logs?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED"},
		{`Post "http://u:***@h/v1/logs?token=t": EOF`, `Post "http://REDACTED@h/v1/logs?token=REDACTED": EOF`},
		{"user@example.com wrote a=b", "user@example.com wrote a=b"},
		{"localhost:4317", "localhost:4317"},
		{`dial "alice:pw@gw:4317": too many colons`, `dial "REDACTED@gw:4317": too many colons`},
		{"target=alice:pw@gw:4317", "target=REDACTED@gw:4317"},
		{"mail bob@example.com at 10:30", "mail bob@example.com at 10:30"},
		{"http://h/path@x", "http://h/path@x"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
