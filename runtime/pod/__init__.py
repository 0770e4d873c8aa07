"""Pods: Kubernetes ``v1 Pod`` manifests run as a group of containers with one monitor.

``runtime.pod.manifest`` parses and validates a manifest into a typed model;
``runtime.pod.qos`` derives the kubelet's QoS class, cgroup parents, oom_score_adj and cgroup
values from it. Import the submodules you need: this package imports nothing on its own.
"""
