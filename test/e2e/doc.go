// Package e2e holds logpump's end-to-end tests: the agent binary runs as a
// subprocess, tails files the tests write and exports to an OpenTelemetry
// Collector OTLP receiver running in the test process (package otlpsink).
// Every line carries a sequence number, so loss and duplication are counted
// line by line. See README.md for how to run them.
package e2e
