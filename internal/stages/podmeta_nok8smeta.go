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

// Kube holds the Kubernetes API watches shared by an agent's kubernetes
// processors; this build has none (see the k8smeta build tag).
type Kube struct{}

// NewKube returns an agent's shared watches.
func NewKube(*slog.Logger) *Kube { return &Kube{} }

// Hold keeps the watches running until release is called.
func (k *Kube) Hold() (release func()) { return func() {} }

// podMetadata refuses the kubernetes processor's metadata options: the
// Kubernetes API client (k8s.io/client-go: 5.6 MB more release binary, 20.5 to 26.1 MB) is linked
// only with the build tag k8smeta.
func podMetadata(*enrich.MetadataOptions, string, Env) (enrich.WatchPods, error) {
	return nil, config.Fieldf("metadata", "this logpump was built without the Kubernetes API client; build it with -tags k8smeta")
}
