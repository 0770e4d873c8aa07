"""The runc-compatible command line, corral-oci, beside the OCI library it drives."""
