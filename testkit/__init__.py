"""Helpers shared by the tests, the benchmarks and the scripts; not shipped in the wheel.

Importable from the repository root, as ``tests`` and ``bench`` are:

- :mod:`testkit.imagebuild`: image archives and layouts (docker-archive, OCI) built in memory;
- :mod:`testkit.rootfs`: the busybox + corral-test rootfs, built once per input;
- :mod:`testkit.helper.build`: compiles the in-container helper ``corral-test``;
- :mod:`testkit.cache`: where built rootfs and helper binaries are cached;
- :mod:`testkit.etcdcluster`: etcd-server members on loopback ports, started and stopped;
- :mod:`testkit.kubeserver`: a real ``corral server`` on a free port, started and stopped;
- :mod:`testkit.net`: free loopback ports.
"""
