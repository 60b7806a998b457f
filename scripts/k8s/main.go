// Command crd-apiserver runs the upstream Kubernetes apiextensions API server (CustomResourceDefinitions,
// OpenAPI schema validation, defaulting, CEL rules, server-side apply, status subresources, finalizers,
// watch) with an embedded etcd, for tests. It is not a cluster: there is no core/v1 API (no Pods, Secrets,
// ConfigMaps), no RBAC and no controllers besides the CRD ones.
//
// Usage: crd-apiserver --data-dir DIR [--port 16443] [--etcd-port PORT] [--write-kubeconfig FILE] [upstream flags]
//
// It writes a private CA, a serving certificate for 127.0.0.1 and an admin client certificate (group
// system:masters) under DIR/pki, and a kubeconfig for that admin to DIR/kubeconfig. Everything listens on
// 127.0.0.1 only. Built by build-crd-apiserver.sh from Debian's Go source packages.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"

	extensionsapiserver "k8s.io/apiextensions-apiserver/pkg/apiserver"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "crd-apiserver: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	fs := pflag.NewFlagSet("crd-apiserver", pflag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "directory for etcd data, PKI and the kubeconfig (required)")
	port := fs.Int("port", 16443, "HTTPS port of the API server on 127.0.0.1")
	etcdPort := fs.Int("etcd-port", 0, "etcd client port (default port+1; the peer port is one above)")
	kubeconfigPath := fs.String("write-kubeconfig", "", "where to write the admin kubeconfig (default DATA_DIR/kubeconfig)")

	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	o.AddFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *dataDir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	if *etcdPort == 0 {
		*etcdPort = *port + 1
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	if *kubeconfigPath == "" {
		*kubeconfigPath = filepath.Join(dir, "kubeconfig")
	}
	pkiDir := filepath.Join(dir, "pki")
	if err := writePKI(pkiDir); err != nil {
		return fmt.Errorf("writing certificates: %w", err)
	}
	serverURL := fmt.Sprintf("https://127.0.0.1:%d", *port)
	if err := writeKubeconfig(*kubeconfigPath, serverURL, pkiDir); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}

	ctx := genericapiserver.SetupSignalContext()
	etcd, etcdURL, err := startEtcd(filepath.Join(dir, "etcd"), *etcdPort)
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()

	defaults := map[string]string{
		"etcd-servers":                 etcdURL,
		"bind-address":                 "127.0.0.1",
		"secure-port":                  fmt.Sprint(*port),
		"tls-cert-file":                filepath.Join(pkiDir, "server.crt"),
		"tls-private-key-file":         filepath.Join(pkiDir, "server.key"),
		"client-ca-file":               filepath.Join(pkiDir, "ca.crt"),
		"kubeconfig":                   *kubeconfigPath,
		"authentication-skip-lookup":   "true",
		"enable-priority-and-fairness": "false",
		// These plugins need core informers, which this server does not have.
		"disable-admission-plugins": "NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,MutatingAdmissionPolicy",
	}
	for name, value := range defaults {
		if fs.Lookup(name) != nil && !fs.Changed(name) {
			if err := fs.Set(name, value); err != nil {
				return fmt.Errorf("default for --%s: %w", name, err)
			}
		}
	}
	// Client certificates from our CA only: no TokenReview or SubjectAccessReview delegation.
	o.RecommendedOptions.Authentication.RemoteKubeConfigFileOptional = true
	o.RecommendedOptions.Authorization.RemoteKubeConfigFileOptional = true

	if err := o.ServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if err := o.Complete(); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	config, err := o.Config()
	if err != nil {
		return err
	}
	// The generic server's informer-sync readiness check waits for core informers (Services, ...) that
	// this server can never sync; informers over an empty fake clientset sync at once.
	config.GenericConfig.SharedInformerFactory = informers.NewSharedInformerFactory(fake.NewSimpleClientset(), 0)
	// The OpenAPI v2 document, as apiextensions' own test server enables it, lets the CRD OpenAPI
	// controllers publish the CRD schemas (kubectl validation and explain).
	config.GenericConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(
		openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions),
		openapinamer.NewDefinitionNamer(extensionsapiserver.Scheme))

	discovery := &discoveryDelegate{port: *port}
	server, err := config.Complete().New(genericapiserver.NewEmptyDelegateWithCustomHandler(discovery))
	if err != nil {
		return err
	}
	crdClient, err := apiextensionsclient.NewForConfig(server.GenericAPIServer.LoopbackClientConfig)
	if err != nil {
		return err
	}
	discovery.crds = crdClient
	discovery.aggregated = server.GenericAPIServer.AggregatedDiscoveryGroupManager

	fmt.Fprintf(os.Stderr, "crd-apiserver: serving %s, kubeconfig %s\n", serverURL, *kubeconfigPath)
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// startEtcd starts a single-member etcd on 127.0.0.1 and waits until it serves.
func startEtcd(dataDir string, clientPort int) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Name = "crd-apiserver"
	cfg.Dir = dataDir
	clientURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	peerURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort+1))
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	// Test data only: skipping fsync makes every write much faster.
	cfg.UnsafeNoFsync = true
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-etcd.Server.ReadyNotify():
		return etcd, clientURL.String(), nil
	case err := <-etcd.Err():
		etcd.Close()
		return nil, "", err
	case <-time.After(60 * time.Second):
		etcd.Close()
		return nil, "", fmt.Errorf("etcd not ready after 60 s")
	}
}

// discoveryDelegate serves the legacy discovery documents that kubectl asks for and the CRD server leaves
// to its delegate: /api, /api/v1 and /apis.
type discoveryDelegate struct {
	port       int
	crds       apiextensionsclient.Interface
	aggregated http.Handler
}

func (d *discoveryDelegate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api", "/api/":
		writeJSON(w, &metav1.APIVersions{
			TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
			Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{
				{ClientCIDR: "0.0.0.0/0", ServerAddress: fmt.Sprintf("127.0.0.1:%d", d.port)},
			},
		})
	case "/api/v1", "/api/v1/":
		writeJSON(w, &metav1.APIResourceList{
			TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: "v1",
			APIResources: []metav1.APIResource{},
		})
	case "/apis", "/apis/":
		if d.aggregated != nil && strings.Contains(r.Header.Get("Accept"), "apidiscovery.k8s.io") {
			d.aggregated.ServeHTTP(w, r)
			return
		}
		groups, err := d.groups(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: groups})
	default:
		http.NotFound(w, r)
	}
}

// groups lists apiextensions.k8s.io and one group per CRD group, with every served version and the
// storage version as the preferred one.
func (d *discoveryDelegate) groups(ctx context.Context) ([]metav1.APIGroup, error) {
	ext := metav1.GroupVersionForDiscovery{GroupVersion: "apiextensions.k8s.io/v1", Version: "v1"}
	groups := []metav1.APIGroup{{Name: "apiextensions.k8s.io", Versions: []metav1.GroupVersionForDiscovery{ext}, PreferredVersion: ext}}
	if d.crds == nil {
		return groups, nil
	}
	list, err := d.crds.ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	byName := map[string]*metav1.APIGroup{}
	for _, crd := range list.Items {
		group := byName[crd.Spec.Group]
		if group == nil {
			group = &metav1.APIGroup{Name: crd.Spec.Group}
			byName[crd.Spec.Group] = group
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			gv := metav1.GroupVersionForDiscovery{GroupVersion: crd.Spec.Group + "/" + v.Name, Version: v.Name}
			if !containsVersion(group.Versions, gv) {
				group.Versions = append(group.Versions, gv)
			}
			if v.Storage {
				group.PreferredVersion = gv
			}
		}
	}
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if len(byName[name].Versions) > 0 {
			groups = append(groups, *byName[name])
		}
	}
	return groups, nil
}

func containsVersion(list []metav1.GroupVersionForDiscovery, gv metav1.GroupVersionForDiscovery) bool {
	for _, v := range list {
		if v == gv {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// writePKI writes a CA, a server certificate for 127.0.0.1/localhost and an admin client certificate
// (CN admin, O system:masters), all with EC P-256 keys, valid for a week and backdated an hour.
func writePKI(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	notBefore := time.Now().Add(-time.Hour)
	notAfter := notBefore.Add(7 * 24 * time.Hour)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "crd-apiserver-ca"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePair(dir, "ca", caDER, caKey); err != nil {
		return err
	}
	server := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "crd-apiserver"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	if err := signPair(dir, "server", server, caCert, caKey); err != nil {
		return err
	}
	admin := &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return signPair(dir, "admin", admin, caCert, caKey)
}

func signPair(dir, name string, template, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writePair(dir, name, der, key)
}

func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), certPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".key"), keyPEM, 0o600)
}

// writeKubeconfig writes an admin kubeconfig for serverURL, pinned to the private CA.
func writeKubeconfig(path, serverURL, pkiDir string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["crd-apiserver"] = &clientcmdapi.Cluster{
		Server:               serverURL,
		CertificateAuthority: filepath.Join(pkiDir, "ca.crt"),
	}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificate: filepath.Join(pkiDir, "admin.crt"),
		ClientKey:         filepath.Join(pkiDir, "admin.key"),
	}
	cfg.Contexts["admin@crd-apiserver"] = &clientcmdapi.Context{Cluster: "crd-apiserver", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "admin@crd-apiserver"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// Written to a temporary name and renamed, so a reader polling for the file never sees half of it.
	tmp := path + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
