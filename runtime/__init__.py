"""Corral container runtime: OCI lifecycle, cgroups, state, CLI front ends."""
