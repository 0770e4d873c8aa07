"""Command-line front ends: corral-oci (runc-compatible) and corral."""
