"""qm, the QuantMesh Cloud command line: a small client of the REST API (version 1)."""
