//go:build k8smeta

package stages

import (
	"log/slog"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/enrich"
	"github.com/logpump/logpump/enrich/k8smeta"
)

// podMetadataBuilt says whether this build can read pod metadata from the
// Kubernetes API (build tag k8smeta).
const podMetadataBuilt = true

// Kube holds the Kubernetes API watches shared by every kubernetes processor
// of an agent (one watch per kubeconfig, node and resource), kept across
// reloads. Make one per agent with [NewKube]; it does no I/O until a
// processor runs.
type Kube struct{ reg *k8smeta.Registry }

// NewKube returns an agent's shared watches.
func NewKube(log *slog.Logger) *Kube {
	return &Kube{reg: k8smeta.NewRegistry(nil, log)}
}

// Hold keeps the watches running with no user until release is called (a
// reload holds them while it replaces pipelines).
func (k *Kube) Hold() (release func()) {
	if k == nil {
		return func() {}
	}
	return k.reg.Hold()
}

// podMetadata returns the watch of node's pods the kubernetes processor's
// metadata options ask for. It does no I/O: the client is created when the
// stage first runs. Without env.Kube the stage gets watches of its own.
func podMetadata(o *enrich.MetadataOptions, node string, env Env) (enrich.WatchPods, error) {
	reg := k8smeta.NewRegistry(nil, env.Log)
	if env.Kube != nil {
		reg = env.Kube.reg
	}
	w, err := k8smeta.New(reg, node, *o)
	if err != nil {
		return nil, config.Fieldf("metadata", "%v", err)
	}
	return w.Watch, nil
}
