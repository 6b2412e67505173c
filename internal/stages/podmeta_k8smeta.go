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

// podMetadata returns the watch of node's pods the kubernetes processor's
// metadata options ask for. It does no I/O: the client is created when the
// stage first runs.
func podMetadata(o *enrich.MetadataOptions, node string, log *slog.Logger) (enrich.WatchPods, error) {
	w, err := k8smeta.New(k8smeta.Config(o.Kubeconfig), node, *o, log)
	if err != nil {
		return nil, config.Fieldf("metadata", "%v", err)
	}
	return w.Watch, nil
}
