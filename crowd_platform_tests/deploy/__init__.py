"""Offline checks of the deployment files in deploy/ (Helm values, k8s run config, instance)."""
