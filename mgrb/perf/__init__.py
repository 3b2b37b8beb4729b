"""Performance: projected GPU hours from the protocol's arithmetic and measured throughput."""
