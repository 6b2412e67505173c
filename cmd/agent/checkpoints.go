package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/config"
)

// checkpointsJSON is what `logpump checkpoints` prints: the layout of the
// JSON checkpoint file of earlier versions.
type checkpointsJSON struct {
	Version int                `json:"version"`
	Files   []checkpoint.Entry `json:"files"`
}

// runCheckpoints prints the checkpoints of a state directory (stateDir, or
// the state_dir of the configuration at cfgPath) as JSON.
func runCheckpoints(cfgPath, stateDir string, stdout, stderr io.Writer) int {
	if stateDir == "" {
		cfg, err := config.Load(cfgPath, os.Getenv)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		stateDir = cfg.StateDir
	}
	if err := writeCheckpoints(stdout, stateDir); err != nil {
		fmt.Fprintln(stderr, "logpump:", err)
		return 1
	}
	return 0
}

func writeCheckpoints(w io.Writer, stateDir string) error {
	entries, err := checkpoint.NewStore(stateDir).Load()
	if err != nil {
		return err
	}
	if entries == nil {
		entries = []checkpoint.Entry{}
	}
	data, err := json.MarshalIndent(checkpointsJSON{Version: 1, Files: entries}, "", " ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}
