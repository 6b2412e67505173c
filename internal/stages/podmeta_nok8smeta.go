//go:build !k8smeta

package stages

import (
	"log/slog"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/enrich"
)

// podMetadataBuilt says whether this build can read pod metadata from the
// Kubernetes API (build tag k8smeta).
const podMetadataBuilt = false

// podMetadata refuses the kubernetes processor's metadata options: the
// Kubernetes API client (k8s.io/client-go: 8 MB more binary, 28.6 to 36.4 MB) is linked
// only with the build tag k8smeta.
func podMetadata(*enrich.MetadataOptions, string, *slog.Logger) (enrich.WatchPods, error) {
	return nil, config.Fieldf("metadata", "this logpump was built without the Kubernetes API client; build it with -tags k8smeta")
}
