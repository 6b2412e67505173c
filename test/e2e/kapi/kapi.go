// Package kapi runs a real Kubernetes API server for logpump's tests: etcd
// (Debian's etcd-server) and a kube-apiserver built from the Kubernetes
// release by .ci/k8s.sh, both on free loopback ports, with RBAC
// authorization and the TokenRequest API. Nothing else of a cluster runs: no
// scheduler, no controller manager, no kubelet. Pods are objects only; a
// test that needs what a controller would create (a namespace's "default"
// service account) creates it with [Cluster.CreateNamespace].
//
//	c := kapi.Start(t)                         // skips when the binaries are missing
//	c.Client.CoreV1().Pods("ns").Create(...)    // admin client
//	c.Kubectl(t, "apply", "--dry-run=server", "-f", file)
//	kc := c.KubeconfigFor(t, "logpump", "logpump") // that service account's token
//
// The binaries are looked up in $LOGPUMP_K8S_BIN, else
// ${LOGPUMP_CI_CACHE:-/var/cache/logpump-ci}/k8s-v1.37.2 (kube-apiserver,
// kubectl), and etcd in $PATH. When they are missing [Start] skips the test,
// or fails it when LOGPUMP_REQUIRE_K8S=1 (CI sets it in .ci/k8s.sh).
package kapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Version is the Kubernetes release the binaries are built from.
const Version = "v1.37.2"

// Binaries are the programs a cluster runs.
type Binaries struct {
	Etcd, APIServer, Kubectl string
}

// Find locates the binaries (see the package comment). The error names what
// is missing and how to build it.
func Find() (Binaries, error) {
	dir := os.Getenv("LOGPUMP_K8S_BIN")
	if dir == "" {
		cache := os.Getenv("LOGPUMP_CI_CACHE")
		if cache == "" {
			cache = "/var/cache/logpump-ci"
		}
		dir = filepath.Join(cache, "k8s-"+Version)
	}
	b := Binaries{APIServer: filepath.Join(dir, "kube-apiserver"), Kubectl: filepath.Join(dir, "kubectl")}
	var missing []string
	for _, p := range []string{b.APIServer, b.Kubectl} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		missing = append(missing, "etcd in $PATH (apt-get install etcd-server)")
	}
	b.Etcd = etcd
	if len(missing) > 0 {
		return b, fmt.Errorf("no Kubernetes API server to test against: missing %s (build with `make k8s` or `bash .ci/k8s.sh build`)",
			strings.Join(missing, ", "))
	}
	return b, nil
}

// Require skips t when the binaries are missing, or fails it when
// LOGPUMP_REQUIRE_K8S=1, and returns them.
func Require(t testing.TB) Binaries {
	t.Helper()
	b, err := Find()
	if err != nil {
		if os.Getenv("LOGPUMP_REQUIRE_K8S") == "1" {
			t.Fatalf("%v (LOGPUMP_REQUIRE_K8S=1)", err)
		}
		t.Skip(err)
	}
	return b
}

// Cluster is a running etcd and kube-apiserver. Its fields are read-only.
type Cluster struct {
	// Kubeconfig is a kubeconfig file of a cluster administrator (group
	// system:masters).
	Kubeconfig string
	// URL is the API server's address, https://127.0.0.1:PORT.
	URL string
	// Client is the administrator's client.
	Client kubernetes.Interface
	// Bin are the binaries the cluster runs (Bin.Kubectl for tests).
	Bin Binaries

	dir    string
	caFile string
}

// adminToken authenticates the administrator (--token-auth-file).
const adminToken = "logpump-test-admin-token"

// Start runs etcd and kube-apiserver for the test and stops them when it
// ends (their data directory goes with t.TempDir). It returns when the API
// server answers /readyz, and logs how long that took. When either fails
// to start the test fails with the tail of its log.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := Require(t)
	began := time.Now()
	dir := t.TempDir()
	c := &Cluster{Bin: bin, dir: dir}

	etcdURL := startEtcd(t, bin.Etcd, dir)
	etcdReady := time.Since(began)

	pki, err := writePKI(dir)
	if err != nil {
		t.Fatalf("kapi: write certificates: %v", err)
	}
	c.caFile = pki.ca
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	c.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + pki.serving, "--tls-private-key-file=" + pki.servingKey,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + pki.saKey,
		"--service-account-signing-key-file=" + pki.saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--enable-priority-and-fairness=false",
		"--watch-cache=true",
	}
	startProcess(t, "kube-apiserver", filepath.Join(dir, "kube-apiserver.log"), bin.APIServer, args...)

	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.URL, c.caFile, "admin", adminToken); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatalf("kapi: load %s: %v", c.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	c.Client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("kapi: client: %v", err)
	}
	c.waitReady(t, filepath.Join(dir, "kube-apiserver.log"))
	msg := fmt.Sprintf("kapi: etcd ready after %.1fs, kube-apiserver %s ready after %.1fs (%s)",
		etcdReady.Seconds(), Version, time.Since(began).Seconds(), c.URL)
	t.Log(msg)
	fmt.Println("E2E " + msg) // the summary lines of make k8s
	return c
}

// waitReady polls /readyz until it answers ok (up to two minutes: a
// contended machine starts the server slowly).
func (c *Cluster) waitReady(t testing.TB, log string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return
		}
		last = fmt.Errorf("%v %s", err, body)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("kapi: kube-apiserver not ready after 2 minutes: %v\n%s", last, tail(log, 40))
}

// startEtcd runs etcd on free loopback ports with its data under dir and
// returns its client URL once it answers /health.
func startEtcd(t testing.TB, etcd, dir string) string {
	t.Helper()
	client := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	peer := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	log := filepath.Join(dir, "etcd.log")
	startProcess(t, "etcd", log, etcd,
		"--name=kapi", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=kapi="+peer, "--log-outputs=stderr")
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(client + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"true"`)) {
				return client
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("kapi: etcd not healthy after a minute\n%s", tail(log, 40))
	return ""
}

// startProcess runs a program with its output in log and kills it when the
// test ends. A program that exits before then fails the test with its log.
func startProcess(t testing.TB, name, log, path string, args ...string) {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("kapi: start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
			t.Errorf("kapi: %s exited before the test ended: %v\n%s", name, cmd.ProcessState, tail(log, 30))
			return
		default:
		}
		_ = cmd.Process.Kill()
		<-done
	})
}

// CreateNamespace creates the namespace and, as the controller manager of
// a real cluster would, its "default" service account (the ServiceAccount
// admission plugin refuses pods without it). An existing one is kept.
func (c *Cluster) CreateNamespace(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kapi: create namespace %s: %v", name, err)
	}
	c.ensureServiceAccount(t, ctx, name, "default")
}

func (c *Cluster) ensureServiceAccount(t testing.TB, ctx context.Context, namespace, name string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	_, err := c.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kapi: create service account %s/%s: %v", namespace, name, err)
	}
}

// KubeconfigFor returns a kubeconfig file that authenticates as the service
// account namespace/name with a token from the TokenRequest API (valid for
// an hour): what a pod running as that account would present. The
// namespace and account are created when missing; what the account may do
// is whatever RBAC bindings the test applied (the shipped ones, say).
func (c *Cluster) KubeconfigFor(t testing.TB, namespace, name string) string {
	t.Helper()
	c.CreateNamespace(t, namespace)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.ensureServiceAccount(t, ctx, namespace, name)
	hour := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kapi: request a token of %s/%s: %v", namespace, name, err)
	}
	path := filepath.Join(c.dir, "sa-"+namespace+"-"+name+".kubeconfig")
	user := "system:serviceaccount:" + namespace + ":" + name
	if err := writeKubeconfig(path, c.URL, c.caFile, user, tr.Status.Token); err != nil {
		t.Fatal(err)
	}
	return path
}

// Kubectl runs kubectl with the administrator's kubeconfig and returns its
// combined output. Use it for what should fail too: the error wraps the
// output.
func (c *Cluster) Kubectl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return c.KubectlAs(t, c.Kubeconfig, args...)
}

// KubectlAs is Kubectl with another kubeconfig (from KubeconfigFor).
func (c *Cluster) KubectlAs(t testing.TB, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin.Kubectl, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Apply applies a manifest file (`kubectl apply -f`) as the administrator
// and fails the test when kubectl does.
func (c *Cluster) Apply(t testing.TB, yamlFile string) {
	t.Helper()
	if _, err := c.Kubectl(t, "apply", "-f", yamlFile); err != nil {
		t.Fatalf("kapi: %v", err)
	}
}

// ApplyDryRun validates a manifest file with `kubectl apply
// --dry-run=server`: the API server decodes, defaults, validates and
// admits every object and stores none. The error holds kubectl's output.
func (c *Cluster) ApplyDryRun(t testing.TB, yamlFile string) error {
	t.Helper()
	_, err := c.Kubectl(t, "apply", "--dry-run=server", "-f", yamlFile)
	return err
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tail is the last n lines of a log file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return path + ":\n" + strings.Join(lines, "\n")
}

func writeKubeconfig(path, server, caFile, user, token string) error {
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kapi
  cluster: {server: %q, certificate-authority: %q}
users:
- name: %q
  user: {token: %q}
contexts:
- name: kapi
  context: {cluster: kapi, user: %q}
current-context: kapi
`, server, caFile, user, token, user)
	return os.WriteFile(path, []byte(kc), 0o600)
}

// pki are the files of the test cluster's keys and certificates.
type pki struct {
	ca, serving, servingKey, saKey string
}

// writePKI writes a CA, a serving certificate for 127.0.0.1 signed by it,
// and the key service account tokens are signed with.
func writePKI(dir string) (pki, error) {
	p := pki{
		ca:         filepath.Join(dir, "ca.crt"),
		serving:    filepath.Join(dir, "apiserver.crt"),
		servingKey: filepath.Join(dir, "apiserver.key"),
		saKey:      filepath.Join(dir, "sa.key"),
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "logpump test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return p, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return p, err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return p, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	for _, f := range []struct {
		path, typ string
		der       func() ([]byte, error)
	}{
		{p.ca, "CERTIFICATE", func() ([]byte, error) { return caDER, nil }},
		{p.serving, "CERTIFICATE", func() ([]byte, error) { return srvDER, nil }},
		{p.servingKey, "EC PRIVATE KEY", func() ([]byte, error) { return x509.MarshalECPrivateKey(srvKey) }},
		{p.saKey, "EC PRIVATE KEY", func() ([]byte, error) { return x509.MarshalECPrivateKey(saKey) }},
	} {
		der, err := f.der()
		if err != nil {
			return p, err
		}
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: der}), 0o600); err != nil {
			return p, err
		}
	}
	return p, nil
}
