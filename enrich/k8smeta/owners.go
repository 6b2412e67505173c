package k8smeta

import (
	"context"
	"log/slog"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"

	"github.com/logpump/logpump/enrich"
)

var (
	replicaSetsResource = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	jobsResource        = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
)

// maxOwners bounds the cache of looked-up ReplicaSets and Jobs (a node runs
// about a hundred pods; the cache is cleared when full) and the queue of
// lookups waiting.
const maxOwners = 512

type ownerKey struct {
	namespace string
	owner     enrich.Owner // a ReplicaSet or a Job
}

type ownerResult struct {
	workload enrich.Owner // the owner's controller; Kind "" when none
	ok       bool         // false: the lookup failed, names stay inferred
}

// owners finds the owner of a pod's ReplicaSet (a Deployment) or Job (a
// CronJob) with one metadata GET per ReplicaSet or Job, in the background,
// and remembers the answers in a small bounded cache: no cluster-wide
// informer of ReplicaSets or Jobs. It is fed by the pod watch's handler and
// never blocks it: when the queue is full a lookup is skipped (the names
// stay inferred from the owner's name).
type owners struct {
	client metadata.Interface
	log    *slog.Logger
	// resolved is called with the answer of a lookup, from the worker.
	resolved func(ownerKey, ownerResult)

	mu      sync.Mutex
	cache   map[ownerKey]ownerResult
	pending map[ownerKey]bool
	queue   chan ownerKey
	logged  map[string]bool // kind and reason of the errors logged
}

func newOwners(client metadata.Interface, log *slog.Logger, resolved func(ownerKey, ownerResult)) *owners {
	return &owners{
		client: client, log: log, resolved: resolved,
		cache: map[ownerKey]ownerResult{}, pending: map[ownerKey]bool{}, queue: make(chan ownerKey, maxOwners),
		logged: map[string]bool{},
	}
}

// lookup returns the cached answer for k, or queues a lookup and returns
// false.
func (o *owners) lookup(k ownerKey) (ownerResult, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r, ok := o.cache[k]; ok {
		return r, true
	}
	if o.pending[k] {
		return ownerResult{}, false
	}
	select {
	case o.queue <- k:
		o.pending[k] = true
	default:
	}
	return ownerResult{}, false
}

// run looks owners up until ctx ends.
func (o *owners) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case k := <-o.queue:
			r := o.get(ctx, k)
			if ctx.Err() != nil {
				return
			}
			o.mu.Lock()
			delete(o.pending, k)
			if len(o.cache) >= maxOwners {
				clear(o.cache)
			}
			o.cache[k] = r
			o.mu.Unlock()
			o.resolved(k, r)
		}
	}
}

func (o *owners) get(ctx context.Context, k ownerKey) ownerResult {
	gvr := replicaSetsResource
	if k.owner.Kind == "Job" {
		gvr = jobsResource
	}
	m, err := o.client.Resource(gvr).Namespace(k.namespace).Get(ctx, k.owner.Name, metav1.GetOptions{})
	if err != nil {
		if ctx.Err() != nil {
			return ownerResult{}
		}
		// An owner deleted before its pod is not worth a warning; anything
		// else (a refusal: RBAC) is logged once per kind and reason.
		reason := string(apierrors.ReasonForError(err))
		level := slog.LevelWarn
		if apierrors.IsNotFound(err) {
			level = slog.LevelDebug
		}
		o.mu.Lock()
		first := !o.logged[k.owner.Kind+"/"+reason]
		o.logged[k.owner.Kind+"/"+reason] = true
		o.mu.Unlock()
		if first {
			o.log.Log(ctx, level, "kubernetes: cannot look up a pod's owner; deployment and cronjob names are inferred from the replicaset and job names",
				"kind", k.owner.Kind, "namespace", k.namespace, "name", k.owner.Name, "error", err.Error())
		}
		return ownerResult{}
	}
	return ownerResult{workload: owner(m.OwnerReferences), ok: true}
}
