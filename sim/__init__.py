"""SimPy interpreter of testbed policies."""
