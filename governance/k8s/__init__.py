"""Kubernetes manifests generated from the catalog (``charter gov k8s``)."""
