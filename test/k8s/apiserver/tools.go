//go:build tools

// Package apiserver pins the commands .ci/k8s.sh builds:
//
//	go build -o DIR/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
//	go build -o DIR/kubectl k8s.io/kubernetes/cmd/kubectl
package apiserver

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
